"""`densevid eval`: grounding mIoU / R@IoU on held-out samples and needle-in-a-haystack heatmaps."""

import json

import pytest

from densevid.cli import EXIT_OK, EXIT_USAGE, main
from finetune import evaluate
from finetune.evaluate import EvalConfig, answer_text, run_eval
from synth.needle import COLOURS, needle_rows, needle_truth
from synth.videos import PALETTE
from model.loader import load_model

PNG = b"\x89PNG\r\n\x1a\n"


def test_eval_command_scores_the_tiny_model_and_draws_the_heatmap(tiny_model, mixture, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(tiny_model), "--mixture", str(mixture), "--max-samples", "3", "--needle",
                 "--needle-durations", "4,8", "--needle-depths", "0.2,0.8", "--needle-trials", "1", "--out", str(out)])
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


def test_scores_follow_the_answers(tiny_model, mixture, tmp_path, monkeypatch):
    """A model that answers every target exactly scores mIoU 1 and needle accuracy 1; one that is off by
    half the span scores what the IoU says."""
    from mixtures.balance import read_manifest

    grounding = [r for r in read_manifest(mixture) if r["task"] == "temporal_grounding"]
    monkeypatch.setattr(evaluate, "generate_answers", lambda lm, rows, *a, **k: [answer_text(r) for r in rows])
    picks = {}

    def scores(lm, row, options, max_frames=0):
        colour = evaluate.needle_meta(row)["colour"]
        picks[row["sample_id"]] = colour
        return [1.0 if o.endswith(colour) else 0.0 for o in options]

    monkeypatch.setattr(evaluate, "option_scores", scores)
    lm = load_model(tiny_model, device="cpu")
    report = run_eval(EvalConfig(model=str(tiny_model), mixture=str(mixture), needle=True, needle_durations=(4.0,),
                                 needle_depths=(0.5,), needle_trials=2, out=str(tmp_path)), lm=lm)
    assert report["grounding"]["n"] == len(grounding)
    assert report["grounding"]["miou"] == 1.0 and report["grounding"]["r@0.7"] == 1.0
    assert report["needle"]["accuracy"] == 1.0 and report["needle"]["grid"] == [[1.0]]
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


def test_eval_options_are_checked_together(capsys):
    assert main(["eval", "--model", "m", "--max-samples", "0", "--needle-depths", "1.5"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "nothing to evaluate" in err and "--max-samples 0" in err and "[0, 1]" in err
