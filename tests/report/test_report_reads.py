"""The report reads views through the catalog: the quality verdicts and the open failures."""

from curation.store import Dataset
from report import data as D
from report import html as H


def _video(vid):
    return dict(video_id=vid, uri=f"/v/{vid}.mp4", domain="cinematic", source="t", duration_s=10.0, fps=24.0,
                n_frames=240, width=160, height=128, codec="h264")


def _segment(k):
    return dict(segment_id=f"s{k}", video_id="v1", idx=k - 1, start_s=2.0 * (k - 1), end_s=2.0 * k,
                start_frame=48 * (k - 1), end_frame=48 * k)


def _signals(sid, keep, reason=""):
    return dict(segment_id=sid, video_id="v1", duration_s=2.0, width=160, height=128, quality_keep=keep,
                quality_reason=reason)


def _small_dataset(path):
    ds = Dataset(path)
    ds.write("videos", [_video("v1"), _video("v2")])
    ds.write("segments", [_segment(k) for k in (1, 2, 3)])
    ds.write("quality_signals", [_signals("s1", True), _signals("s2", False, "black"), _signals("s3", True)])
    for item in ("v1", "v2"):
        ds.fail("split", item, ValueError(f"{item}: cannot decode"))
    ds.resolve("split", ["v1"])  # a later run split v1
    return ds


def test_the_quality_section_reads_the_quality_view(tmp_path):
    t = D.load_tables(_small_dataset(tmp_path / "d"))
    assert sorted((q["segment_id"], q["keep"]) for q in t.quality) == [("s1", True), ("s2", False), ("s3", True)]
    o = D.overview(t, [])
    assert o["quality"] == {"segments": 3, "kept": 2, "reasons": [("black", 1)]}
    assert "2 of 3 segments kept" in H.overview_html(o, "d")


def test_a_dataset_without_quality_signals_has_no_quality_section(tmp_path):
    ds = Dataset(tmp_path / "d")
    ds.write("videos", [_video("v1")])
    ds.write("segments", [_segment(1)])
    assert D.load_tables(ds).quality is None


def test_the_report_lists_open_failures_and_counts_the_resolved(tmp_path):
    t = D.load_tables(_small_dataset(tmp_path / "d"))
    assert [f["item_id"] for f in t.failures] == ["v2"]
    o = D.overview(t, [])
    assert (o["n_failures"], o["resolved_failures"]) == (1, 1)
    assert [(f["stage"], f["count"]) for f in o["failures"]] == [("split", 1)]
    assert {r["video_id"]: r["failures"] for r in D.video_index(t)} == {"v1": 0, "v2": 1}
    page = H.overview_html(o, "d")
    assert "Failures (1 open)" in page and "1 more resolved by a later run" in page


def test_a_verify_run_with_nothing_to_check_says_why(tmp_path):
    """Grounding on real videos wrote nothing, verify checked 0 records, and the report said "no verdicts yet
    (densevid verify)" as if verify had not run. Now it says it ran, had 0 records, and why."""
    from curation.executors import run_stage
    from synth.segment_model import InvalidOutput
    from synth.verify import VerifyStage

    ds = Dataset(tmp_path / "d")
    ds.write("videos", [_video("v1")])
    ds.write("segments", [_segment(k) for k in (1, 2, 3)])
    assert 'no verdicts yet (<code>densevid verify</code>)' in H.overview_html(D.overview(D.load_tables(ds), []), "d")

    for seg in ("s1", "s2"):
        ds.fail("ground", seg, InvalidOutput(f"segment {seg}: box [284, 774, 96, 97] must have 0 <= x1 < x2"),
                variant="tiny")
    ds.fail("ground", "s3", InvalidOutput("segment s3: output cut off"), variant="another-teacher")  # not tiny's
    ds.finish("ground", "tiny", ["s3"])  # the model found nothing there
    ds.record_run("ground", "tiny", dict(items=3, counts={"failed": 2, "finished_empty": 1}))
    stats = run_stage(VerifyStage(model_id="tiny"), ds, progress=False)
    assert stats.counts["rows_written"] == 0 and ds.counts()["verdicts"] == 0

    o = D.overview(D.load_tables(ds), [])
    assert [(u["model"], u["records"], u["ground_records"], u["ground_failed"], u["ground_empty"])
            for u in o["unverified"]] == [("tiny", 0, 0, [("InvalidOutput", 2)], 1)]
    page = H.overview_html(o, "d")
    assert "no verdicts yet" not in page
    assert ('verify ran (model tiny) and wrote no verdicts: 0 records to check, as ground wrote 0 usable records '
            'over 3 segments: 2 failures (InvalidOutput ×2), 1 segment where it found nothing') in page


def test_two_models_failing_one_segment_are_two_open_failures_each_with_its_model(tmp_path):
    ds = Dataset(tmp_path / "d")
    ds.write("videos", [_video("v1")])
    ds.write("segments", [_segment(1)])
    for model in ("/runs/teacher-0", "/runs/teacher-1"):
        ds.fail("ground", "s1", ValueError(f"{model} cut off"), variant=model)
    ds.resolve("ground", ["s1"], variant="/runs/teacher-2")  # another model grounding s1 fixes neither
    t = D.load_tables(ds)
    o = D.overview(t, [])
    assert [(f["stage"], f["variant"], f["count"]) for f in o["failures"]] == [
        ("ground", "/runs/teacher-0", 1), ("ground", "/runs/teacher-1", 1)]
    page = H.overview_html(o, "d")
    assert '<td title="/runs/teacher-0">teacher-0</td>' in page and '<td title="/runs/teacher-1">teacher-1</td>' in page
    video = H.video_html(D.video_page(t, t.videos[0], {}), None)
    assert video.count("cut off</td>") == 2 and '<td title="/runs/teacher-1">teacher-1</td>' in video
