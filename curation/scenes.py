"""Scene detection (PySceneDetect) and the segment policy that turns cuts into segments."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import logging

import numpy as np

logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # one INFO line per video is noise in a batch


@dataclass(frozen=True)
class SegmentPolicy:
    min_segment_s: float = 2.0
    max_segment_s: float = 30.0
    trim_s: float = 0.25
    fallback_window_s: float = 10.0

    def problems(self) -> list[str]:
        out = []
        if self.min_segment_s < 0:
            out.append(f"min_segment_s {self.min_segment_s} < 0; use 0 to keep every cut")
        if self.max_segment_s <= 0 or self.max_segment_s < self.min_segment_s:
            out.append(f"max_segment_s {self.max_segment_s} must be > 0 and >= min_segment_s {self.min_segment_s}")
        if self.trim_s < 0:
            out.append(f"trim_s {self.trim_s} < 0; use 0 for no trimming")
        return out


def segments_from_cuts(cuts: list[int], n_frames: int, fps: float, policy: SegmentPolicy = SegmentPolicy()) -> list[tuple[int, int]]:
    """Frame spans [start, end) from cut frames (each cut is the first frame of a new scene).

    Short scenes merge into their shorter neighbour, long scenes are cut into equal windows of at most
    ``max_segment_s``, and ``trim_s`` is removed at each cut so transition frames are not captioned.
    Without cuts the video is split into windows. Spans are ordered, disjoint and inside the video.
    """
    if n_frames < 1:
        return []
    bounds = sorted({int(c) for c in cuts if 0 < c < n_frames})
    spans = list(zip([0] + bounds, bounds + [n_frames]))
    if not bounds and policy.fallback_window_s:
        spans = [(0, n_frames)]
    spans = _merge_short(spans, int(round(policy.min_segment_s * fps)))
    spans = _split_long(spans, max(1, int(round(policy.max_segment_s * fps))))
    return _trim(spans, int(round(policy.trim_s * fps)), n_frames)


def _merge_short(spans: list[tuple[int, int]], min_len: int) -> list[tuple[int, int]]:
    spans = list(spans)
    while len(spans) > 1:
        lengths = [e - s for s, e in spans]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_len:
            break
        # merge into the shorter neighbour, keeping segment lengths balanced
        if i == 0:
            j = 1
        elif i == len(spans) - 1:
            j = i - 1
        else:
            j = i - 1 if lengths[i - 1] <= lengths[i + 1] else i + 1
        a, b = sorted((i, j))
        spans[a : b + 1] = [(spans[a][0], spans[b][1])]
    return spans


def _split_long(spans: list[tuple[int, int]], max_len: int) -> list[tuple[int, int]]:
    out = []
    for s, e in spans:
        n = -(-(e - s) // max_len)
        edges = np.linspace(s, e, n + 1).round().astype(int)
        out.extend((int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]))
    return out


def _trim(spans: list[tuple[int, int]], trim: int, n_frames: int) -> list[tuple[int, int]]:
    """Trim at real cuts only (not the video's ends); never shrink a segment below a quarter of itself."""
    out = []
    for s, e in spans:
        t = min(trim, (e - s) // 4)
        a = s + t if s > 0 else s
        b = e - t if e < n_frames else e
        if b > a:
            out.append((a, b))
    return out


@dataclass(frozen=True)
class DetectorConfig:
    detector: str = "content+threshold"
    threshold: float = 27.0
    fade_threshold: float = 12.0
    min_scene_len_frames: int = 8
    downscale: int = 0  # 0: PySceneDetect picks a factor from the width
    frame_skip: int = 0

    DETECTORS = ("content", "adaptive", "threshold", "content+threshold")

    def problems(self) -> list[str]:
        if self.detector not in self.DETECTORS:
            return [f"detector {self.detector!r} is unknown; choose one of {', '.join(self.DETECTORS)}"]
        return []

    def params_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Detection:
    cuts: list[int]
    scores: dict[int, float]  # cut frame -> detector score at that frame
    motion: np.ndarray  # per-frame content change (0 where unknown)
    luma: np.ndarray  # per-frame mean brightness
    n_frames: int


def detect_cuts(path: str | Path, cfg: DetectorConfig = DetectorConfig()) -> Detection:
    """Run the configured PySceneDetect detectors in one decoding pass."""
    from scenedetect import (AdaptiveDetector, ContentDetector, SceneManager, StatsManager, ThresholdDetector,
                             open_video)

    video = open_video(str(path))
    stats = StatsManager()
    manager = SceneManager(stats_manager=stats)
    if cfg.downscale:
        manager.auto_downscale = False
        manager.downscale = cfg.downscale
    kinds = cfg.detector.split("+")
    if "content" in kinds:
        manager.add_detector(ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_scene_len_frames))
    if "adaptive" in kinds:
        manager.add_detector(AdaptiveDetector(min_scene_len=cfg.min_scene_len_frames))
    if "threshold" in kinds:
        manager.add_detector(ThresholdDetector(threshold=cfg.fade_threshold, min_scene_len=cfg.min_scene_len_frames))
    n = manager.detect_scenes(video=video, frame_skip=cfg.frame_skip if cfg.frame_skip else 0)
    scenes = manager.get_scene_list()
    raw = sorted({int(s[0].frame_num) for s in scenes[1:]})
    n_frames = int(n)
    motion, luma = _metric(stats, "content_val", n_frames), _luma(stats, n_frames)
    cuts, scores = [], {}
    for cluster in merge_close_cuts(raw, cfg.min_scene_len_frames):
        cut = cluster[len(cluster) // 2]  # a fade's cut sits mid-cluster, in the black
        cuts.append(cut)
        scores[cut] = float(max(motion[c] for c in cluster if c < n_frames)) if cut < n_frames else 0.0
    return Detection(cuts, scores, motion, luma, n_frames)


def merge_close_cuts(cuts: list[int], gap: int) -> list[list[int]]:
    """Group cuts from several detectors that are fewer than ``gap`` frames apart."""
    clusters: list[list[int]] = []
    for c in sorted(cuts):
        if clusters and c - clusters[-1][-1] < gap:
            clusters[-1].append(c)
        else:
            clusters.append([c])
    return clusters


def _metric(stats, key: str, n: int) -> np.ndarray:
    out = np.zeros(n)
    for i in range(n):
        try:
            v = stats.get_metrics(i, [key])[0]
        except Exception:
            v = None
        out[i] = v if v is not None else 0.0
    return out


def _luma(stats, n: int) -> np.ndarray:
    out = _metric(stats, "average_rgb", n)
    if not out.any():
        out = _metric(stats, "delta_lum", n)
    return out
