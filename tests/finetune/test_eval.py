"""`densevid eval`: grounding mIoU / R@IoU and dense-caption scores on held-out samples, needle-in-a-haystack
heatmaps."""

import json

import pytest

from densevid.cli import EXIT_OK, EXIT_USAGE, main
from finetune import evaluate
from finetune.evaluate import EvalConfig, answer_text, run_eval
from synth.needle import COLOURS, NEEDLE_TASK, needle_rows, needle_truth
from synth.videos import PALETTE
from model.loader import load_model

PNG = b"\x89PNG\r\n\x1a\n"


def test_eval_command_scores_the_tiny_model_and_draws_the_heatmap(tiny_model, mixture, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(tiny_model), "--mixture", str(mixture), "--max-samples", "3", "--needle",
                 "--needle-durations", "4,8", "--needle-depths", "0.2,0.8", "--needle-trials", "1", "--out", str(out),
                 "--dense-max-new-tokens", "32"])
    assert code == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((out / "eval.json").read_text())
    g = report["grounding"]
    assert g["n"] == 3 and printed["grounding"]["miou"] == g["miou"]
    assert all(i["iou"] == 0.0 for i in g["items"] if i["pred"] is None), "unparseable answers score 0"
    n = report["needle"]
    assert n["n"] == 4 and n["durations_s"] == [4.0, 8.0] and n["depths"] == [0.2, 0.8]
    assert n["chance"] == pytest.approx(1 / len(COLOURS), abs=1e-4)
    assert sum(v for row in n["grid"] for v in row) == pytest.approx(4 * n["accuracy"])
    assert (out / "needle_heatmap.png").read_bytes()[:8] == PNG
    assert len(list((out / "needle_videos").glob("*.mp4"))) == 4
    dense = report["dense_caption"]
    assert report["config"]["dense_max_new_tokens"] == 32
    assert dense["n"] == 3 and set(printed["dense_caption"]["by_tiou"]) == {"0.3", "0.5", "0.7", "0.9"}
    assert printed["dense_caption"]["soda_c"] == dense["soda_c"] and "items" not in printed["dense_caption"]
    assert all(set(i["by_tiou"]["0.5"]) == {"precision", "recall", "f1", "bleu4", "meteor", "cider"}
               for i in dense["items"])


def test_scores_follow_the_answers(tiny_model, mixture, tmp_path, monkeypatch):
    """A model that answers every target exactly scores mIoU 1 and needle accuracy 1; one that is off by
    half the span scores what the IoU says."""
    from mixtures.balance import read_manifest

    grounding = [r for r in read_manifest(mixture) if r["task"] == "temporal_grounding"]
    picks = {}

    def exact(lm, rows, *a, **k):
        picks.update({r["sample_id"]: evaluate.needle_meta(r)["colour"] for r in rows if r["task"] == NEEDLE_TASK})
        return [answer_text(r) for r in rows]

    monkeypatch.setattr(evaluate, "generate_answers", exact)
    lm = load_model(tiny_model, device="cpu")
    report = run_eval(EvalConfig(model=str(tiny_model), mixture=str(mixture), needle=True, needle_durations=(4.0,),
                                 needle_depths=(0.5,), needle_trials=2, out=str(tmp_path)), lm=lm)
    assert report["grounding"]["n"] == len(grounding)
    assert report["grounding"]["miou"] == 1.0 and report["grounding"]["r@0.7"] == 1.0
    assert report["needle"]["accuracy"] == 1.0 and report["needle"]["grid"] == [[1.0]]
    assert report["needle"]["both@0.5"] == 1.0 and report["needle"]["mean_tiou"] > 0.9  # targets round to 0.1 s
    assert report["needle_dataset"]["accuracy"] == 1.0 and len(picks) == 2 + report["needle_dataset"]["n"]

    def shifted(lm, rows, *a, **k):  # predictions shifted right by half their span: IoU 1/3
        out = []
        for r in rows:
            s, e = evaluate.parse_span(answer_text(r))
            out.append(f"<{s + (e - s) / 2:.2f} - {e + (e - s) / 2:.2f} seconds>")
        return out

    monkeypatch.setattr(evaluate, "generate_answers", shifted)
    report = run_eval(EvalConfig(model=str(tiny_model), mixture=str(mixture)), lm=lm)
    assert report["grounding"]["miou"] == pytest.approx(1 / 3, abs=0.01)
    assert report["grounding"]["r@0.3"] == 1.0 and report["grounding"]["r@0.5"] == 0.0


def test_needle_samples_from_the_dataset_fill_the_heatmap(built_dataset, tiny_model, tmp_path):
    cfg, _ = built_dataset
    report = run_eval(EvalConfig(model=str(tiny_model), data=str(cfg.data), split="test", out=str(tmp_path)),
                      lm=load_model(tiny_model, device="cpu"))
    needle = report["needle_dataset"]
    assert needle["n"] == 2 and needle["durations_s"] == [12.0] and needle["depths"] == [0.2, 0.8]
    assert all(i["colour"] in COLOURS for i in needle["items"])
    assert (tmp_path / "needle_dataset_heatmap.png").read_bytes()[:8] == PNG


def test_needle_videos_show_the_needle_in_the_sampled_frames(tmp_path):
    from curation.video import read_frames

    rows = needle_rows(tmp_path, durations_s=(16.0,), depths=(0.0, 0.5, 1.0), trials=1)
    for r in rows:
        frames = read_frames(r["uri"], r["frame_indices"]).astype(int)
        target = PALETTE[r["colour"]]
        hits = [f for f in frames if abs(f[2, 2] - target).max() < 40]  # the corner is the needle colour
        assert len(hits) >= 2, (r["sample_id"], len(hits))
        truth = needle_truth(r["uri"])
        assert truth["depth"] == r["depth"] and truth["colour"] == r["colour"]


def test_needle_answers_are_scored_on_colour_and_span_apart():
    """No option carries the true span: a colour alone is right on colour only, the span alone on time only."""
    needle = dict(start_frame=48, n_frames=24, fps=24.0, colour="blue", depth=0.1, duration_s=20.0)
    row = dict(sample_id="s")
    colour_only = evaluate.needle_item(row, needle, "blue")
    assert colour_only["correct"] and colour_only["tiou"] == 0.0 and not colour_only["both"]
    span_only = evaluate.needle_item(row, needle, "<2.0 - 3.0 seconds> red")
    assert not span_only["correct"] and span_only["tiou"] == 1.0 and span_only["chosen"] == "red"
    half = evaluate.needle_item(row, needle, "<2.5 - 3.0 seconds> Blue.")
    assert half["correct"] and half["tiou"] == 0.5 and half["both"]
    assert evaluate.needle_item(row, needle, "blue, at <2.0 - 3.0 seconds>")["chosen"] is None, "colour comes last"
    summary = evaluate.needle_summary([dict(colour_only, duration_s=20.0), dict(half, duration_s=40.0)])
    assert summary["accuracy"] == 1.0 and summary["mean_tiou"] == 0.25 and summary["both@0.5"] == 0.5
    assert summary["grid_both"] == [[0.0], [1.0]] and summary["grid_tiou"] == [[0.0], [0.5]]


def test_dense_captions_are_scored_against_the_truth_of_generated_videos(tiny_model, mixture, tmp_path,
                                                                        monkeypatch):
    """A model that writes each truth event at its (0.1 s rounded) span finds every event at tIoU 0.7 with
    identical sentences; one that writes nothing scores 0."""
    from curation.times import render_span
    from synth.dense_eval import truth_events
    from synth.videos import read_truth

    def written(truth: dict) -> str:
        return "\n".join(f"{render_span(e.start_s, e.end_s)} {e.sentence}." for e in truth_events(truth))

    def truthful(lm, rows, *a, **k):
        return [written(read_truth(r["uri"])) if r["task"] == "dense_caption" else answer_text(r) for r in rows]

    monkeypatch.setattr(evaluate, "generate_answers", truthful)
    lm = load_model(tiny_model, device="cpu")
    report = run_eval(EvalConfig(model=str(tiny_model), mixture=str(mixture), out=str(tmp_path)), lm=lm)
    dense = report["dense_caption"]
    assert dense["n"] == 3 and dense["without_reference"] == 0 and {i["reference"] for i in dense["items"]} == {"truth"}
    at7 = dense["by_tiou"]["0.7"]
    assert at7["precision"] == at7["recall"] == at7["f1"] == 1.0
    assert at7["meteor"] == 1.0 and at7["bleu4"] == pytest.approx(1.0, abs=1e-4)
    assert 0.9 < dense["soda_c"] <= 1.0
    per_video = json.loads((tmp_path / "eval.json").read_text())["dense_caption"]["items"]
    assert [v["by_tiou"]["0.3"]["recall"] for v in per_video] == [1.0, 1.0, 1.0]

    monkeypatch.setattr(evaluate, "generate_answers", lambda lm, rows, *a, **k: ["I see a video." for r in rows])
    silent = run_eval(EvalConfig(model=str(tiny_model), mixture=str(mixture)), lm=lm)["dense_caption"]
    assert silent["average"]["recall"] == 0.0 and silent["average"]["meteor"] == 0.0 and silent["soda_c"] == 0.0


def test_imported_reference_dense_captions_come_before_the_truth(tmp_path):
    from curation.store import Dataset

    Dataset(tmp_path / "ds").write("dense_captions", [dict(
        video_id="v1", model="reference:activitynet", prompt_version="", rendered="", renderer="seconds",
        storyline="", code_version="", entries=[dict(start_s=4.0, end_s=9.0, summary="A man sits.", details=""),
                                                dict(start_s=0.0, end_s=4.0, summary="A man walks in.", details="")])])
    (tmp_path / "v2.json").write_text(json.dumps({"fps": 24.0, "scene_starts": [0], "shapes": [dict(
        phrase="the red square", action="move up", start_s=1.0, end_s=2.0, boxes=[])]}))
    rows = [dict(video_id="v1", uri=str(tmp_path / "v1.mp4")), dict(video_id="v2", uri=str(tmp_path / "v2.mp4")),
            dict(video_id="v3", uri=str(tmp_path / "v3.mp4"))]
    refs = evaluate.dense_references(rows, str(tmp_path / "ds"))
    assert refs["v1"][0] == "reference:activitynet"
    assert [(e.start_s, e.sentence) for e in refs["v1"][1]] == [(0.0, "A man walks in."), (4.0, "A man sits.")]
    assert refs["v2"][0] == "truth" and refs["v2"][1][0].sentence == "the red square move up"
    assert "v3" not in refs


def test_dense_captions_without_java_stop_before_the_model_loads(mixture, monkeypatch):
    import synth.dense_eval

    monkeypatch.setattr(synth.dense_eval.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="default-jre-headless") as e:
        run_eval(EvalConfig(model="no-such-model", mixture=str(mixture)))
    assert "--no-dense-captions" in str(e.value)


def test_eval_options_are_checked_together(capsys):
    assert main(["eval", "--model", "m", "--max-samples", "0", "--needle-depths", "1.5"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "nothing to evaluate" in err and "--max-samples 0" in err and "[0, 1]" in err


def test_nothing_to_score_says_0_scorable_samples_and_writes_null(tmp_path, capsys):
    """A held-out set whose one dense caption has no reference: zeros used to be printed as scores and the
    grounding key was missing. Every task is reported, with n 0, every metric null and why."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    mix = tmp_path / "mix"
    mix.mkdir()
    pq.write_table(pa.Table.from_pylist([dict(sample_id="s1", task="dense_caption", video_id="v1",
                                              uri=str(tmp_path / "own.mp4"), messages="[]")]), mix / "manifest.parquet")
    out = tmp_path / "eval"
    # no model loads: there is nothing to ask it
    assert main(["eval", "--model", "no-such-model", "--mixture", str(mix), "--out", str(out)]) == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((out / "eval.json").read_text())
    among = "among the 1 held-out samples"
    grounding = {"n": 0, "miou": None, "r@0.3": None, "r@0.5": None, "r@0.7": None,
                 "summary": f"0 scorable samples: no temporal_grounding samples {among}"}
    assert printed["grounding"] == grounding and written["grounding"] == {**grounding, "items": []}
    nothing = dict.fromkeys(("precision", "recall", "f1", "bleu4", "meteor", "cider"))
    dense = written["dense_caption"]
    assert {k: v for k, v in dense.items() if k != "items"} == printed["dense_caption"] == {
        "n": 0, "tious": [0.3, 0.5, 0.7, 0.9], "by_tiou": {t: nothing for t in ("0.3", "0.5", "0.7", "0.9")},
        "average": nothing, "soda_c": None, "without_reference": 1,
        "summary": "0 scorable samples: none of the 1 dense_caption samples has reference events (an imported "
                   "reference:* dense caption, or the truth JSON beside a generated video)"}
    needle = printed["needle_dataset"]
    assert (needle["n"], needle["accuracy"], needle["mean_tiou"], needle["both@0.5"], needle["grid"]) == (0, None, None,
                                                                                                        None, [])
    assert needle["summary"] == f"0 scorable samples: no needle samples {among}"
    assert not (out / "needle_dataset_heatmap.png").exists()
