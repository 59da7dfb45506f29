"""Thumbnails: the exact frame at a stated frame index, decoded with the project's own reader
(``curation.video.read_frames``: decord, PyAV for rotated or odd files), shrunk and cached as JPEG under
``<out>/thumbs/<video>/<frame>.jpg``. A video id is a hash of the file's bytes, so a cached thumbnail never
goes stale; a rerun cuts only the ones missing. ``out`` may be a URL (a bucket prefix)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation import storage
from curation.atomic import atomic_write_bytes
from report.data import page_name

THUMB_WIDTH = 192


@dataclass
class ThumbResult:
    cut: int = 0
    cached: int = 0
    error: str | None = None


class Thumbs:
    def __init__(self, out: Path, width: int = THUMB_WIDTH, enabled: bool = True, present: set[str] | None = None):
        self.out = storage.location(out)
        self.width = width
        self.enabled = enabled
        # the site's files (relative paths) as listed once, kept up to date here: no request per thumbnail on
        # a bucket; None asks the file system each time
        self.present = present

    @staticmethod
    def rel(video_id: str, frame: int) -> str:
        """Path of a thumbnail relative to the site root."""
        return f"thumbs/{page_name(video_id)}/{int(frame)}.jpg"

    def path(self, video_id: str, frame: int) -> Path:
        return self.out / self.rel(video_id, frame)

    def ensure(self, video_id: str, uri: str, frames: set[int] | list[int]) -> ThumbResult:
        """Cut the thumbnails of ``frames`` that are not cached yet, in one decoding call."""
        res = ThumbResult()
        if not self.enabled:
            return res
        frames = sorted({int(f) for f in frames})
        missing = [f for f in frames if not self._cached(video_id, f)]
        res.cached = len(frames) - len(missing)
        if not missing:
            return res
        from curation.video import read_frames

        try:
            decoded = read_frames(uri, missing)
        except Exception as e:  # an unreadable file shows as a note on its page, never stops the report
            res.error = f"{type(e).__name__}: {e}"
            return res
        if not storage.is_remote(self.out):  # a bucket has no folders to make
            self.path(video_id, 0).parent.mkdir(parents=True, exist_ok=True)
        for frame, rgb in zip(missing, decoded):
            _write_jpeg(self._shrink(rgb), self.path(video_id, frame))
            if self.present is not None:
                self.present.add(self.rel(video_id, frame))
            res.cut += 1
        return res

    def _cached(self, video_id: str, frame: int) -> bool:
        if self.present is not None:
            return self.rel(video_id, frame) in self.present
        return self.path(video_id, frame).exists()

    def _shrink(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        h, w = rgb.shape[:2]
        if w <= self.width:
            return rgb
        size = (self.width, max(1, round(h * self.width / w)))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _write_jpeg(rgb: np.ndarray, path: Path, quality: int = 85) -> None:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"could not encode a thumbnail for {path}")
    atomic_write_bytes(path, buf.tobytes())
