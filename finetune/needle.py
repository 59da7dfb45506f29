"""A needle-in-a-haystack eval set of our own: haystack videos with a short, distinctly coloured needle at a
chosen depth, over a grid of durations x depths, asked as a multiple-choice colour question.

Self-contained (PyAV only) so `densevid eval --needle` works on any model without a dataset; `needle`
samples from a dataset are scored the same way (see finetune/evaluate.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from curation.frames import FramePolicy, sample_indices

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (240, 220, 40),
           "white": (245, 245, 245), "magenta": (220, 50, 200)}
QUESTION = ("For a moment the whole frame turns one colour with a white disc in the middle. "
            "What colour is it? Answer with one word: " + ", ".join(COLOURS) + ".")


def needle_span(n_frames: int, depth: float, fps: float, policy: FramePolicy) -> tuple[int, int]:
    """(start_frame, length): long enough that the frame sampler lands at least two frames on the needle."""
    sampled = max(policy.min_frames, min(policy.max_frames, int(round(n_frames / fps * policy.target_fps))))
    length = max(int(fps), -(-2 * n_frames // sampled) + 1)
    return int(round(depth * (n_frames - length))), length


def haystack_frame(rng: np.random.Generator, h: int, w: int, scene: int) -> np.ndarray:
    """Muted, textured scenery: low saturation so no haystack frame looks like a needle."""
    base = rng.integers(60, 170, 3)
    base = (base * 0.3 + base.mean() * 0.7).astype(np.int16)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = ((((xx if scene % 2 else yy) // (8 + 4 * (scene % 3))) % 2) * 25).astype(np.int16)
    return np.clip(base[None, None, :] + stripes[..., None] + (yy * 30 // h)[..., None], 0, 255).astype(np.uint8)


def needle_frame(h: int, w: int, colour: str) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = COLOURS[colour]
    yy, xx = np.mgrid[0:h, 0:w]
    img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 <= (min(h, w) / 3) ** 2] = 255
    return img


def write_haystack(path: Path, duration_s: float, depth: float, colour: str, seed: int, fps: float = 8.0,
                   size: tuple[int, int] = (128, 96), policy: FramePolicy | None = None) -> dict:
    """Write one haystack video; returns its truth (needle start/length in frames, colour, depth)."""
    import av

    rng = np.random.default_rng(seed)
    policy = policy or FramePolicy(max_frames=32)
    w, h = size
    n_frames = int(round(duration_s * fps))
    start, length = needle_span(n_frames, depth, fps, policy)
    scene_len = max(1, int(4 * fps))
    scenes = [haystack_frame(rng, h, w, k) for k in range(n_frames // scene_len + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "20"}
        for f in range(n_frames):
            img = needle_frame(h, w, colour) if start <= f < start + length else scenes[f // scene_len]
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dict(start_frame=start, n_frames=length, colour=colour, depth=depth, fps=fps, total_frames=n_frames)


def needle_rows(out_dir: str | Path, durations_s=(8.0, 16.0, 32.0), depths=(0.1, 0.5, 0.9), trials: int = 2,
                fps: float = 8.0, max_frames: int = 32) -> list[dict]:
    """Manifest-like rows (uri, frame_indices, fps, clip span, messages) for every grid cell and trial."""
    out_dir = Path(out_dir)
    policy = FramePolicy(max_frames=max_frames)
    names = list(COLOURS)
    rows = []
    for i, (d, p, t) in enumerate((d, p, t) for d in durations_s for p in depths for t in range(trials)):
        path = out_dir / f"needle-{d:g}s-depth{p:g}-{t}.mp4"
        colour = names[(i * 5 + t) % len(names)]
        truth = write_haystack(path, d, p, colour, seed=1000 + i, fps=fps, policy=policy)
        path.with_suffix(".json").write_text(json.dumps(truth))
        n = truth["total_frames"]
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]},
                    {"role": "assistant", "content": [{"type": "text", "text": colour}]}]
        rows.append(dict(sample_id=path.stem, task="needle", uri=str(path), fps=fps, clip_start_s=0.0,
                         clip_end_s=n / fps, frame_indices=sample_indices(0, n, fps, policy),
                         messages=json.dumps(messages), duration_s=float(d), depth=float(p), colour=colour))
    return rows
