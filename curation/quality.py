"""Quality signals per segment and near-duplicates across the dataset.

Motion, frozen and black fractions come from the split's own decoding pass (per-frame content change and
brightness, kept as fractions on each segment). Sharpness, flat frames, borders and the perceptual
signature (a colour layout) come from a few frames at fixed relative times of the segment (``PROBES``), decoded the way
everything else is. Filters are data: ``quality_signals`` keeps every signal with its verdict and
reasons, ``duplicates`` the near-duplicate group of each segment, and the catalog's ``quality`` view joins
them into ``keep`` and ``reason`` (``curation.store.VIEWS``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from curation import CODE_VERSION
from curation.stage import Stage, Stats, key_set
from curation.store import Dataset
from curation.video import read_frames

PROBES = (0.2, 0.4, 0.6, 0.8)  # relative times of the frames a segment is looked at and hashed by
FROZEN_DIFF = 0.1  # a frame whose content change (PySceneDetect's content score, 0..255) is below this is frozen
BLACK_LUMA = 16.0  # mean brightness (0..255) below which a frame is black


def frame_fractions(motion: np.ndarray, luma: np.ndarray) -> dict:
    """Frozen and black fractions of a segment's frames, from the split pass's per-frame arrays."""
    if len(motion) == 0:
        return dict(frozen_frac=0.0, black_frac=0.0)
    # the first frame of a segment has no predecessor in it: its change is the cut's, not the segment's
    moving = np.asarray(motion[1:] if len(motion) > 1 else motion)
    return dict(frozen_frac=float(np.mean(moving < FROZEN_DIFF)), black_frac=float(np.mean(np.asarray(luma) < BLACK_LUMA)))


def _opt(default, help: str, **meta):
    return field(default=default, metadata=dict(help=help, **meta))


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the quality verdict (conservative: only clearly unusable segments are dropped).

    A segment is dropped for any reason in ``drop``; the other reasons are recorded but keep it.
    """

    max_frozen_frac: float = _opt(0.95, "static when this share of frames repeat the one before")
    max_black_frac: float = _opt(0.9, f"black when this share of frames has mean brightness < {BLACK_LUMA:g}")
    max_flat_frac: float = _opt(0.75, "flat when this share of probe frames has no texture (grey std < 4)")
    min_sharpness: float = _opt(20.0, "blurry below this variance of the Laplacian (grey 0..255, probe median)")
    max_border: float = _opt(0.08, "letterboxed / pillarboxed when a black bar takes more than this share of a side")
    min_side: int = _opt(64, "low_resolution below this shorter side, in pixels")
    min_duration_s: float = _opt(1.0, "too_short below this length, in seconds", flag="--quality-min-duration-s")
    drop: tuple[str, ...] = _opt(("static", "black", "flat", "blurry"), "reasons that drop a segment "
                                 "(others are recorded only)", flag="--quality-drop")

    def problems(self) -> list[str]:
        known = ("static", "black", "flat", "blurry", "letterboxed", "pillarboxed", "low_resolution", "too_short")
        return [f"--quality-drop {r!r} is not one of {', '.join(known)}" for r in self.drop if r not in known]


def grey(frame: np.ndarray) -> np.ndarray:
    return frame[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def laplacian_var(g: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low when the frame has no sharp edges."""
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def border_fractions(greys: list[np.ndarray], dark: float = BLACK_LUMA, still: float = 4.0) -> dict:
    """Share of the frame taken by black bars on each side: rows (columns) dark and unchanging in every
    probe frame, counted from the edge inward."""
    stack = np.stack(greys)  # (k, h, w)
    rows_dark = (stack.mean(axis=2).max(axis=0) < dark) & (stack.std(axis=2).max(axis=0) < still)
    cols_dark = (stack.mean(axis=1).max(axis=0) < dark) & (stack.std(axis=1).max(axis=0) < still)

    def run(flags: np.ndarray) -> float:
        n = int(np.argmin(flags)) if not flags.all() else len(flags)
        return n / len(flags)

    if rows_dark.all():  # an all-black frame has no bars, it is black
        return dict(border_top=0.0, border_bottom=0.0, border_left=0.0, border_right=0.0)
    return dict(border_top=run(rows_dark), border_bottom=run(rows_dark[::-1]), border_left=run(cols_dark),
                border_right=run(cols_dark[::-1]))


GRID = 4  # the colour layout: mean colour of a GRID x GRID grid of each probe frame


def colour_layout(frame: np.ndarray) -> list[int]:
    """A probe frame's perceptual signature: the mean colour of each cell of a 4 x 4 grid (PIL's area
    resize), scaled so the frame's mean brightness is 128, so a brightened, re-encoded, resized or slightly
    cropped copy keeps it while another scene's colours do not. Grey-level hashes (pHash, dHash) cannot tell
    apart scenes of flat colours, which is what much generated and animated footage is."""
    from PIL import Image

    small = np.asarray(Image.fromarray(np.ascontiguousarray(frame[..., :3])).resize((GRID, GRID), Image.BOX),
                       np.float32)
    return np.round(small * (128.0 / max(float(small.mean()), 1.0))).astype(int).flatten().tolist()


def probe_indices(start_frame: int, end_frame: int) -> list[int]:
    n = end_frame - start_frame
    return [start_frame + min(n - 1, int(p * n)) for p in PROBES]


def signals(seg: dict, frames: np.ndarray) -> dict:
    """Every signal of one segment: the split pass's fractions and what the probe frames show."""
    greys = [grey(f) for f in frames]
    return dict(
        flat_frac=float(np.mean([g.std() < 4.0 for g in greys])),
        sharpness=float(np.median([laplacian_var(g) for g in greys])),
        **border_fractions(greys),
    )


def verdict(row: dict, cfg: QualityConfig) -> tuple[bool, str]:
    """Reasons, in a fixed order, and whether any of them drops the segment."""
    reasons = []
    if row["black_frac"] >= cfg.max_black_frac:
        reasons.append("black")
    elif row["flat_frac"] >= cfg.max_flat_frac:
        reasons.append("flat")
    elif row["frozen_frac"] >= cfg.max_frozen_frac:
        reasons.append("static")
    elif row["sharpness"] < cfg.min_sharpness:
        reasons.append("blurry")
    if max(row["border_top"], row["border_bottom"]) > cfg.max_border:
        reasons.append("letterboxed")
    if max(row["border_left"], row["border_right"]) > cfg.max_border:
        reasons.append("pillarboxed")
    if min(row["width"], row["height"]) < cfg.min_side:
        reasons.append("low_resolution")
    if row["duration_s"] < cfg.min_duration_s:
        reasons.append("too_short")
    return not any(r in cfg.drop for r in reasons), ",".join(reasons)


@dataclass
class QualityStage(Stage):
    """Signals, verdict and perceptual signature of each segment (``quality_signals``).

    Fields: ``config`` the thresholds and which reasons drop a segment.
    """

    config: QualityConfig = field(default_factory=QualityConfig)
    name = "quality"
    inputs = ("videos", "segments")
    output = "quality_signals"
    item_column = "segment_id"
    batch_size = 8
    parallel = True

    def items(self, ds: Dataset) -> list[dict]:
        videos = {v["video_id"]: v for v in ds.rows("videos")}
        return [dict(s, item_id=s["segment_id"], uri=videos[s["video_id"]]["uri"], width=videos[s["video_id"]]["width"],
                     height=videos[s["video_id"]]["height"]) for s in ds.rows("segments") if s["video_id"] in videos]

    def done_ids(self, ds: Dataset) -> set[str]:
        return key_set(ds, "quality_signals", "segment_id")

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        return [self._row(seg, stats) for seg in batch]

    def _row(self, seg: dict, stats: Stats) -> dict:
        frames = read_frames(seg["uri"], probe_indices(seg["start_frame"], seg["end_frame"]))
        row = dict(segment_id=seg["segment_id"], video_id=seg["video_id"], duration_s=seg["end_s"] - seg["start_s"],
                   width=seg["width"], height=seg["height"], motion=seg["motion"],
                   frozen_frac=seg.get("frozen_frac") or 0.0, black_frac=seg.get("black_frac") or 0.0,
                   **signals(seg, frames), signature=[v for f in frames for v in colour_layout(f)])
        row["quality_keep"], row["quality_reason"] = verdict(row, self.config)
        row.update(thresholds=json.dumps(asdict(self.config), sort_keys=True), code_version=CODE_VERSION)
        for reason in filter(None, row["quality_reason"].split(",")):
            stats.add(reason)
        stats.add("kept" if row["quality_keep"] else "dropped")
        return row


# --- near-duplicates ------------------------------------------------------------------------------------------

MAX_DISTANCE = 5.0  # mean absolute difference (0..255) of two probe frames' colour layouts that still match
MIN_MATCHING = 3  # probe frames (of len(PROBES)) that must match
KEY_STEP = 24  # the index buckets a probe frame by its mean colour in steps of this, on two offset grids


def probe_layouts(signature: list[int]) -> np.ndarray:
    return np.asarray(signature, np.float32).reshape(len(PROBES), GRID * GRID, 3)


def index_keys(layouts: np.ndarray) -> list[tuple]:
    """Per probe frame, its mean colour on two grids offset by half a step: a pair that differs little
    shares a bucket through at least one probe on at least one grid (whichever probe: a trimmed copy's
    probes fall at other times of the same scenes)."""
    keys = set()
    for cells in layouts:
        mean = cells.mean(axis=0)
        for k, offset in enumerate((0.0, KEY_STEP / 2)):
            keys.add((k, *(int(v) for v in (mean + offset) // KEY_STEP)))
    return sorted(keys)


class DupIndex:
    """Segments bucketed by the mean colours of their probe frames (multi-index hashing): a new segment is
    compared only with those sharing a bucket, then probe by probe."""

    def __init__(self):
        self.buckets: dict[tuple, list[str]] = {}
        self.layouts: dict[str, np.ndarray] = {}
        self.group: dict[str, str] = {}
        self.compared = 0

    def add(self, seg_id: str, signature: list[int], group: str) -> None:
        self.layouts[seg_id], self.group[seg_id] = probe_layouts(signature), group
        for key in index_keys(self.layouts[seg_id]):
            self.buckets.setdefault(key, []).append(seg_id)

    def matches(self, signature: list[int]) -> list[tuple[float, str]]:
        """(distance, id) of every indexed segment that matches, closest first."""
        mine = probe_layouts(signature)
        seen = {s for key in index_keys(mine) for s in self.buckets.get(key, ())}
        self.compared += len(seen)
        out = []
        for s in seen:
            # each probe frame against the closest probe frame of the other segment
            dists = np.abs(mine[:, None] - self.layouts[s][None]).mean(axis=(2, 3)).min(axis=1)
            if int((dists <= MAX_DISTANCE).sum()) >= MIN_MATCHING:
                out.append((float(dists.sum()), s))
        return sorted(out)


@dataclass
class DedupStage(Stage):
    """Near-duplicate groups across the whole dataset (``duplicates``): each new segment joins the group
    of the closest earlier segment it matches (the earliest group when it matches several), else starts its
    own. Which member is kept is decided when read (the ``quality`` view), so a longer copy that arrives later
    takes over."""

    name = "dedup"
    inputs = ("quality_signals",)
    output = "duplicates"
    item_column = "segment_id"
    batch_size = 1_000_000  # one batch: new segments are matched against each other too

    def items(self, ds: Dataset) -> list[dict]:
        rows = ds.rows("quality_signals", ["segment_id", "video_id", "signature"])
        return sorted((dict(r, item_id=r["segment_id"]) for r in rows if r["signature"]), key=lambda r: r["item_id"])

    def done_ids(self, ds: Dataset) -> set[str]:
        return key_set(ds, "duplicates", "segment_id")

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        index = DupIndex()
        hashes = {r["segment_id"]: r["signature"] for r in ds.rows("quality_signals", ["segment_id", "signature"])}
        for d in ds.rows("duplicates", ["segment_id", "dup_group"]):
            if hashes.get(d["segment_id"]):
                index.add(d["segment_id"], hashes[d["segment_id"]], d["dup_group"])
        rows = []
        for seg in batch:
            found = index.matches(seg["signature"])
            group = min(index.group[s] for _, s in found) if found else seg["segment_id"]
            index.add(seg["segment_id"], seg["signature"], group)
            rows.append(dict(segment_id=seg["segment_id"], video_id=seg["video_id"], dup_group=group,
                             matched=found[0][1] if found else "", code_version=CODE_VERSION))
            stats.add("duplicates" if found else "unique")
        stats.add("pairs_compared", index.compared)
        return rows


def split_keys(ds: Dataset) -> dict[str, str]:
    """video_id -> the video whose id decides its train/val/test split: the smallest id among the videos
    its segments share near-duplicate groups with, so a re-upload lands in the same split as its original."""
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    first: dict[str, str] = {}
    for d in ds.rows("duplicates", ["video_id", "dup_group"]):
        other = first.setdefault(d["dup_group"], d["video_id"])
        a, b = find(other), find(d["video_id"])
        if a != b:
            parent[max(a, b)] = min(a, b)
    return {v: find(v) for v in parent}
