"""Broken, empty, truncated and odd files: each gets a failures row or correct handling; the batch goes on."""

import pytest

from curation.executors import run_stage
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset


def test_each_bad_file_gets_a_clear_failure_and_the_rest_goes_on(bad_corpus, tmp_path):
    ds = Dataset(tmp_path / "d")
    stats = run_stage(IngestStage(videos=bad_corpus), ds, progress=False)
    by_name = {r["message"].split(":")[0].split("/")[-1]: r["message"] for r in ds.rows("failures")}
    assert "file is empty" in by_name["empty.mp4"]
    assert "not a readable video" in by_name["notes.mp4"]
    assert "no video stream" in by_name["voice.mp4"]
    assert "truncated.mp4" in by_name  # unreadable past its first third
    assert stats.n_failed == 4
    videos = {v["uri"].split("/")[-1]: v for v in ds.rows("videos")}
    odd = {"single.mp4", "tiny16.mp4", "vfr.mp4", "rotated.mp4", "uhd.mp4"}
    assert set(videos) in (odd | {"run.mp4"}, odd | {"ünïcødé clip.mp4"})
    dup = [v for v in videos.values() if len(v["uris"]) == 2]
    assert len(dup) == 1 and any("ünïcødé clip.mp4" in u for u in dup[0]["uris"])
    assert videos["single.mp4"]["n_frames"] == 1
    assert (videos["tiny16.mp4"]["width"], videos["tiny16.mp4"]["height"]) == (16, 16)
    assert videos["vfr.mp4"]["variable_fps"] and not videos["tiny16.mp4"]["variable_fps"]
    assert (videos["rotated.mp4"]["rotation"], videos["rotated.mp4"]["width"], videos["rotated.mp4"]["height"]) == (90, 64, 96)
    assert (videos["uhd.mp4"]["width"], videos["uhd.mp4"]["height"], videos["uhd.mp4"]["n_frames"]) == (3840, 2160, 4)

    # split runs on every video that was ingested, including the odd ones
    split = run_stage(SplitStage(), ds, progress=False)
    assert split.n_failed == 0
    segs = ds.sql("SELECT video_id, count(*) AS n, min(start_frame) AS a, max(end_frame) AS b FROM segments GROUP BY 1").to_pylist()
    assert len(segs) == len(videos) and all(s["a"] == 0 for s in segs)

    # a rerun changes nothing and retries the failures without duplicating their rows
    again = run_stage(IngestStage(videos=bad_corpus), ds, progress=False)
    assert again.counts["rows_written"] == 0 and again.n_failed == 4
    assert len(ds.rows("failures")) == 4


def test_rotated_frames_come_out_upright(bad_corpus):
    from curation.video import read_frames

    frames = read_frames(bad_corpus / "odd" / "rotated.mp4", [0, 5])
    assert frames.shape == (2, 96, 64, 3)  # coded 96x64 landscape, shown as portrait
    # turned 90 degrees counter-clockwise: the top-left block ends bottom-left
    assert frames[0, -5, 3].mean() > 200 and frames[0, 3, 3].mean() < 100


def test_missing_folder_is_a_clear_error(tmp_path):
    from curation.video import VideoError

    with pytest.raises(VideoError, match="no such folder"):
        IngestStage(videos=tmp_path / "nope").items(Dataset(tmp_path / "d"))
