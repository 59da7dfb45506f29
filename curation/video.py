"""Probing and decoding video files: decord first, PyAV when decord cannot read a file.

A video may be an object in a bucket (``s3://...``): PyAV probes and decodes it through a file-like object
that fetches byte ranges on demand; decord, which needs a path, reads this worker's cached copy
(``curation.storage.VideoCache``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from curation import storage

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}


class VideoError(Exception):
    """A video that cannot be probed or decoded; the message says which file and why."""


@dataclass
class Probe:
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    codec: str
    rotation: int
    bytes: int
    variable_fps: bool = False


def content_id(path: str | Path, chunk: int = 1 << 20) -> str:
    """video_id: a hash of the file's bytes, so the same file under two paths is one video."""
    h = hashlib.sha256()
    with _open_bytes(path) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:16]


def _open_bytes(path):
    return storage.open_input(path) if storage.is_url(str(path)) else open(path, "rb")


@contextlib.contextmanager
def av_open(path: str | Path):
    """``av.open`` on a local file, or on a remote object through range reads (the object stays remote; one
    this process has listed or stated needs no HEAD)."""
    import av

    source = storage.open_input(path)
    try:
        with av.open(source) as container:
            yield container
    finally:
        if hasattr(source, "close"):
            source.close()


def probe(path: str | Path) -> Probe:
    """Read stream facts with PyAV, frame count with decord, and decode a frame to prove it is readable."""
    import av

    path = storage.location(path)
    try:
        stamp = storage.stamp_of(path)  # the one stat: the opens below reuse its size and ETag
    except FileNotFoundError as e:
        raise VideoError(f"{path}: no such file (removed since it was listed?)") from e
    size = stamp[0]
    if size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    try:
        with av_open(path) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream (audio only or not a video)")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
            variable = _is_variable_rate(container, stream)
        rotation = _rotation(path, stamp)
        if rotation in (90, 270):  # report what a viewer sees: the display size
            width, height = height, width
    except VideoError:
        raise
    except Exception as e:  # PyAV raises many types for unreadable containers
        raise VideoError(f"{path}: not a readable video container ({type(e).__name__}: {e})") from e
    n_frames = _count_frames(path, rotation)
    if n_frames < 1:
        raise VideoError(f"{path}: no decodable frames")
    if fps <= 0:
        raise VideoError(f"{path}: stream has no frame rate")
    return Probe(n_frames / fps, fps, n_frames, width, height, codec, rotation, size, variable)


def _is_variable_rate(container, stream, max_packets: int = 600) -> bool:
    """Demux (no decoding) the first packets and compare their durations."""
    pts = []
    for packet in container.demux(stream):
        if packet.pts is not None:
            pts.append(packet.pts)
        if len(pts) >= max_packets:
            break
    container.seek(0)
    deltas = np.diff(np.sort(np.asarray(pts, dtype=np.float64)))
    deltas = deltas[deltas > 0]
    if len(deltas) < 3:
        return False
    return float(deltas.max() - deltas.min()) > 0.1 * float(np.median(deltas))


@lru_cache(maxsize=4096)
def _rotation_cached(path: str, size: int, version) -> int:
    with av_open(path) as container:
        for frame in container.decode(video=0):
            return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    return 0


def rotation_of(path: str | Path) -> int:
    """Counter-clockwise degrees a viewer turns the coded frames (display matrix), 0/90/180/270."""
    return _rotation(path, storage.stamp_of(path))


def _rotation(path, stamp: tuple) -> int:
    try:
        return _rotation_cached(str(path), *stamp)
    except Exception:
        return 0


def _count_frames(path: Path, rotation: int) -> int:
    if rotation or storage.is_url(str(path)):  # decord needs a local path: PyAV reads the object
        return len(_pyav_frames(path, None))
    try:
        vr = _decord_reader(path)
        n = len(vr)
        vr.get_batch([n - 1]).asnumpy()  # the last frame proves the stream is complete
        return n
    except Exception:
        return len(_pyav_frames(path, None))


def _decord_reader(path: Path):
    import decord

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)


def read_frames(path: str | Path, indices: list[int] | np.ndarray) -> np.ndarray:
    """Decode the frames at ``indices`` as uint8 RGB, shape (n, h, w, 3)."""
    if storage.is_url(str(path)):  # random access, often repeated (training, captions): a cached copy
        path = storage.local_path(path)
    path = Path(path)
    idx = [int(i) for i in indices]
    if not idx:
        raise VideoError(f"{path}: no frame indices to decode")
    rotation = rotation_of(path)
    if rotation == 0:  # decord does not apply display rotation: rotated files go through PyAV
        try:
            return _decord_reader(path).get_batch(idx).asnumpy()
        except Exception:
            pass
    frames = _pyav_frames(path, set(idx))
    missing = [i for i in idx if i not in frames]
    if missing:
        raise VideoError(f"{path}: frames {missing[:5]} could not be decoded ({len(frames)} decoded)")
    out = np.stack([frames[i] for i in idx])
    return np.ascontiguousarray(np.rot90(out, k=rotation // 90, axes=(1, 2))) if rotation else out


def frames_between(path: str | Path, start_frame: int, end_frame: int, chunk: int = 64):
    """Frames [start_frame, end_frame) one at a time, decoded ``chunk`` at once (bounded memory)."""
    for a in range(start_frame, end_frame, chunk):
        yield from read_frames(path, np.arange(a, min(a + chunk, end_frame)))


def encode_frames(dst: str | Path, frames, rate, options: dict[str, str], source: str | Path = "") -> None:
    """RGB frames to an H.264 (yuv420p) MP4 at ``dst`` with libx264 ``options``; the size is the first
    frame's, cut to even (4:2:0 needs it). Errors name ``source`` (where the frames came from) if given."""
    name = source or dst
    import av

    with av.open(str(dst), "w", format="mp4") as out:
        stream = None
        for img in frames:
            if stream is None:
                h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
                if h < 2 or w < 2:
                    raise VideoError(f"{name}: frames of {img.shape[1]}x{img.shape[0]} are too small to encode")
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                stream.options = options
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w], dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        if stream is None:
            raise VideoError(f"{name}: no frames to encode")
        for packet in stream.encode():
            out.mux(packet)


def _pyav_frames(path: Path, wanted: set[int] | None) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    try:
        with av_open(path) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if wanted is None or i in wanted:
                    out[i] = frame.to_ndarray(format="rgb24") if wanted is not None else None
                if wanted is not None and len(out) == len(wanted):
                    break
    except Exception as e:
        if not out:
            raise VideoError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e
    return out


def list_videos(root: str | Path) -> list[Path]:
    if storage.is_url(str(root)):
        return _list_remote_videos(str(root))
    root = Path(root).expanduser()
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise VideoError(f"{root}: no such folder; pass --videos DIR with video files in it")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _list_remote_videos(url: str) -> list:
    fs, inner = storage.filesystem(url)
    protocol = url.split("://", 1)[0]
    try:
        if fs.isfile(inner):
            return [storage.location(url)]
        found = fs.find(inner, detail=True)
    except FileNotFoundError:
        found = {}
    except Exception as e:  # botocore and aiohttp raise many types
        raise VideoError(storage.explain(url, e)) from e
    if not found and not fs.exists(inner):
        raise VideoError(f"{url}: no such prefix (or no such bucket); pass --videos s3://BUCKET/PREFIX with videos under it")
    videos = []
    for p, info in found.items():
        if Path(p).suffix.lower() in VIDEO_SUFFIXES:
            videos.append(storage.location(f"{protocol}://{p}"))
            storage.remember(videos[-1], info)  # ingest then sizes and hashes it without a HEAD
    return sorted(videos, key=str)
