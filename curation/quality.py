"""Quality signals per segment and near-duplicates across the dataset.

Motion, frozen and black fractions come from the split's own decoding pass (per-frame content change and
brightness, kept as fractions on each segment). So does the near-duplicate signature (a colour layout
every 0.5 s). Sharpness, flat frames and borders come from a few frames at fixed relative times of the
segment (``PROBES``), decoded the way everything else is. Filters are data: ``quality_signals`` keeps every
signal with its verdict and reasons, ``duplicates`` the near-duplicate group of each segment, and the
catalog's ``quality`` view joins them into ``keep`` and ``reason`` (``curation.store.VIEWS``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from curation import CODE_VERSION
from curation.stage import Stage, Stats, key_set
from curation.scenes import LAYOUT_GRID
from curation.store import Dataset
from curation.video import read_frames

PROBES = (0.2, 0.4, 0.6, 0.8)  # relative times of the frames a segment's sharpness and borders are read from
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
                   **signals(seg, frames))
        row["quality_keep"], row["quality_reason"] = verdict(row, self.config)
        row.update(thresholds=json.dumps(asdict(self.config), sort_keys=True), code_version=CODE_VERSION)
        for reason in filter(None, row["quality_reason"].split(",")):
            stats.add(reason)
        stats.add("kept" if row["quality_keep"] else "dropped")
        return row


# --- near-duplicates ------------------------------------------------------------------------------------------
#
# A segment's signature is the colour layout of its frames every 0.5 s of the video (written by the split pass,
# ``curation.scenes.colour_layout``). Two segments match when, at some time offset, most of their overlapping
# samples agree: the same colours (after brightness normalization) and, where anything moves, motion in the
# same cells. Colours alone cannot tell apart two scenes of one look with different things happening in them;
# the aligned motion can, and it survives re-encoding, resizing, cropping, brightening and overlays.

MAX_LAYOUTS = 240  # a signature keeps a segment's first 2 minutes
MAX_COLOUR_DIFF = 4.0  # mean absolute difference (0..255) of two aligned samples' normalized layouts that agree
MOVING = 3.0  # a sample moves when a cell changes by more than this (0..255) before the next sample
MIN_MOTION_COS = 0.5  # cosine of two moving samples' per-cell change that agrees
MIN_AGREEING = 0.7  # share of the overlapping samples that must agree
MIN_OVERLAP = 6  # samples (3 s) two segments must overlap by, or all of the shorter; and at least half of it
KEY_STEP = 24  # the index buckets each sample by its normalized mean colour in steps of this, on two grids
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
CELLS = LAYOUT_GRID * LAYOUT_GRID


def segment_signature(layouts: np.ndarray, step: int, start_frame: int, end_frame: int) -> bytes:
    """The layouts (uint8, LAYOUT_GRID x LAYOUT_GRID x 3 each) of the frames of [start_frame, end_frame) that are
    multiples of ``step``, the first MAX_LAYOUTS of them, as bytes."""
    first, stop = -(-start_frame // step), -(-end_frame // step)
    return np.ascontiguousarray(layouts[first:min(stop, first + MAX_LAYOUTS)], np.uint8).tobytes()


@dataclass
class Signature:
    colours: np.ndarray  # (n, cells * 3) layouts scaled to mean brightness 128
    motion: np.ndarray  # (n, cells) change of each cell to the next sample (the last repeats the one before)
    moving: np.ndarray  # (n,) any cell changes by more than MOVING

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> "Signature":
        x = np.frombuffer(raw or b"", np.uint8).astype(np.float32).reshape(-1, CELLS, 3)
        x = x * (128.0 / np.maximum((x @ _LUMA).mean(axis=1), 1.0))[:, None, None]
        motion = np.abs(np.diff(x, axis=0)).mean(axis=2)
        motion = np.concatenate([motion, motion[-1:]]) if len(motion) else np.zeros((len(x), x.shape[1]), np.float32)
        return cls(x.reshape(len(x), CELLS * 3), motion, motion.max(axis=1, initial=0.0) > MOVING)

    @cached_property
    def keys(self) -> set[tuple]:
        """Each sample's mean colour on two grids offset by half a step: samples that differ little share a
        bucket on at least one grid, and a matching pair has many samples."""
        means = self.colours.reshape(len(self.colours), CELLS, 3).mean(axis=1)
        return {(k, *(int(v) for v in row)) for k, offset in enumerate((0.0, KEY_STEP / 2))
                for row in (means + offset) // KEY_STEP}


def agreement(a: Signature, b: Signature) -> float:
    """The largest share of agreeing samples over the time offsets at which the two overlap enough (0 when
    they never do). A sample pair agrees when its colours are within MAX_COLOUR_DIFF and it is either still
    in both or moves alike (cosine of the per-cell change at least MIN_MOTION_COS)."""
    na, nb = len(a.colours), len(b.colours)
    if not na or not nb:
        return 0.0
    colour = np.abs(a.colours[:, None] - b.colours[None]).mean(axis=2)
    norms = np.linalg.norm(a.motion, axis=1)[:, None] * np.linalg.norm(b.motion, axis=1)[None]
    alike = (a.motion @ b.motion.T) >= MIN_MOTION_COS * np.maximum(norms, 1e-6)
    still = ~a.moving[:, None] & ~b.moving[None]
    agree = (colour <= MAX_COLOUR_DIFF) & (still | alike)
    need = max(min(MIN_OVERLAP, na, nb), -(-min(na, nb) // 2))
    # offset o pairs sample i of a with sample i - o of b: the diagonal -o of the matrix
    shares = [np.diagonal(agree, offset=-o).mean() for o in range(-(nb - 1), na)
              if min(na, nb + o) - max(0, o) >= need]
    return float(max(shares, default=0.0))


class DupIndex:
    """Segments bucketed by their samples' mean colours (multi-index hashing): a new segment is aligned only
    with those that share a bucket."""

    def __init__(self):
        self.buckets: dict[tuple, list[str]] = {}
        self.signatures: dict[str, Signature] = {}
        self.group: dict[str, str] = {}
        self.compared = 0

    def add(self, seg_id: str, sig: Signature, group: str) -> None:
        self.signatures[seg_id], self.group[seg_id] = sig, group
        for key in sig.keys:
            self.buckets.setdefault(key, []).append(seg_id)

    def matches(self, sig: Signature) -> list[tuple[float, str]]:
        """(agreement, id) of every indexed segment that matches, best first."""
        seen = {s for key in sig.keys for s in self.buckets.get(key, ())}
        self.compared += len(seen)
        found = ((agreement(sig, self.signatures[s]), s) for s in seen)
        return sorted(((score, s) for score, s in found if score >= MIN_AGREEING), key=lambda m: (-m[0], m[1]))


@dataclass
class DedupStage(Stage):
    """Near-duplicate groups across the whole dataset (``duplicates``): each new segment joins the group
    of the best earlier segment it matches (the earliest group when it matches several, the others listed
    in ``other_groups``), else starts its own. Which member is kept is decided when read (the ``quality``
    view), so a longer copy that arrives later takes over. Segments split before signatures were stored
    have none and stay alone."""

    name = "dedup"
    inputs = ("segments",)
    output = "duplicates"
    item_column = "segment_id"
    batch_size = 1_000_000  # one batch: new segments are matched against each other too

    def items(self, ds: Dataset) -> list[dict]:
        rows = ds.rows("segments", ["segment_id", "video_id"])
        return sorted((dict(r, item_id=r["segment_id"]) for r in rows), key=lambda r: r["item_id"])

    def done_ids(self, ds: Dataset) -> set[str]:
        return key_set(ds, "duplicates", "segment_id")

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        raw = {r["segment_id"]: r["signature"] for r in ds.rows("segments", ["segment_id", "signature"])}
        index = DupIndex()
        for d in ds.rows("duplicates", ["segment_id", "dup_group"]):
            index.add(d["segment_id"], Signature.from_bytes(raw.get(d["segment_id"])), d["dup_group"])
        rows = []
        for seg in batch:
            sig = Signature.from_bytes(raw.get(seg["segment_id"]))
            found = index.matches(sig) if len(sig.colours) else []
            groups = sorted({index.group[s] for _, s in found})
            group = groups[0] if groups else seg["segment_id"]
            index.add(seg["segment_id"], sig, group)
            rows.append(dict(segment_id=seg["segment_id"], video_id=seg["video_id"], dup_group=group,
                             matched=found[0][1] if found else "", similarity=found[0][0] if found else None,
                             other_groups=groups[1:], code_version=CODE_VERSION))
            stats.add("duplicates" if found else "unique" if len(sig.colours) else "no_signature")
        stats.add("pairs_compared", index.compared)
        return rows


def split_keys(ds: Dataset) -> dict[str, str]:
    """video_id -> the video whose id decides its train/val/test split: the smallest id among the videos
    its segments share near-duplicate groups with (or bridge groups with: ``other_groups``), so a re-upload
    lands in the same split as its original."""
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    def union(a: str, b: str) -> None:
        a, b = find(a), find(b)
        if a != b:
            parent[max(a, b)] = min(a, b)

    rows = ds.rows("duplicates", ["video_id", "dup_group", "other_groups"])
    first: dict[str, str] = {}
    for d in rows:
        union(first.setdefault(d["dup_group"], d["video_id"]), d["video_id"])
    for d in rows:  # a segment that matched several groups joins their videos too
        for g in d["other_groups"] or ():
            union(first[g], d["video_id"])
    return {v: find(v) for v in parent}
