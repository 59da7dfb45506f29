"""The gate against truth: precision and recall of passed and rejected records on hand-made rows, and
`densevid eval-gate` on an ingested pool whose truth JSON lies apart from the videos."""

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.executors import run_stage
from curation.stages import IngestStage
from curation.store import SCHEMAS, Dataset
from densevid.cli import main
from synth.gate_eval import gate_scores, load_gate_inputs
from synth.verify import CHECKS
from synth.videos import read_truth

TRUTH = [dict(video_id="v1", phrase="the red square", start_s=2.0, end_s=6.0),
         dict(video_id="v1", phrase="a blue circle", start_s=10.0, end_s=14.0)]


def _rec(record_id, phrase, start_s, end_s, video_id="v1"):
    return dict(record_id=record_id, video_id=video_id, phrase=phrase, start_s=start_s, end_s=end_s)


def _verdict(record_id, form=True, caption=True, cycle=True, unique=True):
    checks = dict(form_ok=form, caption_ok=caption, cycle_ok=cycle, unique_ok=unique)
    return dict(record_id=record_id, passed=all(checks.values()), **checks)


RECORDS = [
    _rec("r1", "Red squares", 2.5, 6.0),  # tIoU 0.875 with the red square: correct
    _rec("r2", "the red square", 8.0, 12.0),  # tIoU 0: incorrect
    _rec("r3", "the blue circle", 10.0, 13.0),  # tIoU 0.75: correct
    _rec("r4", "the green star", 2.0, 6.0),  # no true record of that phrase: incorrect
    _rec("r5", "the blue circle", 12.0, 20.0),  # tIoU 0.2: incorrect
    _rec("r6", "the red square", 2.0, 6.0, video_id="v2"),  # a video without truth: left out
    _rec("r7", "the red square", 2.0, 6.0),  # no verdict: left out
]
VERDICTS = [_verdict("r1"), _verdict("r2", unique=False), _verdict("r3", form=False),
            dict(_verdict("r4", caption=False), unique_ok=None),  # a verdict from before the uniqueness check
            _verdict("r5"), _verdict("r6")]


def test_each_check_and_the_gate_scored_against_truth_by_hand():
    s = gate_scores(RECORDS, VERDICTS, TRUTH)
    assert {k: s[k] for k in ("n_records", "n_unverified", "n_without_truth", "n_scored", "n_correct")} == dict(
        n_records=7, n_unverified=1, n_without_truth=1, n_scored=5, n_correct=2)
    shares = {name: tuple(c[m] for m in ("precision_passed", "recall_correct", "precision_rejected",
                                         "recall_incorrect")) for name, c in s["checks"].items()}
    # overall: passed r1 (correct), r5; rejected r2, r3 (correct), r4
    assert shares["overall"] == pytest.approx((1 / 2, 1 / 2, 2 / 3, 2 / 3))
    assert shares["form"] == pytest.approx((1 / 4, 1 / 2, 0.0, 0.0))  # rejects only r3, a correct one
    assert shares["caption"] == pytest.approx((2 / 4, 1.0, 1.0, 1 / 3))  # rejects only r4
    assert shares["cycle"][:2] == pytest.approx((2 / 5, 1.0)) and shares["cycle"][2:] == (None, 0.0)  # none rejected
    assert shares["unique"] == pytest.approx((2 / 3, 1.0, 1.0, 1 / 2))  # r4 not measured
    assert s["checks"]["unique"]["n"] == 4 and s["checks"]["overall"]["n"] == 5
    assert (s["checks"]["overall"]["n_passed"], s["checks"]["overall"]["n_rejected"]) == (2, 3)


def test_a_stricter_tiou_leaves_no_correct_record_and_recall_has_no_denominator():
    s = gate_scores(RECORDS, VERDICTS, TRUTH, min_tiou=0.9)
    overall = s["checks"]["overall"]
    assert s["n_correct"] == 0 and overall["recall_correct"] is None and overall["precision_passed"] == 0.0
    assert overall["precision_rejected"] == 1.0 and overall["recall_incorrect"] == pytest.approx(3 / 5)
    empty = gate_scores([], [], TRUTH)["checks"]["overall"]
    assert empty["n"] == 0 and all(empty[m] is None for m in ("precision_passed", "recall_correct",
                                                             "precision_rejected", "recall_incorrect"))


# --- the command on an ingested pool ------------------------------------------------------------------------------


@pytest.fixture
def pool(corpus, tmp_path):
    """The corpus's videos ingested without their truth, which goes to a folder of its own."""
    videos, truth_dir = tmp_path / "videos", tmp_path / "truth"
    truth_dir.mkdir()
    for mp4 in corpus.rglob("*.mp4"):
        (videos / mp4.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(mp4, videos / mp4.parent.name / mp4.name)
        shutil.copy(mp4.with_suffix(".json"), truth_dir / f"{mp4.stem}.json")
    ds = Dataset(tmp_path / "ds")
    run_stage(IngestStage(videos=videos), ds, progress=False)
    return ds, truth_dir


def _labelled(ds: Dataset, truth_dir, model: str):
    """Per video, the first true shape twice: once where it is (correct), once moved past its end
    (incorrect); the gate passes both moved records but one, and the first video's correct one fails cycle."""
    records, verdicts = [], []
    for k, v in enumerate(ds.sql("SELECT video_id, uri FROM videos ORDER BY video_id").to_pylist()):
        shape = read_truth(truth_dir / f"{Path(v['uri']).stem}.json")["shapes"][0]
        length = shape["end_s"] - shape["start_s"]
        for kind, shift in (("right", 0.0), ("moved", length)):
            rid = f"{kind}{k}"
            records.append(dict(record_id=rid, video_id=v["video_id"], segment_id="s", phrase=shape["phrase"],
                                action=shape["action"], start_s=shape["start_s"] + shift,
                                end_s=shape["end_s"] + shift, boxes=[], source="model", model=model))
            checks = dict(form_ok=True, caption_ok=True, cycle_ok=not (k == 0 and kind == "right"),
                          unique_ok=kind == "right" or k == 0)
            verdicts.append(dict(record_id=rid, model=model, video_id=v["video_id"], passed=all(checks.values()),
                                 reasons=[], **checks))
    ds.write("grounding", records)
    ds.write("verdicts", verdicts)
    return records, verdicts


def test_eval_gate_gives_the_scores_of_the_hidden_truth(pool, tmp_path, capsys, monkeypatch):
    ds, truth_dir = pool
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)  # the model is named by a relative path, the tables hold its absolute one
    records, verdicts = _labelled(ds, truth_dir, str((tmp_path / "ckpt").resolve()))
    out = tmp_path / "gate.json"
    assert main(["eval-gate", "--data", str(ds.root), "--model", "ckpt", "--truth-dir", str(truth_dir),
                 "--out", str(out)]) == 0

    got = json.loads(out.read_text())
    truth = [dict(video_id=v["video_id"], phrase=s["phrase"], start_s=s["start_s"], end_s=s["end_s"])
             for v in ds.rows("videos") for s in read_truth(truth_dir / f"{Path(v['uri']).stem}.json")["shapes"]]
    assert got == json.loads(json.dumps(gate_scores(records, verdicts, truth)))
    overall = got["checks"]["overall"]
    # 3 videos: right1, right2 pass; right0 fails cycle; moved0 passes (unique let it through); moved1, moved2 fail
    assert (got["n_scored"], got["n_correct"], overall["n_passed"]) == (6, 3, 3)
    assert (overall["precision_passed"], overall["recall_correct"]) == pytest.approx((2 / 3, 2 / 3))
    assert (overall["precision_rejected"], overall["recall_incorrect"]) == pytest.approx((2 / 3, 2 / 3))
    assert got["checks"]["unique"]["precision_passed"] == pytest.approx(3 / 4)
    assert got["checks"]["form"]["precision_rejected"] is None
    text = capsys.readouterr().out
    assert "6 records against truth, 3 correct at tIoU >= 0.5" in text
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines()]
    assert ["overall", "6", "3", "0.667", "0.667", "0.667", "0.667"] in rows, text
    assert ["form", "6", "6", "0.500", "1.000", "-", "0.000"] in rows, text

    # without the truth folder the round saw no truth: every record is on a video without truth
    assert load_gate_inputs(ds, "ckpt")[2] == []
    assert main(["eval-gate", "--data", str(ds.root), "--model", "ckpt", "--min-tiou", "0.5"]) == 0
    assert "0 records against truth" in capsys.readouterr().out


def test_ground_truth_rows_count_as_truth_and_old_verdicts_leave_uniqueness_unmeasured(pool):
    ds, truth_dir = pool
    records, verdicts = _labelled(ds, truth_dir, "teacher")
    ds.write("grounding", [dict(r, record_id="t" + r["record_id"], source="ground_truth", model="")
                           for r in records if r["record_id"].startswith("right")])
    old_schema = pa.schema([f for f in SCHEMAS["verdicts"] if not f.name.startswith("unique")])
    old = [dict(record_id="old", model="teacher", passed=False, form_ok=False, caption_ok=True, cycle_ok=True)]
    pq.write_table(pa.Table.from_pylist(old, schema=old_schema), ds.table_dir("verdicts") / "part-old.parquet")
    ds.write("grounding", [dict(records[0], record_id="old")])

    got_records, got_verdicts, truth = load_gate_inputs(ds, "teacher")
    assert len(truth) == 3 and len(got_records) == 7 and len(got_verdicts) == 7
    assert next(v for v in got_verdicts if v["record_id"] == "old")["unique_ok"] is None
    s = gate_scores(got_records, got_verdicts, truth)
    assert (s["checks"]["overall"]["n"], s["checks"]["unique"]["n"], s["checks"]["form"]["n"]) == (7, 6, 7)
    assert set(s["checks"]) == {"overall", *CHECKS}


def test_eval_gate_refuses_a_model_without_verdicts_and_a_bad_truth_file(pool, tmp_path, capsys):
    ds, truth_dir = pool
    _labelled(ds, truth_dir, "teacher")
    assert main(["eval-gate", "--data", str(ds.root), "--model", "someone-else"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: model someone-else has no verdicts in {ds.root}; run densevid verify --data {ds.root} "
                   "--model someone-else first")
    bad = sorted(truth_dir.glob("*.json"))[0]
    bad.write_text('{"shapes": []}')
    assert main(["eval-gate", "--data", str(ds.root), "--model", "teacher", "--truth-dir", str(truth_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: truth file {bad} is not truth JSON as synth.videos.write_truth writes it (scene_starts, "
                   "shapes, fps); fix it or move it out of --truth-dir"]
    assert main(["eval-gate", "--data", str(ds.root), "--model", "teacher", "--truth-dir", str(tmp_path / "no")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["eval-gate", "--data", str(ds.root), "--model", "teacher", "--min-tiou", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --min-tiou 0.0 must be in (0, 1]"
