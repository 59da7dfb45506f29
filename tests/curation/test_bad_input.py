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


def _write(path, frames, rate=24, pts_ms=None, rotation=0):
    """Encode RGB frames; ``pts_ms`` gives each frame's time in ms (variable frame rate)."""
    from fractions import Fraction

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if pts_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            s.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def _marked(n, h, w):
    """Frames with a white block in the top-left corner, to see where rotation puts it."""
    frames = np.full((n, h, w, 3), 40, np.uint8)
    frames[:, : h // 4, : w // 4] = 255
    return frames


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
    (root / "odd" / "ünïcødé clip.mp4").write_bytes(data)
    pts = np.cumsum([0] + [40 if i % 3 else 100 for i in range(1, 36)]).tolist()
    _write(root / "odd" / "vfr.mp4", list(_marked(36, 64, 96)), pts_ms=pts)
    _write(root / "odd" / "rotated.mp4", list(_marked(24, 64, 96)), rotation=90)
    _write(root / "odd" / "uhd.mp4", list(_marked(4, 2160, 3840)))  # same bytes as the good one below
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
