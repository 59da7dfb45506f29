"""Task kinds are pure builders over one video's rows; sample rows keep their clip as frames."""

import json

from curation.frames import FramePolicy
from curation.times import FrameSpan
from synth.tasks import BUILDERS, TASKS, Draft, TasksStage, VideoRows, clip_sample, task_builder

VIDEO = dict(video_id="v1", uri="/x/v1.mp4", n_frames=480, fps=24.0, domain="cinematic", width=160, height=128)
TRUTH = dict(phrase="the red square", action="move up", start_s=1.5, end_s=7.25,
             boxes=[dict(t_s=2.0, x1=10, y1=20, x2=110, y2=220), dict(t_s=6.5, x1=30, y1=20, x2=130, y2=220)])
SEGMENT = dict(segment_id="s1", start_frame=6, end_frame=234, start_s=0.25, end_s=9.75, summary="A square rises.",
               details="objects: a red square")


def test_every_builder_answers_with_exact_time_text():
    rows = VideoRows(VIDEO, dense="<0.2 - 9.8 seconds> A square rises.", segments=[SEGMENT], grounding=[TRUTH])
    drafts = {name: BUILDERS[name](rows) for name in BUILDERS}
    assert [d.answer for d in drafts["dense_caption"]] == ["<0.2 - 9.8 seconds> A square rises."]
    assert [d.answer for d in drafts["segment_caption"]] == ["<0.2 - 9.8 seconds> A square rises. objects: a red square"]
    assert drafts["segment_caption"][0].span == FrameSpan(6, 234, 24.0) and drafts["segment_caption"][0].segment_level
    assert [d.answer for d in drafts["temporal_grounding"]] == ["<1.5 - 7.2 seconds>"]
    st = json.loads(drafts["spatio_temporal_grounding"][0].answer)
    assert st == {"phrase": "the red square", "time": "<1.5 - 7.2 seconds>",
                  "boxes": [{"time": "<2.0 seconds>", "bbox_2d": [10, 20, 110, 220]},
                            {"time": "<6.5 seconds>", "bbox_2d": [30, 20, 130, 220]}]}
    assert BUILDERS["dense_caption"](VideoRows(VIDEO)) == [] and BUILDERS["spatio_temporal_grounding"](
        VideoRows(VIDEO, grounding=[dict(TRUTH, boxes=[])])) == []


def test_clip_sample_stores_frames_and_derives_seconds():
    draft = Draft("segment_caption", "s1", "Describe.", "answer", FrameSpan(6, 234, 24.0), segment_level=True)
    row = clip_sample(VIDEO, draft, FramePolicy(max_frames=4))
    assert (row["clip_start_frame"], row["clip_end_frame"], row["video_n_frames"]) == (6, 234, 480)
    assert (row["clip_start_s"], row["clip_end_s"]) == (0.25, 9.75)
    assert len(row["frame_indices"]) == 4 and all(6 <= i < 234 for i in row["frame_indices"])
    whole = clip_sample(VIDEO, Draft("dense_caption", "all", "p", "a"), FramePolicy(max_frames=4))
    assert (whole["clip_start_frame"], whole["clip_end_frame"], whole["clip_end_s"]) == (0, 480, 20.0)


def test_a_new_task_kind_is_one_builder():
    @task_builder("count_segments")
    def count_segments(rows):
        return [Draft("count_segments", "n", "How many scenes?", str(len(rows.segments)))]

    try:
        assert BUILDERS["count_segments"](VideoRows(VIDEO, segments=[SEGMENT]))[0].answer == "1"
    finally:
        del BUILDERS["count_segments"]
    assert set(TASKS) == set(BUILDERS) | {"needle"}


def test_a_new_kind_reaches_videos_built_before_it(built_dataset, tmp_path):
    """`tasks=("new_kind",)` builds only that kind for videos that already have samples; a rerun adds nothing."""
    import shutil

    from curation.executors import run_stage
    from curation.store import Dataset

    cfg, _ = built_dataset
    ds = Dataset(shutil.copytree(cfg.data, tmp_path / "ds"))
    before = ds.counts()["samples"]

    @task_builder("count_segments")
    def count_segments(rows):
        return [Draft("count_segments", "n", "How many scenes?", str(len(rows.segments)))]

    try:
        stage = TasksStage(model_id=str(cfg.model), tasks=("count_segments",))
        assert run_stage(stage, ds, progress=False).counts["rows_written"] == 3
        assert run_stage(stage, ds, progress=False).counts["rows_written"] == 0
    finally:
        del BUILDERS["count_segments"]
    rows = ds.sql("SELECT s.messages, (SELECT count(*) FROM segments g WHERE g.video_id = s.video_id) AS n "
                  "FROM samples s WHERE task = 'count_segments'").to_pylist()
    assert len(rows) == 3 and all(json.loads(r["messages"])[1]["content"][0]["text"] == str(r["n"]) for r in rows)
    assert ds.counts()["samples"] == before + 3


def test_needle_grid_and_frame_budgets_are_checked_together():
    from densevid.pipeline import PipelineConfig

    problems = PipelineConfig(data="d", needle_depths=(0.5, 1.5), needle_durations_s=(1.0, 20.0), sample_frames=3,
                              tasks=("dense_caption", "nope")).problems(("tasks",))
    text = "\n".join(problems)
    assert "needle depths (0.5, 1.5)" in text and "needle durations (1.0, 20.0)" in text
    assert "--sample-frames 3" in text and "--tasks nope" in text


def test_needle_truth_written_before_the_needle_had_its_clock(tmp_path):
    from synth.needle import needle_span, needle_truth

    (tmp_path / "h.json").write_text(json.dumps({"fps": 24.0, "n_frames": 480, "scene_starts": [0], "shapes": [],
                                                 "needle": {"start_frame": 48, "n_frames": 24, "colour": "red",
                                                            "depth": 0.1}}))
    needle = needle_truth(tmp_path / "h.mp4")
    assert (needle["fps"], needle["duration_s"], needle["colour"]) == (24.0, 20.0, "red")
    assert needle_span(needle) == (2.0, 3.0)


IN_SEGMENT = dict(segment_id="s1", segment_start_frame=6, segment_end_frame=234, segment_start_s=0.25,
                  segment_end_s=9.75)


def test_segment_grounding_asks_the_ground_stage_question_and_answers_in_its_schema():
    import jsonschema

    from synth.grounding import grounding_schema

    model = dict(TRUTH, **IN_SEGMENT, phrase="the blue circle", start_s=2.004, end_s=3.5, boxes=[], source="model",
                 model="M", record_id="r2", passed=True)
    across = dict(TRUTH, **IN_SEGMENT, phrase="the green square", start_s=9.0, end_s=11.0)  # leaves its segment
    drafts = BUILDERS["segment_grounding"](VideoRows(VIDEO, grounding=[dict(TRUTH, **IN_SEGMENT), model, across]))
    assert len(drafts) == 1 and drafts[0].span == FrameSpan(6, 234, 24.0) and drafts[0].segment_level
    assert drafts[0].prompt.startswith("You are watching one segment of a longer video, from 0.2 to 9.8 seconds.")
    answer = json.loads(drafts[0].answer)
    assert answer == {"entities": [
        {"phrase": "the red square", "action": "move up", "start_s": 1.5, "end_s": 7.25,
         "boxes": [{"t_s": 2.0, "bbox_2d": [10, 20, 110, 220]}, {"t_s": 6.5, "bbox_2d": [30, 20, 130, 220]}]},
        {"phrase": "the blue circle", "action": "move up", "start_s": 2.0, "end_s": 3.5, "boxes": []}]}
    jsonschema.validate(answer["entities"][0], grounding_schema(0.25, 9.75)["properties"]["entities"]["items"])
    assert (drafts[0].origin, drafts[0].model, drafts[0].passed_gate) == ("model", "M", True)


def test_samples_name_their_maker_and_each_models_dense_caption_has_its_own_id():
    from curation.store import stable_id
    from synth.tasks import sample_id

    a = BUILDERS["dense_caption"](VideoRows(VIDEO, dense="<0.2 - 9.8 seconds> A.", model="A"))[0]
    b = BUILDERS["dense_caption"](VideoRows(VIDEO, dense="<0.2 - 9.8 seconds> A.", model="B"))[0]
    assert (a.origin, a.model, a.passed_gate) == ("model", "A", None)
    assert sample_id(a, VIDEO) == stable_id("dense_caption", "v1", "all", "A") != sample_id(b, VIDEO)
    truth = BUILDERS["temporal_grounding"](VideoRows(VIDEO, grounding=[TRUTH]))[0]
    assert (truth.origin, truth.model, truth.passed_gate) == ("ground_truth", "", None)
    assert sample_id(truth, VIDEO) == stable_id("temporal_grounding", "v1", "the red square@1.500")  # as before
    rejected = dict(TRUTH, source="model", model="M", record_id="r9", passed=None)
    assert BUILDERS["temporal_grounding"](VideoRows(VIDEO, grounding=[rejected]))[0].passed_gate is False
