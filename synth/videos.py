"""Procedural videos with known ground truth: hard cuts, fades through black, moving shapes.

Each video is written with PyAV (H.264) and a JSON file beside it holds the truth: the frame where
every scene starts, which transitions are fades, and each shape's time span and boxes on the 0..1000 grid.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from curation import storage
from curation.times import frame_s

PALETTE = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "white": (245, 245, 245),
    "magenta": (220, 50, 200),
}


def scene_color(seed: int, k: int) -> tuple[int, int, int]:
    """Background colour of scene k: neighbours differ in hue (~160 degrees), saturation and brightness,
    so every planned cut is a real cut for a content detector."""
    import colorsys

    hue = (seed * 0.13 + k * 0.45) % 1.0
    sat, val = (0.85, 0.55) if k % 2 == 0 else (0.45, 0.9)
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, sat, val))


SHAPES = ("square", "circle")
ACTIONS = {"left": "move to the right", "right": "move to the left", "top": "move down", "bottom": "move up"}


@dataclass
class ShapeTrack:
    phrase: str
    action: str
    start_s: float
    end_s: float
    boxes: list[dict] = field(default_factory=list)  # t_s, x1, y1, x2, y2 on the 0..1000 grid


@dataclass
class VideoTruth:
    fps: float
    n_frames: int
    width: int
    height: int
    scene_starts: list[int]  # first frame of each scene; the first is 0
    fades: list[int]  # scene starts reached through a fade to and from black
    shapes: list[ShapeTrack]
    domain: str

    @property
    def cuts(self) -> list[int]:
        return self.scene_starts[1:]


def _scene_background(h: int, w: int, base: tuple[int, int, int], k: int) -> np.ndarray:
    """A textured background: a diagonal gradient plus stripes, different per scene."""
    yy, xx = np.mgrid[0:h, 0:w]
    grad = ((xx / w + yy / h) * 40).astype(np.int16)
    axis = xx if k % 2 == 0 else yy
    stripes = (((axis // (16 + 4 * (k % 4))) % 2) * 30).astype(np.int16)
    img = np.array(base, np.int16)[None, None, :] + grad[..., None] + stripes[..., None]
    return np.clip(img, 0, 255).astype(np.uint8)


def _draw(img: np.ndarray, kind: str, color, x1: int, y1: int, x2: int, y2: int) -> None:
    if kind == "square":
        img[y1:y2, x1:x2] = color
        return
    yy, xx = np.mgrid[y1:y2, x1:x2]
    cy, cx, r = (y1 + y2 - 1) / 2, (x1 + x2 - 1) / 2, (x2 - x1) / 2
    mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img[y1:y2, x1:x2][mask] = color


def plan_video(rng: np.random.Generator, duration_s: float, fps: float, n_scenes: int, n_fades: int) -> tuple:
    """Scene starts (frames) with at least 3 s per scene, and which of them are fades."""
    n_frames = int(round(duration_s * fps))
    min_len = int(3 * fps)
    weights = rng.uniform(1.0, 2.0, n_scenes)
    lengths = np.maximum(min_len, (weights / weights.sum() * n_frames).astype(int))
    starts = [0] + np.cumsum(lengths)[:-1].tolist()
    starts = [s for s in starts if s < n_frames - min_len]
    fades = sorted(rng.choice(starts[1:], size=min(n_fades, len(starts) - 1), replace=False).tolist())
    return n_frames, [int(s) for s in starts], [int(f) for f in fades]


def render_video(path: Path, domain: str, duration_s: float, seed: int, fps: float = 24.0,
                 size: tuple[int, int] = (320, 240), n_scenes: int = 4, n_fades: int = 1,
                 needle: tuple[int, int, str] | None = None) -> VideoTruth:
    """Write one video and return its ground truth."""
    import av

    rng = np.random.default_rng(seed)
    w, h = size
    n_frames, starts, fades = plan_video(rng, duration_s, fps, n_scenes, n_fades)
    ends = starts[1:] + [n_frames]
    fade_len = int(0.5 * fps)
    tracks, plans = [], []
    for k, (s, e) in enumerate(zip(starts, ends)):
        plans.append(_plan_shape(rng, k, s, e, fps, w, h, fade_len))
        tracks.append(plans[-1]["track"])
    backgrounds = [_scene_background(h, w, scene_color(seed, k), k) for k in range(len(starts))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23", "g": str(int(fps * 2))}
        for f in range(n_frames):
            k = int(np.searchsorted(starts, f, side="right") - 1)
            img = backgrounds[k].copy()
            box = plans[k]["box_at"](f)
            if box is not None:
                _draw(img, plans[k]["kind"], plans[k]["color"], *box)
            img = _apply_fade(img, f, k, starts, ends, fades, fade_len)
            if needle and needle[0] <= f < needle[0] + needle[1]:
                img = _needle_frame(h, w, needle[2])
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return VideoTruth(fps, n_frames, w, h, starts, fades, [t for t in tracks if t is not None], domain)


def _needle_frame(h: int, w: int, colour: str) -> np.ndarray:
    """The needle: a full-frame colour with a white disc, unlike any haystack frame."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = PALETTE[colour]
    r = min(h, w) // 3
    _draw(img, "circle", (255, 255, 255), w // 2 - r, h // 2 - r, w // 2 + r, h // 2 + r)
    return img


def _apply_fade(img, f, k, starts, ends, fades, fade_len):
    """Fade out the last frames before a fade boundary and fade in the first ones after it."""
    gain = 1.0
    if ends[k] in fades and f >= ends[k] - fade_len:
        gain = (ends[k] - f - 1) / fade_len
    if starts[k] in fades and f < starts[k] + fade_len:
        gain = min(gain, (f - starts[k]) / fade_len)
    return img if gain >= 1.0 else (img.astype(np.float32) * max(gain, 0.0)).astype(np.uint8)


def _plan_shape(rng, k, s, e, fps, w, h, fade_len):
    """One shape per scene, moving in a straight line during the middle of the scene."""
    kind = SHAPES[k % 2]
    color_name = list(PALETTE)[int(rng.integers(len(PALETTE)))]
    side = list(ACTIONS)[int(rng.integers(4))]
    side_px = int(min(w, h) * 0.25)
    t0 = s + fade_len + int(rng.integers(0, max(1, int(0.5 * fps))))
    t1 = e - fade_len - int(rng.integers(0, max(1, int(0.5 * fps))))
    start_xy = {"left": (0, (h - side_px) // 2), "right": (w - side_px, (h - side_px) // 2),
                "top": ((w - side_px) // 2, 0), "bottom": ((w - side_px) // 2, h - side_px)}[side]
    end_xy = (w - side_px - start_xy[0], h - side_px - start_xy[1]) if side in ("left", "right") else (
        start_xy[0], h - side_px - start_xy[1])

    def box_at(f):
        if f < t0 or f >= t1:
            return None
        a = (f - t0) / max(1, t1 - 1 - t0)
        x = int(round(start_xy[0] + a * (end_xy[0] - start_xy[0])))
        y = int(round(start_xy[1] + a * (end_xy[1] - start_xy[1])))
        return x, y, x + side_px, y + side_px

    track = ShapeTrack(f"the {color_name} {kind}", ACTIONS[side], frame_s(t0, fps), frame_s(t1, fps))
    for f in range(t0, t1, max(1, int(fps // 2))):  # boxes at 2 per second
        x1, y1, x2, y2 = box_at(f)
        track.boxes.append(dict(t_s=frame_s(f, fps), x1=_grid(x1, w), y1=_grid(y1, h), x2=_grid(x2, w), y2=_grid(y2, h)))
    return {"kind": kind, "color": PALETTE[color_name], "box_at": box_at, "track": track}


def _grid(v: int, extent: int) -> int:
    return int(round(v / extent * 1000))


def write_truth(path: Path, truth: VideoTruth, **extra) -> Path:
    out = path.with_suffix(".json")
    data = asdict(truth)
    data["cuts"] = truth.cuts
    data.update(extra)
    out.write_text(json.dumps(data, indent=1))
    return out


def read_truth(video_path: str | Path) -> dict | None:
    """The truth JSON written beside a generated video; None for any other file (a user's own metadata)."""
    p = storage.location(video_path).with_suffix(".json")  # beside an object in a bucket too
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and {"scene_starts", "shapes", "fps"} <= set(data) else None


DEMO_CORPUS = [
    # (domain, name, duration_s, n_scenes, n_fades)
    ("instructional", "howto_knots", 36, 4, 1),
    ("instructional", "howto_paint", 24, 3, 0),
    ("cinematic", "chase", 42, 5, 1),
    ("cinematic", "dialogue", 28, 3, 1),
    ("egocentric", "kitchen", 30, 4, 0),
    ("egocentric", "walk", 22, 3, 1),
    ("egocentric", "market", 26, 3, 0),
]


def make_corpus(root: str | Path, spec=DEMO_CORPUS, fps: float = 24.0, size=(320, 240)) -> list[Path]:
    """Write the demo corpus under ``root/<domain>/<name>.mp4`` with truth JSON beside each video."""
    root = Path(root)
    paths = []
    for seed, (domain, name, duration, n_scenes, n_fades) in enumerate(spec):
        path = root / domain / f"{name}.mp4"
        truth = render_video(path, domain, duration, seed, fps, size, n_scenes, n_fades)
        write_truth(path, truth)
        paths.append(path)
    return paths


def rewrite_video(src: str | Path, dst: str | Path, frame_fn=None, start_frame: int = 0, end_frame: int | None = None,
                  crf: int = 23) -> Path:
    """Re-encode frames [start_frame, end_frame) of ``src`` to ``dst``, each passed through ``frame_fn``
    (RGB array in, RGB array out, any even size): copies, crops, blurs and overlays for quality and
    near-duplicate tests."""
    from curation.video import encode_frames, frames_between, probe

    p = probe(src)
    end = p.n_frames if end_frame is None else min(end_frame, p.n_frames)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    frames = frames_between(src, start_frame, end)
    encode_frames(dst, map(frame_fn, frames) if frame_fn else frames, round(p.fps),
                  {"preset": "ultrafast", "crf": str(crf)}, source=src)
    return dst
