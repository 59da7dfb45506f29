"""Frame sampling for a time span, following Qwen3-VL's budget: ~2 fps, an even count, a max count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FramePolicy:
    target_fps: float = 2.0
    min_frames: int = 2
    max_frames: int = 2048
    max_pixels: int = 768 * 32 * 32  # per frame: Qwen3-VL's 768 visual tokens of 32x32 pixels

    def __post_init__(self):
        if self.min_frames < 2 or self.min_frames % 2:
            raise ValueError(f"min_frames must be even and >= 2, got {self.min_frames}")
        if self.max_frames < self.min_frames:
            raise ValueError(f"max_frames {self.max_frames} < min_frames {self.min_frames}")


def sample_indices(start_frame: int, end_frame: int, fps: float, policy: FramePolicy = FramePolicy()) -> list[int]:
    """Frame indices in [start_frame, end_frame) at about ``policy.target_fps``, an even count.

    Indices sit at the centres of equal time bins, so the sample is symmetric inside the span. A span
    shorter than the minimum count repeats frames rather than reading outside it.
    """
    n_avail = end_frame - start_frame
    if n_avail < 1:
        raise ValueError(f"empty frame span [{start_frame}, {end_frame})")
    duration_s = n_avail / fps
    n = int(round(duration_s * policy.target_fps))
    n = max(policy.min_frames, min(policy.max_frames, n))
    n -= n % 2
    centres = start_frame + (np.arange(n) + 0.5) * n_avail / n
    idx = np.clip(np.floor(centres).astype(int), start_frame, end_frame - 1)
    return idx.tolist()


def fit_pixels(frames: np.ndarray, max_pixels: int) -> np.ndarray:
    """Scale (n, h, w, 3) frames down, aspect kept, so one frame has at most ``max_pixels`` pixels.

    The processor would resize anyway; doing it right after decoding keeps 4K batches small in memory.
    """
    n, h, w = frames.shape[:3]
    if h * w <= max_pixels:
        return frames
    import cv2

    scale = (max_pixels / (h * w)) ** 0.5
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])
