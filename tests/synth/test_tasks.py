"""Task kinds are pure builders over one video's rows; sample rows keep their clip as frames."""

import json

from curation.frames import FramePolicy
from curation.times import FrameSpan
from synth.tasks import BUILDERS, TASKS, Draft, VideoRows, clip_sample, task_builder

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
