"""The gate on the model's grounding records: each check on hand-made values, the verify stage on the built
dataset with the tiny model, and a record that passes the gate becoming samples."""

import json
import re
import shutil

import pytest

from curation.frames import FramePolicy
from curation.executors import run_stage
from curation.store import Dataset
from curation.times import answer_tokens, parse_span, render_span, span_pattern
from synth.metrics import temporal_iou
from synth.tasks import BUILDERS, TasksStage, VideoRows
from synth.verify import (STOP_WORDS, GateConfig, VerifyStage, box_problems, caption_problems, caption_text,
                          content_words, cycle_problems, cycle_question, judge, share_inside, span_problems,
                          track_problems, unique_problems)

GATE = GateConfig()
FPS = 24.0
SEGMENT = (1.0, 9.0)


def _box(t_s, x1, y1=100, w=100):
    return dict(t_s=t_s, x1=x1, y1=y1, x2=x1 + w, y2=y1 + w)


def _record(**kw):
    rec = dict(phrase="the red square", action="move up", start_s=2.0, end_s=6.0,
               boxes=[_box(2.0, 100), _box(4.0, 150), _box(6.0, 200)])
    return dict(rec, **kw)


# --- the checks on values --------------------------------------------------------------------------------------


def test_a_span_one_frame_too_short_fails_form():
    assert span_problems(2.0, 2.0 + 12 / FPS, SEGMENT, FPS, GATE) == []  # 12 frames = 0.5 s
    (reason,) = span_problems(2.0, 2.0 + 11 / FPS, SEGMENT, FPS, GATE)
    assert reason.startswith("form: span lasts 0.458 s (11.0 frames at 24 fps)")
    in_frames = GateConfig(min_span_s=0.0, min_span_frames=2)
    assert span_problems(2.0, 2.0 + 2 / FPS, SEGMENT, FPS, in_frames) == []
    assert len(span_problems(2.0, 2.0 + 1 / FPS, SEGMENT, FPS, in_frames)) == 1


def test_a_span_must_be_ordered_and_inside_its_segment():
    assert span_problems(1.0, 9.0, SEGMENT, FPS, GATE) == []
    (reason,) = span_problems(0.9, 5.0, SEGMENT, FPS, GATE)
    assert "[0.900, 5.000] is not an ordered span inside its segment [1.000, 9.000]" in reason
    assert any("not an ordered span" in r for r in span_problems(5.0, 4.0, SEGMENT, FPS, GATE))


def test_boxes_out_of_order_outside_the_span_or_off_the_grid_each_fail():
    ok = [_box(2.0, 100), _box(4.0, 150)]
    assert box_problems(ok, 2.0, 6.0) == []
    assert box_problems([_box(4.0, 150), _box(3.5, 100)], 2.0, 6.0) == [
        "form: box 1 at 3.500 s does not come after box 0 at 4.000 s"]
    assert box_problems([_box(4.0, 150), _box(4.0, 100)], 2.0, 6.0) == [
        "form: box 1 at 4.000 s does not come after box 0 at 4.000 s"]
    assert box_problems([_box(2.0, 100), _box(6.5, 150)], 2.0, 6.0) == [
        "form: box 1 at 6.500 s is outside the span [2.000, 6.000]"]
    assert box_problems([_box(1.9, 100)], 2.0, 6.0) == ["form: box 0 at 1.900 s is outside the span [2.000, 6.000]"]
    assert box_problems([_box(2.0, 950)], 2.0, 6.0) == [
        "form: box 0 [950, 100, 1050, 200] is not 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000"]


def test_a_box_that_jumps_too_far_per_second_fails_unless_it_overlaps():
    gate = GateConfig(max_jump_per_s=500.0)
    assert track_problems([_box(2.0, 0), _box(3.0, 500)], gate) == []  # 500 per second: at the bound
    (reason,) = track_problems([_box(2.0, 0), _box(3.0, 501)], gate)
    assert reason == "form: a box centre jumps 501 grid units per second without overlap (more than 500)"
    assert track_problems([_box(2.0, 0), _box(2.5, 300)], gate)  # 300 in half a second: 600 per second
    assert track_problems([_box(2.0, 0), _box(2.01, 90)], gate) == []  # fast, but the boxes overlap


def test_the_phrase_must_name_something_the_caption_mentions():
    caption = caption_text("Two red squares move up.", "objects: a square; background: grey wall")
    assert content_words("The red squares, and a wall") == ["red", "square", "wall"]
    assert caption_problems("the red square", caption) == []
    assert caption_problems("a red SQUARE", caption) == []
    assert caption_problems("the blue square", caption) == ["caption: blue of 'the blue square' not in the caption"]
    assert caption_problems("the", caption) == ["caption: phrase 'the' has no content word"]
    assert caption_problems("the background", caption) == [  # a detail label is not something the caption mentions
        "caption: background of 'the background' not in the caption"]
    assert caption_problems("the red square", None) == ["caption: the model has no caption of this segment"]


def test_the_cycle_answer_must_reach_the_tiou_threshold():
    assert cycle_problems(0.5, GATE) == []
    assert cycle_problems(0.49, GATE) == ["cycle: the model's own answer overlaps the span with tIoU 0.49 < 0.5"]
    rec = _record(start_s=2.0, end_s=6.0)
    assert judge(rec, SEGMENT, FPS, "red square", (2.0, 4.0), (2.0, 6.0), GATE)["cycle_ok"]  # tIoU 0.5
    assert not judge(rec, SEGMENT, FPS, "red square", (2.0, 3.96), (2.0, 6.0), GATE)["cycle_ok"]  # tIoU 0.49


def test_a_phrase_the_whole_video_places_elsewhere_fails_uniqueness():
    rec = _record(start_s=2.0, end_s=6.0)
    inside = judge(rec, SEGMENT, FPS, "red square", (2.0, 6.0), (3.0, 5.5), GATE)
    assert (inside["unique_ok"], inside["unique_overlap"], inside["passed"]) == (True, 1.0, True)
    elsewhere = judge(rec, SEGMENT, FPS, "red square", (2.0, 6.0), (11.0, 14.0), GATE)
    assert (elsewhere["unique_ok"], elsewhere["unique_overlap"], elsewhere["passed"]) == (False, 0.0, False)
    assert elsewhere["reasons"] == ["unique: asked over the whole video, the model answers a span only 0.00 of "
                                    "which lies inside the record's (< 0.5)"]
    over_both = judge(rec, SEGMENT, FPS, "red square", (2.0, 6.0), (2.0, 14.0), GATE)
    assert not over_both["unique_ok"] and over_both["unique_overlap"] == pytest.approx(4 / 12)
    assert judge(rec, SEGMENT, FPS, "red square", (2.0, 6.0), (4.0, 8.0), GATE)["unique_ok"]  # half inside
    assert not judge(rec, SEGMENT, FPS, "red square", (2.0, 6.0), (4.1, 8.0), GATE)["unique_ok"]
    assert share_inside(None, (2.0, 6.0)) == share_inside((5.0, 5.0), (2.0, 6.0)) == share_inside(
        (6.0, 3.0), (2.0, 6.0)) == 0.0
    assert unique_problems(0.8, GateConfig(min_unique_overlap=0.9)) == [
        "unique: asked over the whole video, the model answers a span only 0.80 of which lies inside the record's "
        "(< 0.9)"]


def test_a_verdict_passes_only_when_every_check_holds():
    good = judge(_record(), SEGMENT, FPS, "a red square", (2.0, 6.0), (2.5, 6.0), GATE)
    assert good == dict(form_ok=True, caption_ok=True, cycle_ok=True, unique_ok=True, passed=True, reasons=[],
                        span_s=4.0, max_jump_per_s=0.0, missing_words=[], cycle_tiou=1.0, unique_overlap=1.0)
    bad = judge(_record(end_s=2.4, boxes=[_box(2.0, 0), _box(2.2, 800)]), SEGMENT, FPS, "a blue square", None,
                None, GATE)
    assert (bad["form_ok"], bad["caption_ok"], bad["cycle_ok"], bad["unique_ok"], bad["passed"]) == (
        False, False, False, False, False)
    assert [r.split(":")[0] for r in bad["reasons"]] == ["form", "form", "caption", "cycle", "unique"]
    assert bad["missing_words"] == ["red"] and bad["max_jump_per_s"] == pytest.approx(4000.0)


def test_only_the_chosen_checks_decide_passed_and_every_check_is_still_measured():
    no_caption = judge(_record(), SEGMENT, FPS, "a blue circle", (2.0, 6.0), (2.5, 6.0),
                       GateConfig(checks=("form", "cycle", "unique")))
    assert (no_caption["caption_ok"], no_caption["passed"]) == (False, True)
    assert no_caption["reasons"] == ["caption: red, square of 'the red square' not in the caption"]
    assert not judge(_record(), SEGMENT, FPS, "a blue circle", (2.0, 6.0), (2.5, 6.0), GATE)["passed"]
    assert GateConfig(checks=("form", "size")).problems() == [
        "--checks form,size: name one or more of form, caption, cycle, unique"]
    assert GateConfig(checks=()).problems() == ["--checks : name one or more of form, caption, cycle, unique"]


def test_the_question_is_the_samples_and_the_answer_is_their_time_text():
    assert cycle_question("the red square", "move up") == (
        "When does the red square move up? Answer with the time span as <start - end seconds>.")
    pattern = span_pattern(42.0)
    assert re.fullmatch(pattern, render_span(0.0, 42.0)) and re.fullmatch(pattern, render_span(3.25, 17.5))
    assert re.fullmatch(pattern, render_span(9.9, 41.9))
    assert not re.fullmatch(pattern, render_span(3.0, 142.0)) and not re.fullmatch(pattern, "<03.0 - 5.0 seconds>")
    assert not re.fullmatch(pattern, render_span(3.0, 42.1)) and not re.fullmatch(pattern, render_span(43.0, 43.5))
    assert not re.fullmatch(pattern, "<3.0 - 5.00 seconds>") and not re.fullmatch(pattern, "<3 - 5.0 seconds>")
    tight = span_pattern(8.958)  # a segment ending between rendered tenths: up to 8.9
    assert re.fullmatch(tight, "<0.0 - 8.9 seconds>") and not re.fullmatch(tight, "<0.0 - 9.0 seconds>")
    assert re.fullmatch(span_pattern(0.0), "<0.0 - 0.0 seconds>") and not re.fullmatch(span_pattern(0.0),
                                                                                         "<0.0 - 0.1 seconds>")
    assert len(json.dumps(render_span(999999.9, 999999.9))) < answer_tokens()
    with pytest.raises(ValueError, match="max_s -1 must be >= 0"):
        span_pattern(-1)


def test_a_model_record_and_a_true_record_with_the_same_phrase_are_two_samples():
    video = dict(video_id="v1", uri="/x.mp4", n_frames=240, fps=FPS, domain="d", width=160, height=128)
    truth = dict(_record(), source="ground_truth", record_id="t1")
    model = dict(_record(), source="model", record_id="m1")
    drafts = BUILDERS["temporal_grounding"](VideoRows(video, grounding=[truth, model]))
    assert len({d.key for d in drafts}) == 2 and {d.answer for d in drafts} == {"<2.0 - 6.0 seconds>"}


def test_gate_flags_and_opt_in_needles(capsys):
    from densevid.cli import config_from_args, main, parser
    from densevid.pipeline import PipelineConfig, build_stage

    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = capsys.readouterr().out
    for flag in ("--min-span-s", "--min-span-frames", "--max-jump-per-s", "--min-cycle-tiou", "--unique-frames",
                 "--min-unique-overlap", "--model", "--batch-size", "--backend"):
        assert flag in text, flag
    assert "--needle" not in text
    assert [s.name for s in build_stage("tasks", PipelineConfig(data="d"))] == ["tasks"]
    assert [s.name for s in build_stage("tasks", PipelineConfig(data="d", needle=True))] == ["tasks", "needle"]
    gate = GateConfig(min_cycle_tiou=1.5, max_jump_per_s=0, unique_frames=7, min_unique_overlap=-0.1)
    problems = PipelineConfig(data="d", gate=gate).problems(("verify",))
    assert "--min-cycle-tiou 1.5 must be in [0, 1]" in problems and "--max-jump-per-s 0 must be > 0" in problems
    assert "--unique-frames 7 must be even and >= 2" in problems
    assert "--min-unique-overlap -0.1 must be in [0, 1]" in problems
    args = parser().parse_args(["verify", "--data", "d", "--unique-frames", "12", "--min-unique-overlap", "0.75"])
    (stage,) = build_stage("verify", config_from_args(PipelineConfig, args))
    assert (stage.gate.unique_frames, stage.gate.min_unique_overlap) == (12, 0.75)


# --- the stage on the built dataset ----------------------------------------------------------------------------


def _copy(built_dataset, tmp_path):
    cfg, _ = built_dataset
    return cfg, Dataset(shutil.copytree(cfg.data, tmp_path / "ds"))


def _captioned_segment(ds: Dataset) -> dict:
    return ds.sql("SELECT s.*, v.fps, v.duration_s, v.n_frames, c.summary, c.details FROM segments s JOIN captions c USING (segment_id) "
                  "JOIN videos v ON v.video_id = s.video_id ORDER BY s.video_id, s.idx LIMIT 1").to_pylist()[0]


def _model_record(stage: VerifyStage, seg: dict, record_id: str, phrase: str, start_s: float, end_s: float,
                  boxes: list[dict]) -> dict:
    return dict(record_id=record_id, video_id=seg["video_id"], segment_id=seg["segment_id"], phrase=phrase,
                action="move", start_s=start_s, end_s=end_s, boxes=boxes, source="model", model=stage.model_name,
                code_version="test")


def _said(seg: dict) -> str:
    """A phrase made of the caption's own first two words past the stop words (the tiny model's captions are
    noise)."""
    words = [w for w in re.findall(r"[a-z0-9]+", seg["summary"].lower()) if w not in STOP_WORDS]
    return "the " + " ".join(words[:2])


def test_every_model_record_gets_one_verdict_counted_in_stats_and_sql(built_dataset, tmp_path):
    cfg, ds = _copy(built_dataset, tmp_path)
    stage = VerifyStage(model_id=cfg.model, frames=FramePolicy(max_frames=cfg.caption_frames))
    seg = _captioned_segment(ds)
    s, e, fps = seg["start_s"], seg["end_s"], seg["fps"]
    caption = caption_text(seg["summary"], seg["details"])
    stranger = "the quokka xylophone"
    assert not set(content_words(stranger)) & set(content_words(caption)), "precondition: not in the caption"
    ds.write("grounding", [
        _model_record(stage, seg, "agrees", _said(seg), s, e, [_box(s, 100), _box(e, 150)]),
        _model_record(stage, seg, "short", _said(seg), s, s + 11 / fps, []),
        _model_record(stage, seg, "stranger", stranger, s, e, []),
        _model_record(stage, seg, "jumpy", _said(seg), s, e, [_box(s, 0), _box(s + 0.5, 800)]),
        _model_record(stage, seg, "late_box", _said(seg), s, s + 1.0, [_box(s + 1.5, 100)]),
    ])
    grounding_before = ds.sql("SELECT * FROM grounding ORDER BY record_id").to_pylist()
    n_model = ds.sql("SELECT count(*) AS n FROM grounding WHERE source = 'model' AND model = ?",
                     [stage.model_name]).column("n")[0].as_py()

    stats = run_stage(stage, ds, progress=False)

    made = ["agrees", "short", "stranger", "jumpy", "late_box"]  # the pipeline's own records are verified already
    assert stats.n_failed == 0 and stats.counts["rows_written"] == len(made)
    assert len(ds.rows("verdicts")) == n_model
    verdicts = {v["record_id"]: v for v in ds.rows("verdicts") if v["record_id"] in made}
    assert all(v["passed"] == (v["form_ok"] and v["caption_ok"] and v["cycle_ok"] and v["unique_ok"])
               for v in verdicts.values())
    assert all(bool(v["reasons"]) == (not v["passed"]) for v in verdicts.values())
    expected = {"agrees": (True, True), "short": (False, True), "stranger": (True, False), "jumpy": (False, True),
                "late_box": (False, True)}
    assert {k: (verdicts[k]["form_ok"], verdicts[k]["caption_ok"]) for k in expected} == expected
    assert verdicts["stranger"]["missing_words"] == ["quokka", "xylophone"]
    assert verdicts["jumpy"]["max_jump_per_s"] == pytest.approx(1600.0)
    for v in verdicts.values():
        answer = parse_span(v["cycle_answer"])
        assert answer is not None and v["cycle_answer"] == render_span(*answer)
        record = next(g for g in grounding_before if g["record_id"] == v["record_id"])
        assert v["cycle_tiou"] == pytest.approx(temporal_iou(answer, (record["start_s"], record["end_s"])))
        assert v["cycle_ok"] == (v["cycle_tiou"] >= 0.5) and json.loads(v["thresholds"])["min_cycle_tiou"] == 0.5
        whole = parse_span(v["unique_answer"])  # asked over the whole video: any time of it may be answered
        assert whole is not None and v["unique_answer"] == render_span(*whole) and whole[1] <= seg["duration_s"]
        assert v["unique_overlap"] == pytest.approx(share_inside(whole, (record["start_s"], record["end_s"])))
        assert v["unique_ok"] == (v["unique_overlap"] >= 0.5) and json.loads(v["thresholds"])["unique_frames"] == 32
    sql = ds.sql("SELECT count(*) FILTER (passed) AS passed, count(*) FILTER (NOT form_ok) AS failed_form, "
                 "count(*) FILTER (NOT caption_ok) AS failed_caption, count(*) FILTER (NOT cycle_ok) AS failed_cycle, "
                 "count(*) FILTER (NOT unique_ok) AS failed_unique FROM verdicts WHERE list_contains(?, record_id)",
                 [made]).to_pylist()[0]
    assert sql == {k: stats.counts[k] for k in sql}
    assert ds.sql("SELECT * FROM grounding ORDER BY record_id").to_pylist() == grounding_before  # rejected stay

    assert stats.counts["items"] == len(made)  # each record counted once, though asked twice

    again = run_stage(stage, ds, progress=False)
    assert again.counts["rows_written"] == 0 and again.counts["skipped_done"] == n_model


def test_the_uniqueness_question_sees_the_whole_video_within_its_own_budget(built_dataset, tmp_path):
    cfg, ds = _copy(built_dataset, tmp_path)
    stage = VerifyStage(model_id=cfg.model, frames=FramePolicy(max_frames=4), gate=GateConfig(unique_frames=10))
    seg = _captioned_segment(ds)
    ds.write("grounding", [_model_record(stage, seg, "r", "the x", seg["start_s"], seg["end_s"], [])])
    (item,) = [i for i in stage.items(ds) if i["record_id"] == "r"]
    stage.setup(ds)
    near = stage._prepare(item)["indices"]
    whole = stage._prepare(stage.whole_video(item))["indices"]
    assert len(near) == 4 and all(seg["start_frame"] <= i < seg["end_frame"] for i in near)
    assert whole == [int((k + 0.5) * seg["n_frames"] / 10) for k in range(10)]  # bin centres over every frame of the video
    assert stage.schema(stage.whole_video(item))["pattern"] == span_pattern(seg["duration_s"])
    assert stage.schema(item)["pattern"] == span_pattern(seg["end_s"])


def test_a_record_that_passes_the_gate_becomes_exactly_its_samples(built_dataset, tmp_path):
    """The tiny model answers at random, so the cycle and uniqueness thresholds are 0 here: the record spans its
    whole segment and its phrase is the caption's own words, so form and caption hold, and any answer meets
    them."""
    cfg, ds = _copy(built_dataset, tmp_path)
    stage = VerifyStage(model_id=cfg.model, frames=FramePolicy(max_frames=cfg.caption_frames),
                        gate=GateConfig(min_cycle_tiou=0.0, min_unique_overlap=0.0))
    seg = _captioned_segment(ds)
    s, e = seg["start_s"], seg["end_s"]
    boxes = [_box(s, 100), _box(e, 150)]
    ds.write("grounding", [_model_record(stage, seg, "agrees", _said(seg), s, e, boxes),
                           _model_record(stage, seg, "stranger", "the quokka xylophone", s, e, boxes)])
    run_stage(stage, ds, progress=False)
    made = {v["record_id"]: v["passed"] for v in ds.rows("verdicts") if v["record_id"] in ("agrees", "stranger")}
    assert made == {"agrees": True, "stranger": False}

    shutil.rmtree(ds.root / "samples")  # build the samples again, now with the verdicts
    tasks = TasksStage(model_id=cfg.model, frames=FramePolicy(max_frames=cfg.sample_frames),
                       segment_frames=FramePolicy(max_frames=cfg.caption_frames),
                       tasks=("temporal_grounding", "spatio_temporal_grounding"))
    run_stage(tasks, ds, progress=False)

    n_truth = ds.sql("SELECT count(*) AS n FROM grounding WHERE source = 'ground_truth' AND video_id = ?",
                     [seg["video_id"]]).column("n")[0].as_py()
    samples = ds.sql("SELECT task, messages FROM samples WHERE video_id = ? ORDER BY task",
                     [seg["video_id"]]).to_pylist()
    temporal = [json.loads(r["messages"]) for r in samples if r["task"] == "temporal_grounding"]
    assert len(temporal) == n_truth + 1
    question = cycle_question(_said(seg), "move")
    ours = [m for m in temporal if m[0]["content"][1]["text"] == question]
    assert [m[1]["content"][0]["text"] for m in ours] == [render_span(s, e)]
    st = [json.loads(json.loads(r["messages"])[1]["content"][0]["text"]) for r in samples
          if r["task"] == "spatio_temporal_grounding"]
    (mine,) = [a for a in st if a["phrase"] == _said(seg)]
    assert mine["time"] == render_span(s, e) and [b["bbox_2d"] for b in mine["boxes"]] == [
        [b["x1"], b["y1"], b["x2"], b["y2"]] for b in boxes]
    assert not any("quokka" in r["messages"] for r in samples)


def test_without_the_gate_every_well_formed_record_is_a_sample_and_a_reversed_one_is_not(built_dataset, tmp_path):
    cfg, ds = _copy(built_dataset, tmp_path)
    stage = VerifyStage(model_id=cfg.model)
    seg = _captioned_segment(ds)
    s, e = seg["start_s"], seg["end_s"]
    swapped = [dict(t_s=s, x1=300, y1=100, x2=100, y2=300)]
    ds.write("grounding", [_model_record(stage, seg, "kept", "the quokka", s, e, [_box(s, 100)]),
                           _model_record(stage, seg, "reversed", "the xylophone", e, s, [_box(s, 100)]),
                           _model_record(stage, seg, "swapped", "the zeppelin", s, e, swapped)])
    shutil.rmtree(ds.root / "samples")
    tasks = TasksStage(model_id=cfg.model, frames=FramePolicy(max_frames=cfg.sample_frames),
                       segment_frames=FramePolicy(max_frames=cfg.caption_frames),
                       tasks=("temporal_grounding",), include_rejected=True)
    run_stage(tasks, ds, progress=False)
    texts = [r["messages"] for r in ds.sql("SELECT messages FROM samples WHERE task = 'temporal_grounding'").to_pylist()]
    assert sum("quokka" in t for t in texts) == 1
    assert not any("xylophone" in t or "zeppelin" in t for t in texts)
