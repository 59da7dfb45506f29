"""Quality signals per segment and near-duplicates across the dataset.

Motion, frozen and black fractions come from the split's own decoding pass (per-frame grey change and
brightness, kept as fractions on each segment). So does the near-duplicate signature (a colour layout
every 0.5 s). Sharpness, flat frames and borders come from a few frames at fixed relative times of the
segment (``PROBES``), decoded the way everything else is. Filters are data: ``quality_signals`` keeps every
signal with its verdict and reasons, ``duplicates`` the near-duplicate group of each segment, and the
catalog's ``quality`` view joins them into ``keep`` and ``reason`` (``curation.store.VIEWS``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from curation import CODE_VERSION
from curation.stage import Stage, Stats, key_set
from curation.scenes import LAYOUT_GRID
from curation.store import Dataset
from curation.video import read_frames

PROBES = (0.2, 0.4, 0.6, 0.8)  # relative times of the frames a segment's sharpness and borders are read from
FROZEN_DIFF = 0.05  # a frame whose motion (grey change from the frame before, 0..255) is below this is frozen
BLACK_LUMA = 16.0  # mean brightness (0..255) below which a frame is black


def frame_fractions(motion: np.ndarray, luma: np.ndarray) -> dict:
    """A segment's mean motion and its frozen and black fractions, from the split pass's per-frame arrays
    (``curation.scenes.MotionTrack``: the same unit for every detector and frame skip)."""
    if len(motion) == 0:
        return dict(motion=0.0, frozen_frac=0.0, black_frac=0.0)
    # the first frame of a segment has no predecessor in it: its change is the cut's, not the segment's
    moving = np.asarray(motion[1:] if len(motion) > 1 else motion)
    return dict(motion=float(moving.mean()), frozen_frac=float(np.mean(moving < FROZEN_DIFF)),
                black_frac=float(np.mean(np.asarray(luma) < BLACK_LUMA)))


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
    with those that share a bucket. Each segment is held as its stored signature bytes and decoded when
    compared (a couple of thousand decoded at a time), so memory grows by the bytes, not by float copies.
    ``raw`` is the column of signatures as read (Arrow buffers); each indexed segment names its row in it."""

    def __init__(self, raw, cache: int = 2048):
        self.raw = raw
        self.buckets: dict[tuple, list[int]] = {}
        self.ids: list[str] = []
        self.rows: list[int] = []
        self.videos: list[str] = []
        self.groups: list[str] = []
        self.group_videos: dict[str, set[str]] = {}  # group -> the videos with a segment in it
        self.compared = 0
        self._decoded: dict[int, Signature] = {}
        self._cache = cache

    def add(self, seg_id: str, video_id: str, row: int, sig: Signature, group: str) -> None:
        pos = len(self.ids)
        self.ids.append(seg_id)
        self.rows.append(row)
        self.videos.append(sys.intern(video_id))
        self.groups.append(sys.intern(group))
        self.group_videos.setdefault(self.groups[pos], set()).add(self.videos[pos])
        for key in sig.keys:
            self.buckets.setdefault(key, []).append(pos)

    def signature(self, pos: int) -> Signature:
        sig = self._decoded.get(pos)
        if sig is None:
            if len(self._decoded) >= self._cache:
                self._decoded.pop(next(iter(self._decoded)))  # the oldest decoded
            sig = self._decoded[pos] = Signature.from_bytes(self.raw[self.rows[pos]].as_py())
        return sig

    def matches(self, sig: Signature, video_id: str = "") -> list[tuple[float, int]]:
        """(agreement, position) of every indexed segment of another video that matches, best first: a shot
        that recurs inside one video (two cameras, a refrain) is not a copy of itself."""
        seen = {p for key in sig.keys for p in self.buckets.get(key, ()) if self.videos[p] != video_id}
        self.compared += len(seen)
        found = ((agreement(sig, self.signature(p)), p) for p in seen)
        return sorted(((score, p) for score, p in found if score >= MIN_AGREEING),
                      key=lambda m: (-m[0], self.ids[m[1]]))


def decode_signature(raw: bytes | None) -> Signature | None:
    """The signature, or None when there is none or its bytes are not whole layouts (a damaged row)."""
    if not raw or len(raw) % (CELLS * 3):
        return None
    return Signature.from_bytes(raw)


@dataclass
class DedupStage(Stage):
    """Near-duplicate groups across the whole dataset (``duplicates``): each new segment joins the group
    of the best earlier segment of another video it matches (the earliest group when it matches several,
    the others listed in ``other_groups``), else starts its own. A group never holds two segments of one
    video. Which member is kept is decided when read (the ``quality`` view), so a longer copy that arrives
    later takes over. Segments split before signatures were stored have none and stay alone.

    New segments are compared with each other too, so all of them go through one pass: a pass that holds
    only some (``--shard``, ``max_items``, the one-by-one retry after a failed batch) fails them with the
    way out instead of grouping them apart."""

    name = "dedup"
    inputs = ("segments",)
    output = "duplicates"
    item_column = "segment_id"
    batch_size = 1_000_000  # one batch: new segments are matched against each other too
    batch_error = ""  # why the one pass failed, for the messages of the one-by-one retry

    def items(self, ds: Dataset) -> list[dict]:
        t = ds.read("segments", ["segment_id", "video_id"])
        rows = zip(t.column("segment_id").to_pylist(), t.column("video_id").to_pylist())
        return [dict(item_id=s, segment_id=s, video_id=v) for s, v in sorted(rows)]

    def done_ids(self, ds: Dataset) -> set[str]:
        return key_set(ds, "duplicates", "segment_id")

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        self._check_one_pass(batch, ds)
        try:
            return self._dedup(batch, ds, stats)
        except Exception as e:
            self.batch_error = f"{type(e).__name__}: {e}"
            raise

    def _check_one_pass(self, batch: list[dict], ds: Dataset) -> None:
        from curation.stage import done_items

        new = {it["item_id"] for it in self.items(ds)} - done_items(self, ds)
        if len(new - {it["item_id"] for it in batch}):
            first = f"; the pass over all of them failed first ({self.batch_error})" if self.batch_error else ""
            raise ValueError(f"dedup compares new segments with each other, so it runs as one pass per dataset: "
                             f"this pass holds {len(batch)} of the {len(new)} new segments{first}; run "
                             f"`densevid dedup --data DIR` without --shard once every shard has split")

    def _dedup(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        t = ds.read("segments", ["segment_id", "signature"])
        row_of = {s: k for k, s in enumerate(t.column("segment_id").to_pylist())}
        index = DupIndex(t.column("signature"))  # chunks as read: no copy, no 2 GiB offset limit
        del t
        d = ds.read("duplicates", ["segment_id", "video_id", "dup_group"])
        for seg_id, video_id, group in zip(*(d.column(c).to_pylist() for c in ("segment_id", "video_id", "dup_group"))):
            sig = decode_signature(index.raw[row_of[seg_id]].as_py()) if seg_id in row_of else None
            if sig is not None:
                index.add(seg_id, video_id, row_of[seg_id], sig, group)
        del d
        rows = [self._row(index, seg, row_of.get(seg["segment_id"]), stats) for seg in batch]
        stats.add("pairs_compared", index.compared)
        return rows

    @staticmethod
    def _row(index: DupIndex, seg: dict, row: int | None, stats: Stats) -> dict:
        """The segment's group: the earliest matched group without a segment of its own video."""
        raw = index.raw[row].as_py() if row is not None else None
        sig = decode_signature(raw)
        found = index.matches(sig, seg["video_id"]) if sig is not None else []
        groups = sorted({index.groups[p] for _, p in found})
        free = [g for g in groups if seg["video_id"] not in index.group_videos[g]]
        group = free[0] if free else seg["segment_id"]
        if sig is not None:
            index.add(seg["segment_id"], seg["video_id"], row, sig, group)
        best = next(((score, p) for score, p in found if index.groups[p] == group), found[0] if found else None)
        stats.add("duplicates" if free else "unique" if sig is not None else
                  "bad_signature" if raw else "no_signature")
        return dict(segment_id=seg["segment_id"], video_id=seg["video_id"], dup_group=group,
                    matched=index.ids[best[1]] if free else "", similarity=best[0] if free else None,
                    other_groups=[g for g in groups if g != group], code_version=CODE_VERSION)
