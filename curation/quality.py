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
import struct
import sys
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache

import numpy as np

from curation import CODE_VERSION
from curation.stage import Stage, Stats, key_set
from curation.scenes import LAYOUT_GRID, LAYOUT_STEP_S, layout_step
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
# A segment's signature samples it every 0.5 s from its own first frame (a cut: copies and excerpts sample the
# same frames), each sample as the colour layout of central crops of the frame at several scales, plus the
# segment's motion in 0.1 s bins (``segment_signature``). Two segments match when, at some time offset and
# pair of scales, most of their overlapping samples agree (the same colours after brightness normalization,
# and where anything moves, motion in the same cells), and their motion over time rises and falls together.
# Colours alone cannot tell apart two takes of one set (a music video's singer in front of the same wall);
# the motion over time can, and it survives re-encoding, resizing, cropping, brightening and overlays.

SIGNATURE_MAGIC = b"DVS2"
SCALES = (1.0, 0.95, 0.9, 0.85)  # central crops sampled: a copy cut by 5-15 % matches one of them
GRID = 8  # each crop as the mean colour of an 8 x 8 grid
MAX_SAMPLES = 60  # a signature keeps a segment's first 30 s
MOTION_BIN_S = 0.1
BINS_PER_SAMPLE = int(round(LAYOUT_STEP_S / MOTION_BIN_S))
MAX_COLOUR_DIFF = 10.0  # mean absolute difference (0..255) of two aligned samples' normalized layouts that agree
MAX_TINT = 5.0  # largest mean signed difference (0..255) of one channel over the cells: a tint is another source
CELL_DIFF_CAP = 24.0  # ... each cell counting at most this much: a logo or caption changes a few cells a lot
MOVING = 3.0  # a sample moves when a cell changes by more than this (0..255) before the next sample
MIN_MOTION_COS = 0.5  # cosine of two moving samples' per-cell change that agrees
MIN_AGREEING = 0.7  # share of the overlapping samples that must agree
MIN_OVERLAP = 6  # samples (3 s) two segments must overlap by, or all of the shorter; and at least half of it
STILL_MOTION = 0.2  # motion bins varying less than this (std, 0..255) are too still to compare over time
MIN_MOTION_CORR = 0.75  # correlation of two segments' aligned motion bins that agrees
MAX_MOTION_RATIO = 1.5  # ... and of their spreads: one moving, the other nearly still, is not a copy
KEY_STEP = 24  # the index buckets each sample by its normalized mean colour in steps of this, on two grids
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
CELLS = GRID * GRID
_HEADER = struct.Struct("<4sHH")  # magic, samples, motion bins


def scaled_layouts(layout: np.ndarray) -> np.ndarray:
    """(len(SCALES), GRID, GRID, 3) uint8: the GRID x GRID colour layout of each central crop of a
    LAYOUT_GRID x LAYOUT_GRID one."""
    import cv2

    up = GRID * LAYOUT_GRID
    big = cv2.resize(layout, (up, up), interpolation=cv2.INTER_LINEAR)
    out = []
    for scale in SCALES:
        m = int(round(up * (1 - scale) / 2))
        src = layout if m == 0 else big[m:up - m, m:up - m]
        out.append(cv2.resize(src, (GRID, GRID), interpolation=cv2.INTER_AREA))
    return np.stack(out)


def motion_bins(motion: np.ndarray, fps: float, start: int, end: int) -> np.ndarray:
    """Mean per-frame motion of [start, end) in MOTION_BIN_S bins from ``start`` (a bin without a frame of
    its own, below 10 fps, repeats the one before)."""
    n = int((end - start) / fps / MOTION_BIN_S)
    edges = start + np.round(np.arange(n + 1) * MOTION_BIN_S * fps).astype(int)
    edges = np.minimum(edges, min(end, len(motion)))
    out = np.zeros(n, np.float32)
    for k in range(n):
        a, b = edges[k], edges[k + 1]
        out[k] = motion[a:b].mean() if b > a else (out[k - 1] if k else 0.0)
    return out


def segment_signature(layouts: np.ndarray, every: int, fps: float, motion: np.ndarray,
                      start_frame: int, end_frame: int) -> bytes:
    """A segment's signature as bytes: a sample every LAYOUT_STEP_S from its first frame (the layout kept
    nearest to it, ``layouts`` holding frames 0, every, 2 every, ...), at most MAX_SAMPLES, and its motion
    bins over the same time. Empty when there are no layouts."""
    step = layout_step(fps)
    frames = range(start_frame, end_frame, step)[:MAX_SAMPLES]
    if not len(layouts) or not len(frames):
        return b""
    samples = np.stack([scaled_layouts(layouts[min(int(round(f / every)), len(layouts) - 1)]) for f in frames])
    bins = motion_bins(np.asarray(motion, np.float32), fps, start_frame, min(end_frame, frames[-1] + step))
    return (_HEADER.pack(SIGNATURE_MAGIC, len(samples), len(bins))
            + np.ascontiguousarray(samples, np.uint8).tobytes() + bins.astype(np.float16).tobytes())


def normalized(layouts: np.ndarray) -> np.ndarray:
    """(n, cells, 3) float layouts scaled to mean brightness 128."""
    x = layouts.astype(np.float32).reshape(-1, CELLS, 3)
    return x * (128.0 / np.maximum((x @ _LUMA).mean(axis=1), 1.0))[:, None, None]


def colour_keys(colours: np.ndarray) -> set[tuple]:
    """Each sample's normalized mean colour on two grids offset by half a step: samples that differ little
    share a bucket on at least one grid, and a matching pair has many samples. Brightness normalization makes
    the mean colour a ratio, which black borders (and crops of them) do not move."""
    means = colours.reshape(len(colours), CELLS, 3).mean(axis=1)
    return {(k, *(int(v) for v in row)) for k, offset in enumerate((0.0, KEY_STEP / 2))
            for row in (means + offset) // KEY_STEP}


def stored_samples(raw: bytes) -> np.ndarray:
    """(n, len(SCALES), GRID, GRID, 3) uint8: the samples of a whole stored signature, as stored (no copy)."""
    _, n, _ = _HEADER.unpack_from(raw)
    body = np.frombuffer(raw, np.uint8, n * len(SCALES) * CELLS * 3, _HEADER.size)
    return body.reshape(n, len(SCALES), GRID, GRID, 3)


def signature_keys(raw: bytes) -> set[tuple]:
    """``colour_keys`` of a whole stored signature, read from its uncropped layouts alone."""
    return colour_keys(normalized(stored_samples(raw)[:, 0]))


@dataclass
class Layouts:
    """One scale's samples of a signature."""

    colours: np.ndarray  # (n, cells * 3) layouts scaled to mean brightness 128
    coarse: np.ndarray  # (n, 48) the same on a 4 x 4 grid: the fast first look at every time offset
    motion: np.ndarray  # (n, cells) change of each cell to the next sample (the last repeats the one before)
    moving: np.ndarray  # (n,) any cell changes by more than MOVING

    @classmethod
    def from_array(cls, layouts: np.ndarray) -> "Layouts":
        x = normalized(layouts)
        motion = np.abs(np.diff(x, axis=0)).mean(axis=2)
        motion = np.concatenate([motion, motion[-1:]]) if len(motion) else np.zeros((len(x), x.shape[1]), np.float32)
        coarse = x.reshape(-1, GRID // 2, 2, GRID // 2, 2, 3).mean(axis=(2, 4)).reshape(len(x), -1)
        return cls(x.reshape(len(x), CELLS * 3), coarse, motion, motion.max(axis=1, initial=0.0) > MOVING)


@dataclass
class Signature:
    scales: list[Layouts]  # one per SCALES
    bins: np.ndarray  # motion per MOTION_BIN_S from the first sample

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Signature":
        samples, n_bins = stored_samples(raw), _HEADER.unpack_from(raw)[2]
        bins = np.frombuffer(raw, np.float16, n_bins, _HEADER.size + samples.size).astype(np.float32)
        return cls([Layouts.from_array(samples[:, k]) for k in range(len(SCALES))], bins)

    @cached_property
    def coarse(self) -> np.ndarray:
        return np.stack([s.coarse for s in self.scales])

    @cached_property
    def keys(self) -> set[tuple]:
        return colour_keys(self.scales[0].colours)


# the pairs of scales tried: the same, or either one a crop of the other
SCALE_PAIRS = [(0, 0)] + [p for k in range(1, len(SCALES)) for p in ((k, 0), (0, k))]
_PAIR_A, _PAIR_B = (np.array(x) for x in zip(*SCALE_PAIRS))
COARSE_RMS = 15.0  # root mean square difference of 4 x 4 layouts above which a sample pair is not looked at again


@lru_cache(maxsize=4096)
def _diagonals(na: int, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For an (na, nb) matrix: each cell's diagonal (offset i - j, shifted to start at 0), the cells on
    each diagonal, and which diagonals overlap enough to count (MIN_OVERLAP, or all of the shorter, and at
    least half of it)."""
    diag = (np.arange(na)[:, None] - np.arange(nb)[None] + nb - 1).ravel()
    counts = np.bincount(diag, minlength=na + nb - 1)
    need = max(min(MIN_OVERLAP, na, nb), -(-min(na, nb) // 2))
    return diag, counts, counts >= need


def _agreeing_samples(a: Layouts, b: Layouts) -> np.ndarray:
    """(len a, len b): whether sample i of a and sample j of b agree: colours within MAX_COLOUR_DIFF (each
    channel of each cell counting at most CELL_DIFF_CAP), no channel shifted by more than MAX_TINT over the
    frame, and either still in both or moving alike (cosine of the per-cell change at least MIN_MOTION_COS)."""
    na, nb = len(a.colours), len(b.colours)
    signed = np.clip(a.colours[:, None] - b.colours[None], -CELL_DIFF_CAP, CELL_DIFF_CAP).reshape(na, nb, CELLS, 3)
    colour = np.abs(signed).mean(axis=(2, 3))
    tint = np.abs(signed.mean(axis=2)).max(axis=2)  # a whole frame shifted in hue: another source
    norms = np.linalg.norm(a.motion, axis=1)[:, None] * np.linalg.norm(b.motion, axis=1)[None]
    alike = (a.motion @ b.motion.T) >= MIN_MOTION_COS * np.maximum(norms, 1e-6)
    still = ~a.moving[:, None] & ~b.moving[None]
    return (colour <= MAX_COLOUR_DIFF) & (tint <= MAX_TINT) & (still | alike)


def motion_agrees(a: np.ndarray, b: np.ndarray, offset: int) -> bool:
    """Whether motion bins ``a`` and ``b`` rise and fall together near ``offset`` (bin i of a with bin
    i - offset of b, searched half a sample either way). Bins too still to correlate agree when their levels
    of motion do."""
    half = BINS_PER_SAMPLE // 2 + 1
    for o in range(offset - half, offset + half + 1):
        lo, hi = max(0, o), min(len(a), len(b) + o)
        if hi - lo < BINS_PER_SAMPLE * 2:
            continue
        x, y = a[lo:hi], b[lo - o:hi - o]
        sx, sy = float(x.std()), float(y.std())
        if max(sx, sy) < STILL_MOTION:  # too still to correlate: as much motion, within the ratio
            mx, my = float(x.mean()) + STILL_MOTION, float(y.mean()) + STILL_MOTION
            if max(mx, my) <= MAX_MOTION_RATIO * min(mx, my):
                return True
            continue
        if max(sx, sy) <= MAX_MOTION_RATIO * min(sx, sy) and np.corrcoef(x, y)[0, 1] >= MIN_MOTION_CORR:
            return True
    return False


def agreement(a: Signature, b: Signature) -> float:
    """How well two segments match: the best share of agreeing samples (``_agreeing_samples``) over the
    pairs of scales a crop can give and the time offsets at which they overlap enough, among alignments
    whose motion over time agrees (``motion_agrees``); 0 when none does. A first look on 4 x 4 layouts
    says which pairs of scales are worth a close one."""
    na, nb = len(a.scales[0].colours), len(b.scales[0].colours)
    if not na or not nb:
        return 0.0
    ca, cb = a.coarse[_PAIR_A], b.coarse[_PAIR_B]  # (pairs, n, 48)
    d2 = (ca * ca).sum(axis=2)[:, :, None] + (cb * cb).sum(axis=2)[:, None] - 2 * ca @ cb.transpose(0, 2, 1)
    near = d2.reshape(len(SCALE_PAIRS), -1) <= COARSE_RMS ** 2 * ca.shape[2]
    diag, counts, enough = _diagonals(na, nb)
    first = np.stack([np.bincount(diag, weights=row, minlength=len(counts)) for row in near]) / counts
    first[:, ~enough] = 0.0
    best = 0.0
    for pair in np.argsort(-first.max(axis=1), kind="stable"):
        if first[pair].max() < MIN_AGREEING:
            break
        i, j = SCALE_PAIRS[pair]
        shares = np.bincount(diag, weights=_agreeing_samples(a.scales[i], b.scales[j]).ravel(),
                             minlength=len(counts)) / counts
        shares[~enough] = 0.0
        for d in np.argsort(-shares, kind="stable"):
            if shares[d] < max(MIN_AGREEING, best + 1e-9):
                break
            if motion_agrees(a.bins, b.bins, (int(d) - (nb - 1)) * BINS_PER_SAMPLE):
                best = float(shares[d])
                break
    return best


class DupIndex:
    """Segments bucketed by their samples' mean colours (multi-index hashing): a new segment is aligned only
    with those that share a bucket. Each segment is held as its stored signature bytes and decoded when
    compared (a few hundred decoded at a time: about 110 KB each), so memory grows by the bytes, not by float copies.
    ``raw`` is the column of signatures as read (Arrow buffers); each indexed segment names its row in it."""

    def __init__(self, raw, cache: int = 512):
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

    def add(self, seg_id: str, video_id: str, row: int, keys: set[tuple], group: str) -> None:
        pos = len(self.ids)
        self.ids.append(seg_id)
        self.rows.append(row)
        self.videos.append(sys.intern(video_id))
        self.groups.append(sys.intern(group))
        self.group_videos.setdefault(self.groups[pos], set()).add(self.videos[pos])
        for key in keys:
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
    """The signature, or None when there is none, its bytes are damaged, or it was written by an older split
    (``signature_problem`` says which)."""
    return None if signature_problem(raw) else Signature.from_bytes(raw)


def signature_problem(raw: bytes | None) -> str:
    """'' for a whole signature, else no_signature, old_signature (rerun split with --force to compare the
    segment) or bad_signature."""
    if not raw:
        return "no_signature"
    if len(raw) < _HEADER.size or raw[:4] != SIGNATURE_MAGIC:
        return "old_signature"
    _, n, n_bins = _HEADER.unpack_from(raw)
    return "" if len(raw) == _HEADER.size + n * len(SCALES) * CELLS * 3 + 2 * n_bins and n else "bad_signature"


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
            raw = index.raw[row_of[seg_id]].as_py() if seg_id in row_of else None
            if not signature_problem(raw):  # keys from the bytes: nothing decoded until compared
                index.add(seg_id, video_id, row_of[seg_id], signature_keys(raw), group)
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
        # the best match's group, or the next best's when it holds a segment of this video already
        free = [index.groups[p] for _, p in found if seg["video_id"] not in index.group_videos[index.groups[p]]]
        group = free[0] if free else seg["segment_id"]
        if sig is not None:
            index.add(seg["segment_id"], seg["video_id"], row, sig.keys, group)
        best = next(((score, p) for score, p in found if index.groups[p] == group), found[0] if found else None)
        stats.add("duplicates" if free else "unique" if sig is not None else signature_problem(raw))
        return dict(segment_id=seg["segment_id"], video_id=seg["video_id"], dup_group=group,
                    matched=index.ids[best[1]] if free else "", similarity=best[0] if free else None,
                    other_groups=[g for g in groups if g != group], code_version=CODE_VERSION)
