"""Video needle-in-a-haystack (the Qwen3-VL report's Figure 3): a short needle clip inserted at a chosen
depth of a haystack video, and a question only the needle answers, over a grid of durations x depths.

One generator, prompt and answer format for both uses: `NeedleStage` writes haystacks and `needle` samples
into a dataset (held out, split ``test``), and ``densevid eval --needle`` writes a grid of its own with
``needle_rows``. The truth (needle frames, colour, depth) is in the JSON beside each haystack.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from curation import storage
from curation.frames import FramePolicy
from curation.stage import Stage, Stats
from curation.stages import video_row
from curation.store import Dataset
from curation.times import SPAN_HINT, FrameSpan, parse_span, render_span
from curation.video import content_id, probe
from synth.tasks import NEEDLE_TASK, Draft, TasksStage, clip_sample
from synth.videos import PALETTE, read_truth, render_video, write_truth

NEEDLE_DOMAIN = "needle"  # one of curation.domains.EVAL_ONLY_DOMAINS
# The grid the pipeline writes and `densevid eval --needle` scores unless told otherwise.
NEEDLE_DURATIONS_S = (20.0, 40.0)
NEEDLE_DEPTHS = (0.1, 0.5, 0.9)
NEEDLE_FPS = 24.0
NEEDLE_SIZE = (160, 128)
NEEDLE_FRAMES = FramePolicy(max_frames=32)

NEEDLE_PROMPT = ("Somewhere in this video the whole frame turns one colour for a moment, with a white disc in the "
                 f"middle. When does it happen and which colour is it? Answer as {SPAN_HINT} colour.")
COLOURS = tuple(PALETTE)


@dataclass(frozen=True)
class NeedleCell:
    """One haystack of the grid: its length, where the needle sits (0 start .. 1 end), which trial, the colour."""

    duration_s: float
    depth: float
    trial: int
    colour: str
    seed: int

    @property
    def name(self) -> str:
        return f"needle-{self.duration_s:g}s-depth{self.depth:g}" + (f"-{self.trial}" if self.trial else "")


def needle_cells(durations_s=NEEDLE_DURATIONS_S, depths=NEEDLE_DEPTHS, trials: int = 1) -> list[NeedleCell]:
    grid = [(d, p, t) for d in durations_s for p in depths for t in range(trials)]
    return [NeedleCell(float(d), float(p), t, COLOURS[i % len(COLOURS)], seed=100 + i) for i, (d, p, t) in enumerate(grid)]


def grid_problems(durations_s, depths) -> list[str]:
    """What is wrong with a needle grid; a needle outside its haystack would give a sample that lies."""
    out = []
    if any(d < 2 for d in durations_s):
        out.append(f"needle durations {tuple(durations_s)} must be >= 2 seconds each (the needle lasts about 1 s)")
    if any(not 0 <= p <= 1 for p in depths):
        out.append(f"needle depths {tuple(depths)} must be fractions in [0, 1]")
    return out


def needle_window(n_frames: int, depth: float, fps: float, policy: FramePolicy) -> FrameSpan:
    """The needle's frames: long enough that the frame sampler always lands at least two frames on it."""
    sampled = max(policy.min_frames, min(policy.max_frames, int(round(n_frames / fps * policy.target_fps))))
    length = max(int(fps), -(-2 * n_frames // sampled) + 1)
    start = int(round(depth * (n_frames - length)))
    return FrameSpan(start, start + length, fps)


def needle_answer(window: FrameSpan, colour: str) -> str:
    """``<31.5 - 36.5 seconds> magenta``."""
    return f"{render_span(window.start_s, window.end_s)} {colour}"


def write_haystack(path: Path, cell: NeedleCell, fps: float = NEEDLE_FPS, size: tuple[int, int] = NEEDLE_SIZE,
                   policy: FramePolicy = NEEDLE_FRAMES) -> dict:
    """Write one haystack video with its truth JSON; returns the needle truth (see ``needle_truth``)."""
    window = needle_window(int(round(cell.duration_s * fps)), cell.depth, fps, policy)
    truth = render_video(path, NEEDLE_DOMAIN, cell.duration_s, seed=cell.seed, fps=fps, size=size,
                         n_scenes=max(2, int(cell.duration_s // 8)), n_fades=0,
                         needle=(window.start_frame, window.n_frames, cell.colour))
    needle = dict(start_frame=window.start_frame, n_frames=window.n_frames, colour=cell.colour, depth=cell.depth,
                  duration_s=cell.duration_s, fps=fps)
    write_truth(path, truth, needle=needle)
    return needle


def needle_truth(uri: str | Path) -> dict | None:
    """The needle of a haystack (start_frame, n_frames, colour, depth, duration_s, fps); None for other videos."""
    truth = read_truth(uri)
    if not truth or "needle" not in truth:
        return None
    # haystacks written before the needle carried its clock: the video's own
    return {"fps": truth["fps"], "duration_s": truth["n_frames"] / truth["fps"], **truth["needle"]}


def _window(needle: dict) -> FrameSpan:
    return FrameSpan(needle["start_frame"], needle["start_frame"] + needle["n_frames"], needle["fps"])


def needle_span(needle: dict) -> tuple[float, float]:
    """The needle's time span in seconds, on its haystack's clock."""
    window = _window(needle)
    return (window.start_s, window.end_s)


def parse_needle_answer(text: str) -> tuple[tuple[float, float] | None, str | None]:
    """The span (the first time span) and the colour (the last word, when it is one of COLOURS) of an answer in
    the format ``needle_answer`` writes; None for a part the answer lacks."""
    words = re.findall(r"[a-z]+", text.lower())
    return parse_span(text), words[-1] if words and words[-1] in COLOURS else None


def _upload_haystack(url, cell: NeedleCell, policy: FramePolicy) -> dict:
    """``write_haystack`` for a dataset on object storage: rendered locally, then uploaded (truth first, so
    a video in the bucket always has its truth beside it)."""
    with tempfile.TemporaryDirectory(prefix="densevid-needle-") as d:
        local = Path(d) / url.name
        needle = write_haystack(local, cell, policy=policy)
        storage.put_file(local.with_suffix(".json"), url.with_suffix(".json"))
        storage.put_file(local, url)
    return needle


def haystack_video(path: Path) -> dict:
    """The `videos` row of a written haystack."""
    return video_row(content_id(path), [path], probe(path), NEEDLE_DOMAIN, "generated", None)


def needle_draft(cell: NeedleCell, needle: dict) -> Draft:
    return Draft(NEEDLE_TASK, cell.name, NEEDLE_PROMPT, needle_answer(_window(needle), cell.colour))


def needle_rows(out_dir: str | Path, durations_s=NEEDLE_DURATIONS_S, depths=NEEDLE_DEPTHS, trials: int = 1,
                policy: FramePolicy = NEEDLE_FRAMES) -> list[dict]:
    """Write a haystack per grid cell and trial; returns their sample rows (as in a mixture manifest, without
    token counts) with the cell's duration_s, depth and colour."""
    rows = []
    for cell in needle_cells(durations_s, depths, trials):
        path = Path(out_dir) / f"{cell.name}.mp4"
        needle = write_haystack(path, cell, policy=policy)
        sample = clip_sample(haystack_video(path), needle_draft(cell, needle), policy, split="test")
        rows.append(dict(sample, duration_s=cell.duration_s, depth=cell.depth, colour=cell.colour))
    return rows


@dataclass
class NeedleStage(Stage):
    """Writes haystack videos under ``<data>/needle_videos``, their ``videos`` rows, and ``needle`` samples.

    Fields: ``model_id`` the processor that counts tokens; ``durations_s`` x ``depths`` the grid (one
    haystack per cell); ``frames`` the frame budget of a sample (the needle is sized so it is always seen);
    ``split`` of the samples (held out by default).
    """

    model_id: str = ""
    durations_s: tuple[float, ...] = NEEDLE_DURATIONS_S
    depths: tuple[float, ...] = NEEDLE_DEPTHS
    frames: FramePolicy = field(default_factory=lambda: NEEDLE_FRAMES)
    split: str = "test"
    name = "needle"
    inputs = ()
    output = "samples"  # and the haystacks' `videos` rows

    def setup(self, ds: Dataset) -> None:
        self.tasks = TasksStage(model_id=self.model_id, frames=self.frames)
        self.tasks.setup(ds)

    def items(self, ds: Dataset) -> list[dict]:
        return [dict(item_id=cell.name, cell=cell) for cell in needle_cells(self.durations_s, self.depths)]

    def done_ids(self, ds: Dataset) -> set[str]:
        """Haystacks are named after their cell, so a needle sample's file name says which cell is done."""
        uris = ds.sql("SELECT uri FROM samples WHERE task = ?", [NEEDLE_TASK]).column("uri").to_pylist()
        return {Path(u).stem for u in uris}

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        rows = []
        for item in batch:
            cell = item["cell"]
            path = ds.root / "needle_videos" / f"{cell.name}.mp4"
            needle = (_upload_haystack if ds.remote else write_haystack)(path, cell, policy=self.frames)
            video = haystack_video(path)
            ds.write("videos", [video])
            rows.append(self.tasks.sample(video, needle_draft(cell, needle), split=self.split))
            stats.add("haystacks")
        return rows
