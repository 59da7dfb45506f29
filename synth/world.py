"""A generated world whose questions need the frames: several shapes per video at random times and places.

Each video is one plain-background shot (no cut, at most ~10 s, so the default split keeps it whole) in
which 3-4 shapes of distinct colours, of two kinds, each appear, glide in a straight line and vanish. Every
event's phrase ("the red square") is unique in its video and at least one kind has more than one event,
so neither the question's words nor the video's length tell when something happens.
The truth is a `synth.videos.VideoTruth`, written and read by `write_truth` / `read_truth`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.times import frame_s
from synth.videos import ACTIONS, PALETTE, SHAPES, ShapeTrack, VideoTruth, _draw, _grid, write_truth

BACKGROUND = (110, 110, 110)
MOVES = {"move to the right": (1, 0), "move to the left": (-1, 0), "move down": (0, 1), "move up": (0, -1)}
assert set(MOVES) == set(ACTIONS.values())


@dataclass(frozen=True)
class WorldEvent:
    """One shape on screen during frames [t0, t1), moving from (x0, y0) by (dx, dy) pixels (top-left corner)."""

    color: str
    kind: str
    action: str
    t0: int
    t1: int
    x0: int
    y0: int
    dx: int
    dy: int
    side: int

    def box_at(self, f: int) -> tuple[int, int, int, int] | None:
        if not self.t0 <= f < self.t1:
            return None
        a = (f - self.t0) / max(1, self.t1 - 1 - self.t0)
        x, y = int(round(self.x0 + a * self.dx)), int(round(self.y0 + a * self.dy))
        return x, y, x + self.side, y + self.side

    def path_rect(self) -> tuple[int, int, int, int]:
        x1, y1 = min(self.x0, self.x0 + self.dx), min(self.y0, self.y0 + self.dy)
        x2, y2 = max(self.x0, self.x0 + self.dx) + self.side, max(self.y0, self.y0 + self.dy) + self.side
        return x1, y1, x2, y2


def _overlaps(a: WorldEvent, b: WorldEvent) -> bool:
    """Both on screen at once and their paths cross: one would hide the other."""
    if a.t1 <= b.t0 or b.t1 <= a.t0:
        return False
    ax1, ay1, ax2, ay2 = a.path_rect()
    bx1, by1, bx2, by2 = b.path_rect()
    return ax1 < bx2 and bx1 < ax2 and ay1 < by2 and by1 < ay2


def plan_world(rng: np.random.Generator, n_frames: int, fps: float, size: tuple[int, int], n_events: int,
               event_s: tuple[float, float], shape_frac: float, grid_s: float = 0.0) -> list[WorldEvent]:
    """Events with distinct colours, random kinds, times, places and directions; no two hide each other."""
    if not 3 <= n_events <= len(PALETTE):
        raise ValueError(f"n_events {n_events} must be in 3..{len(PALETTE)}: at least 3 so a shape kind repeats, "
                         f"at most one event per colour of synth.videos.PALETTE")
    w, h = size
    side = max(4, int(round(min(w, h) * shape_frac)))
    colors = rng.choice(list(PALETTE), size=n_events, replace=False).tolist()
    kinds = [SHAPES[i % 2] for i in range(n_events)]  # both kinds, then shuffled: some kind repeats
    rng.shuffle(kinds)
    for _ in range(100):  # a greedy placement can corner itself: start over
        events = _place(rng, colors, kinds, n_frames, fps, w, h, side, event_s, grid_s)
        if events is not None:
            return sorted(events, key=lambda e: (e.t0, e.t1, e.color))
    raise ValueError(f"could not place {n_events} shapes of {side} px in {w}x{h} without hiding one another; "
                     "lower n_events or shape_frac")


def _place(rng, colors, kinds, *args) -> list[WorldEvent] | None:
    events: list[WorldEvent] = []
    for color, kind in zip(colors, kinds):
        for _ in range(100):
            ev = _random_event(rng, color, kind, *args)
            if not any(_overlaps(ev, other) for other in events):
                events.append(ev)
                break
        else:
            return None
    return events


def _random_event(rng, color, kind, n_frames, fps, w, h, side, event_s, grid_s) -> WorldEvent:
    margin = int(round(0.25 * fps))
    length = min(int(round(rng.uniform(*event_s) * fps)), n_frames - 2 * margin)
    step = int(round(grid_s * fps))
    if step > 1:  # start and end on the grid, still inside the margins
        length = max(step, step * round(length / step))
        t0 = step * int(rng.integers(-(-margin // step), (n_frames - margin - length) // step + 1))
    else:
        t0 = int(rng.integers(margin, n_frames - margin - length + 1))
    action = list(MOVES)[int(rng.integers(len(MOVES)))]
    ux, uy = MOVES[action]
    room_x, room_y = w - side, h - side
    dist = int(rng.uniform(0.4, 0.8) * (room_x if ux else room_y))
    x0 = int(rng.integers(0, room_x - abs(ux) * dist + 1))
    y0 = int(rng.integers(0, room_y - abs(uy) * dist + 1))
    if ux < 0:
        x0 += dist
    if uy < 0:
        y0 += dist
    return WorldEvent(color, kind, action, t0, t0 + length, x0, y0, ux * dist, uy * dist, side)


def _track(ev: WorldEvent, fps: float, w: int, h: int) -> ShapeTrack:
    track = ShapeTrack(f"the {ev.color} {ev.kind}", ev.action, frame_s(ev.t0, fps), frame_s(ev.t1, fps))
    for f in range(ev.t0, ev.t1, max(1, int(fps // 2))):  # boxes at 2 per second
        x1, y1, x2, y2 = ev.box_at(f)
        track.boxes.append(dict(t_s=frame_s(f, fps), x1=_grid(x1, w), y1=_grid(y1, h), x2=_grid(x2, w),
                                y2=_grid(y2, h)))
    return track


def world_frames(events: list[WorldEvent], n_frames: int, size: tuple[int, int]):
    """The video's RGB frames, one at a time."""
    w, h = size
    base = np.empty((h, w, 3), np.uint8)
    base[:] = BACKGROUND
    for f in range(n_frames):
        img = base.copy()
        for ev in events:
            box = ev.box_at(f)
            if box is not None:
                _draw(img, ev.kind, PALETTE[ev.color], *box)
        yield img


def render_world_video(path: str | Path, domain: str, seed: int, duration_s: float = 8.0, fps: float = 8.0,
                       size: tuple[int, int] = (128, 96), n_events: int | tuple[int, int] = (3, 4),
                       event_s: tuple[float, float] = (1.5, 3.5), shape_frac: float = 0.35,
                       grid_s: float = 0.0) -> VideoTruth:
    """Write one world video (H.264, PyAV) and return its truth; ``n_events`` a count or an inclusive range;
    ``grid_s`` > 0 puts every event's start and end on a grid of that step (fewer distinct answer times)."""
    from curation.video import encode_frames

    rng = np.random.default_rng(seed)
    lo, hi = (n_events, n_events) if isinstance(n_events, int) else n_events
    n = int(rng.integers(lo, hi + 1))
    n_frames = int(round(duration_s * fps))
    events = plan_world(rng, n_frames, fps, size, n, event_s, shape_frac, grid_s)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encode_frames(path, world_frames(events, n_frames, size), int(fps),
                  {"preset": "ultrafast", "crf": "18", "g": str(int(fps * 2))})
    w, h = size
    return VideoTruth(fps, n_frames, w, h, [0], [], [_track(ev, fps, w, h) for ev in events], domain)


def world_name(seed: int, i: int) -> str:
    """A video's file stem; the corpus seed is part of it, so corpora made with different seeds never collide."""
    return f"world-s{seed}-{i:05d}"


def world_seed(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def make_world_corpus(root: str | Path, n_videos: int, seed: int = 0, domain: str = "synthetic",
                      truth_dir: str | Path | None = None, **render_kwargs) -> list[Path]:
    """Write ``root/<domain>/<name>.mp4``; the truth goes beside each video, or only to ``truth_dir/<name>.json``
    when given (the pipeline then finds no truth next to the videos)."""
    out = []
    for i in range(n_videos):
        name = world_name(seed, i)
        path = Path(root) / domain / f"{name}.mp4"
        truth = render_world_video(path, domain, world_seed(seed, i), **render_kwargs)
        where = path if truth_dir is None else Path(truth_dir) / f"{name}.mp4"
        where.parent.mkdir(parents=True, exist_ok=True)
        write_truth(where, truth, generator="world", corpus_seed=seed)
        out.append(path)
    return out
