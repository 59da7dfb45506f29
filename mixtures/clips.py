"""Cutting a sample's clip out of its source video: frame-accurate, cached, atomic.

Clip frame k is source frame ``start_frame + k``, at the source's frame rate, so the clip starts at time 0
and a time t on the source clock is ``t - start_frame / fps`` on the clip's. Frames are decoded the way
the rest of the pipeline decodes them (``curation.video.read_frames``: decord, PyAV for rotated or odd
files, display rotation applied) and encoded with libx264. A clip is cached once per
(video_id, start_frame, end_frame) under ``<dataset>/clips/<video_id>/<start>-<end>.mp4``; an existing
file is reused, never cut again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from curation import storage
from curation.atomic import atomic_path
from curation.video import VideoError, encode_frames, frames_between

CHUNK_FRAMES = 64  # frames decoded at once: bounded memory for long or large clips


@dataclass(frozen=True)
class ClipEncoding:
    """libx264 settings of cut clips; every frame is kept (no B-frame reordering across the clip's ends)."""

    crf: int = 18
    preset: str = "veryfast"
    gop_s: float = 2.0


def clip_path(dataset_root: str | Path, video_id: str, start_frame: int, end_frame: int) -> Path:
    return storage.location(dataset_root) / "clips" / video_id / f"{int(start_frame)}-{int(end_frame)}.mp4"


def _download(url, dest: Path) -> str:
    """A bucket's object as a local file (kept when one of the same size is there)."""
    if dest.exists() and dest.stat().st_size == storage.size_of(url):
        return "kept"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fs, inner = storage.filesystem(str(url))
    with atomic_path(dest) as tmp:
        fs.get_file(inner, str(tmp))
    return "copied"


def frame_rate(fps: float) -> Fraction:
    """The stream's rate as a fraction (29.97 -> 30000/1001), so frame k sits at exactly k / fps."""
    return Fraction(fps).limit_denominator(10000)


def ensure_clip(src: str | Path, dest: Path, start_frame: int, end_frame: int, fps: float,
                encoding: ClipEncoding = ClipEncoding()) -> bool:
    """Cut frames ``[start_frame, end_frame)`` of ``src`` to ``dest`` unless it exists; True when cut now.

    The clip is written to a temporary file beside ``dest`` and renamed once complete and checked (its
    frame count), so a killed export leaves no half clip under the final name.
    """
    if storage.exists(dest):
        return False
    if not 0 <= start_frame < end_frame:
        raise VideoError(f"{src}: empty or negative frame span [{start_frame}, {end_frame}) to cut")
    if not storage.is_url(str(dest)):
        dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:  # on a bucket: encoded locally, then one upload
        _encode(src, tmp, start_frame, end_frame, fps, encoding)
        n = _count(tmp)
        if n != end_frame - start_frame:
            raise VideoError(f"{src}: clip [{start_frame}, {end_frame}) came out with {n} frames, expected "
                             f"{end_frame - start_frame}")
    return True


def _encode(src, tmp: Path, start_frame: int, end_frame: int, fps: float, enc: ClipEncoding) -> None:
    options = {"preset": enc.preset, "crf": str(enc.crf), "g": str(max(1, round(fps * enc.gop_s))), "bf": "0"}
    encode_frames(tmp, frames_between(src, start_frame, end_frame, CHUNK_FRAMES), frame_rate(fps), options, source=src)


def _count(path: Path) -> int:
    import decord

    return len(decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1))


def link_or_copy(src: Path, dest: Path) -> str:
    """Put ``src`` at ``dest`` as a hard link (a copy across file systems); "kept" when ``dest`` already is
    that file or an identical copy. The new entry appears under its name atomically."""
    import filecmp
    import shutil

    if storage.is_url(str(src)):
        return _download(src, dest)
    if dest.exists() and (os.path.samefile(src, dest) or filecmp.cmp(src, dest, shallow=False)):
        return "kept"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        try:
            os.link(src, tmp)
            how = "linked"
        except OSError:
            shutil.copy2(src, tmp)
            how = "copied"
    return how
