"""Broken, empty, truncated and odd files: each gets a failures row or correct handling; the batch goes on."""

import shutil

import av
import numpy as np
import pytest

from curation.jobs import run_stage
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from synth.videos import render_video


def _audio_only(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = np.zeros((1, 1024), np.float32)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


def _one_frame(path, size=(64, 48)):
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for p in s.encode(av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 90, np.uint8), format="rgb24")):
            out.mux(p)
        for p in s.encode():
            out.mux(p)


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("bad")
    good = corpus / "cinematic" / "run.mp4"
    (root / "broken").mkdir()
    (root / "broken" / "empty.mp4").write_bytes(b"")
    (root / "broken" / "notes.mp4").write_text("this is a text file, not a video\n" * 50)
    data = good.read_bytes()
    (root / "broken" / "truncated.mp4").write_bytes(data[: len(data) // 3])
    _audio_only(root / "broken" / "voice.mp4")
    (root / "odd").mkdir()
    _one_frame(root / "odd" / "single.mp4")
    render_video(root / "odd" / "tiny16.mp4", "odd", 4, seed=3, size=(16, 16), n_scenes=1, n_fades=0)
    (root / "odd" / "ünïcødé clip.mp4").write_bytes(data)  # same bytes as the good one below
    (root / "cinematic").mkdir()
    shutil.copy(good, root / "cinematic" / "run.mp4")
    return root


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
    assert set(videos) == {"run.mp4", "single.mp4", "tiny16.mp4"} or set(videos) == {"ünïcødé clip.mp4", "single.mp4", "tiny16.mp4"}
    dup = [v for v in videos.values() if len(v["uris"]) == 2]
    assert len(dup) == 1 and any("ünïcødé clip.mp4" in u for u in dup[0]["uris"])
    assert videos["single.mp4"]["n_frames"] == 1
    assert (videos["tiny16.mp4"]["width"], videos["tiny16.mp4"]["height"]) == (16, 16)

    # split runs on every video that was ingested, including the odd ones
    split = run_stage(SplitStage(), ds, progress=False)
    assert split.n_failed == 0
    segs = ds.sql("SELECT video_id, count(*) AS n, min(start_frame) AS a, max(end_frame) AS b FROM segments GROUP BY 1").to_pylist()
    assert len(segs) == 3 and all(s["a"] == 0 for s in segs)

    # a rerun changes nothing and retries the failures without duplicating their rows
    again = run_stage(IngestStage(videos=bad_corpus), ds, progress=False)
    assert again.counts["rows_written"] == 0 and again.n_failed == 4
    assert len(ds.rows("failures")) == 4


def test_missing_folder_is_a_clear_error(tmp_path):
    from curation.video import VideoError

    with pytest.raises(VideoError, match="no such folder"):
        IngestStage(videos=tmp_path / "nope").items(Dataset(tmp_path / "d"))
