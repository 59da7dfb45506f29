"""`densevid round`: two rounds end to end on the tiny model (lineage, fixed held-out set, skip, report), a
round killed in training that resumes without labelling again, the gate's part of the round's filter, and
bad pools."""

from __future__ import annotations

import hashlib
import html
import json
import shutil

import duckdb
import pyarrow as pa
import pytest

from curation.store import Dataset
from finetune.rounds import RoundConfig, heldout_dir, pool_videos, round_dir, round_filter, run_round, video_splits
from model.loader import model_key

TRAIN = ("max_steps=2", "save_every=0", "tensorboard=false", "data.num_workers=0", "data.max_batch_size=2",
         "optim.warmup_steps=1", "log_every=1")
LABEL_FLAGS = ["--caption-frames", "4", "--sample-frames", "8", "--max-new-tokens", "512", "--retries", "0"]
# every domain of the small corpus (one video each) is in train: one domain is held out, the rest is the pool
HELDOUT, POOL = "domain = 'cinematic'", "split = 'train' AND domain <> 'cinematic'"
EVAL_FLAGS = ["--pool", POOL, "--heldout", HELDOUT, "--eval-dense-tokens", "8", "--eval-max-samples", "4"]


@pytest.fixture
def round_data(built_dataset, tmp_path):
    """A copy of the small built dataset (the shared fixture's stays as other tests expect it)."""
    cfg, _ = built_dataset
    data = tmp_path / "dataset"
    shutil.copytree(cfg.data, data, ignore=shutil.ignore_patterns("catalog.duckdb", "mixtures"))
    ds = Dataset(data)
    assert pool_videos(ds, POOL) and pool_videos(ds, HELDOUT), "the small corpus should have pool and held-out videos"
    return data


def run_cli(*argv) -> int:
    from densevid.cli import main

    return main(["-q", *argv])


def round_args(data, teacher, n, *extra):
    return ["round", "--data", str(data), "--teacher", str(teacher), "--round", str(n), *LABEL_FLAGS, *EVAL_FLAGS,
            "lora", *TRAIN, *extra]


def files_of(data, tables=("samples", "captions", "grounding", "verdicts", "dense_captions")):
    return {t: sorted(p.name for p in (data / t).glob("*.parquet")) for t in tables}


def finished(ds, n) -> dict:
    from finetune.rounds import finished_round

    return finished_round(ds, n)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_rounds_lineage_heldout_skip_and_report(round_data, tiny_model, capsys):
    data = round_data
    ds = Dataset(data)
    code = run_cli(*round_args(data, tiny_model, 0))
    assert code == (3 if finished(ds, 0)["label_failures"] else 0)  # a model output that broke a rule: exit 3
    heldout = heldout_dir(ds) / "manifest.parquet"
    before = digest(heldout)
    student0 = round_dir(ds, 0) / "student"
    assert (student0 / "adapter_config.json").exists()

    code = run_cli(*round_args(data, student0, 1))
    assert code == (3 if finished(ds, 1)["label_failures"] else 0)
    rows = ds.sql('SELECT * FROM rounds ORDER BY "round"').to_pylist()
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[0]["teacher"] == model_key(tiny_model) and rows[1]["teacher"] == model_key(student0)
    assert rows[0]["student"] == str(student0)
    assert rows[0]["student_init"] == rows[1]["student_init"] == str(tiny_model)  # both start from the base
    assert digest(heldout) == before  # the held-out set is fixed by round 0

    # the held-out set: every held-out video, none in the pool; grounding questions from the truth
    splits = video_splits(ds)
    held = ds.sql(f"SELECT * FROM read_parquet('{heldout}')").to_pylist()
    domains = {v["video_id"]: v["domain"] for v in ds.rows("videos")}
    assert held and {domains[r["video_id"]] for r in held} == {"cinematic"}
    assert not {r["video_id"] for r in held} & set(pool_videos(ds, POOL))
    truth = ds.sql("SELECT count(*) AS n FROM grounding WHERE source = 'ground_truth' AND list_contains(?, video_id)",
                   [sorted({r["video_id"] for r in held})]).column("n")[0].as_py()
    assert sum(r["task"] == "temporal_grounding" for r in held) == truth > 0

    # every sample names its maker: the round-1 teacher wrote its own, beside round 0's
    by_model = {r["model"]: r["n"] for r in ds.sql(
        "SELECT model, count(*) AS n FROM samples WHERE origin = 'model' AND task = 'dense_caption' GROUP BY ALL"
    ).to_pylist()}
    pool = pool_videos(ds, POOL)
    assert by_model[model_key(tiny_model)] >= len(pool) and by_model[model_key(student0)] == len(pool)

    for r in rows:
        manifest = ds.sql(f"SELECT origin, model, video_id FROM read_parquet('{r['mixture']}/manifest.parquet')").to_pylist()
        assert {m["model"] for m in manifest if m["origin"] == "model"} == {r["teacher"]}
        assert r["model_samples"] == sum(m["origin"] == "model" for m in manifest)
        assert r["truth_samples"] == sum(m["origin"] == "ground_truth" for m in manifest)
        assert {splits[m["video_id"]] for m in manifest} == {"train"}
        report = json.loads((round_dir(ds, r["round"]) / "eval" / "eval.json").read_text())
        assert r["grounding_miou"] == report["grounding"]["miou"]
        assert r["pool_videos"] == len(pool) and r["gate"] == "on"
        records = ds.sql("SELECT count(*) AS n FROM grounding WHERE source = 'model' AND model = ? "
                         "AND list_contains(?, video_id)", [r["teacher"], pool]).column("n")[0].as_py()
        assert r["records"] == records
        assert all(r[f"{s}_s"] > 0 for s in ("label", "mix", "train", "eval"))

    # a finished round is skipped: nothing is labelled, trained or written again
    files = files_of(data)
    capsys.readouterr()
    assert run_cli(*round_args(data, student0, 1)) == 0
    assert "round 1 already finished" in capsys.readouterr().out
    assert files_of(data) == files and ds.sql("SELECT count(*) AS n FROM rounds").column("n")[0].as_py() == 2
    # the same round number with another teacher is refused, naming the way out
    assert run_cli(*round_args(data, tiny_model, 1)) == 2
    assert "round 1 was finished with teacher" in capsys.readouterr().err

    from report.build import write_report

    write_report(data, data.parent / "site", progress=False, thumbnails=False)
    page = (data.parent / "site" / "rounds.html").read_text()
    assert 'data-round="0"' in page and 'data-round="1"' in page
    assert f'{rows[1]["grounding_miou"]:.3f}' in page
    # round 0's student captioned the pool as round 1's teacher: its captions stand beside the base model's
    first = ds.sql("SELECT t.summary AS base, s.summary AS student FROM captions t JOIN captions s USING (segment_id) "
                   "WHERE t.model = ? AND s.model = ? ORDER BY t.video_id, t.start_s LIMIT 1",
                   [rows[0]["teacher"], rows[1]["teacher"]]).to_pylist()[0]
    assert html.escape(first["base"]) in page and html.escape(first["student"]) in page
    assert "not captioned by the student yet" in page  # round 1's student has labelled nothing


def test_round_killed_in_training_resumes_without_labelling_again(round_data, tiny_model, monkeypatch):
    from densevid.pipeline import PipelineConfig
    from densevid.round_cli import labeller
    import finetune.rounds as rounds

    calls = []
    label = labeller(PipelineConfig(data=round_data, caption_frames=4, sample_frames=8, max_new_tokens=512),
                     progress=False)

    def counted(*args):
        calls.append(args[0])
        return label(*args)

    cfg = RoundConfig(data=str(round_data), teacher=str(tiny_model), round=0, heldout=HELDOUT, pool=POOL,
                      eval_dense_tokens=8, eval_max_samples=4, eval_frames=8, train=TRAIN)
    real_train = rounds.train_student

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rounds, "train_student", killed)
    with pytest.raises(KeyboardInterrupt):
        run_round(cfg, counted, log=lambda *_: None)
    ds = Dataset(round_data)
    steps = json.loads((round_dir(ds, 0) / "steps.json").read_text())
    assert set(steps) == {"label", "mix"} and len(calls) == 1
    assert ds.sql("SELECT count(*) AS n FROM rounds").column("n")[0].as_py() == 0

    monkeypatch.setattr(rounds, "train_student", real_train)
    row = run_round(cfg, counted, log=lambda *_: None)
    assert len(calls) == 1  # labelling was not repeated
    assert row["round"] == 0 and ds.sql("SELECT count(*) AS n FROM rounds").column("n")[0].as_py() == 1
    assert set(json.loads((round_dir(ds, 0) / "steps.json").read_text())) == {"label", "mix", "train", "eval"}


def test_round_filter_admits_ground_truth_and_the_teachers_gated_samples():
    samples = pa.Table.from_pylist([
        dict(sample_id="truth", origin="ground_truth", model="", passed_gate=None),
        dict(sample_id="caption", origin="model", model="T", passed_gate=None),  # no gate applies
        dict(sample_id="passed", origin="model", model="T", passed_gate=True),
        dict(sample_id="rejected", origin="model", model="T", passed_gate=False),
        dict(sample_id="other", origin="model", model="U", passed_gate=True),  # another model's
        dict(sample_id="quote", origin="model", model="T'", passed_gate=True),
    ])

    def admitted(teacher, gate):
        con = duckdb.connect()
        con.register("samples", samples)
        return [r[0] for r in con.execute(f"SELECT sample_id FROM samples WHERE {round_filter(teacher, gate)} "
                                          "ORDER BY sample_id").fetchall()]

    assert admitted("T", gate=True) == ["caption", "passed", "truth"]
    assert admitted("T", gate=False) == ["caption", "passed", "rejected", "truth"]
    assert admitted("T'", gate=True) == ["quote", "truth"]


def test_bad_pools_are_one_clear_error(round_data, tiny_model):
    ds = Dataset(round_data)
    with pytest.raises(ValueError, match="no such column|not found|Referenced column"):
        pool_videos(ds, "nonexistent_column = 1")
    with pytest.raises(ValueError, match="one SQL condition"):
        pool_videos(ds, "true; DROP TABLE videos")
    assert pool_videos(ds, "domain = 'needle'") == []  # eval-only videos are never in a pool
    haystacks = pool_videos(ds, "split = 'test' AND domain = 'needle'", eval_only=True)  # but may be held out
    assert len(haystacks) == ds.sql("SELECT count(*) AS n FROM videos WHERE domain = 'needle'").column("n")[0].as_py() > 0
    cfg = RoundConfig(data=str(round_data), teacher=str(tiny_model), round=0, pool="domain = 'nowhere'")
    with pytest.raises(ValueError, match="chooses no video"):
        run_round(cfg, lambda *a: pytest.fail("nothing is labelled"), log=lambda *_: None)
    problems = RoundConfig(data=str(round_data / "nope"), teacher="x", round=-1, student_init="mine",
                           eval_frames=3).problems()
    assert len(problems) == 4 and any("--round -1" in p for p in problems)


def test_a_pool_chosen_by_split_is_the_split_the_videos_keep(tmp_path):
    """Splits a round chooses its pool and held-out set by are stored then, so the tasks stage, which
    assigns the videos it sees later and maybe fewer of them at a time, cannot put them elsewhere."""
    from curation.executors import run_stage
    from curation.splits import assign_splits, stored_splits
    from curation.stages import IngestStage
    from synth.videos import render_video

    for k, domain in enumerate(("cooking", "sports", "travel", "sports")):
        render_video(tmp_path / "videos" / domain / f"v{k}.mp4", domain, 4, seed=k, size=(96, 64), n_scenes=1, n_fades=0)
    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=tmp_path / "videos"), ds, progress=False)
    chosen = video_splits(ds)
    assert len(chosen) == 4 and stored_splits(ds) == chosen
    one = sorted(chosen)[0]
    assert assign_splits(ds, [one]) == {one: chosen[one]}
    assert len(ds.rows("splits")) == 4  # nothing assigned twice
