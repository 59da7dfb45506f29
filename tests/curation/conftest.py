"""A corpus of broken, empty, truncated and odd video files next to one good one; comparing datasets."""

import shutil

import av
import numpy as np
import pytest

from curation.store import TABLES, Dataset
from synth.videos import render_video

VOLATILE = {"created_at", "finished_at", "resolved_at"}  # when, not what


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


def write_video(path, frames, rate=24, pts_ms=None, rotation=0):
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


@pytest.fixture(scope="session")
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
    write_video(root / "odd" / "vfr.mp4", list(_marked(36, 64, 96)), pts_ms=pts)
    write_video(root / "odd" / "rotated.mp4", list(_marked(24, 64, 96)), rotation=90)
    write_video(root / "odd" / "uhd.mp4", list(_marked(4, 2160, 3840)))  # same bytes as the good one below
    (root / "cinematic").mkdir()
    shutil.copy(good, root / "cinematic" / "run.mp4")
    return root


def table_rows(ds: Dataset, table: str) -> list:
    """Every row with its values, the dataset's own path written as <data>, in a fixed order."""
    root = str(ds.root)

    def plain(v):
        if isinstance(v, str):
            return v.replace(root, "<data>")
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return sorted(repr({k: plain(v) for k, v in sorted(r.items()) if k not in VOLATILE}) for r in ds.rows(table))


def assert_same_tables(a: Dataset, b: Dataset) -> None:
    for table in TABLES:
        assert table_rows(a, table) == table_rows(b, table), table
