"""Video needle-in-a-haystack (the Qwen3-VL report's Figure 3): a short needle clip inserted at a chosen
depth of a long haystack video, and a question only the needle answers, over a grid of durations x depths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from curation.frames import FramePolicy
from curation.jobs import Stage, Stats
from curation.stages import video_row
from curation.store import Dataset
from curation.video import content_id, probe
from synth.dense import render_seconds
from synth.tasks import TasksStage
from synth.videos import PALETTE

NEEDLE_DOMAIN = "needle"  # one of curation.domains.EVAL_ONLY_DOMAINS
# The grid the pipeline writes and `densevid eval --needle` scores unless told otherwise.
NEEDLE_DURATIONS_S = (20.0, 40.0)
NEEDLE_DEPTHS = (0.1, 0.5, 0.9)

NEEDLE_PROMPT = ("Somewhere in this video the whole frame turns one colour for a moment, with a white disc in the "
                 "middle. When does it happen and which colour is it? Answer as <start - end seconds> colour.")
COLOURS = tuple(PALETTE)


def needle_answer(start_s: float, end_s: float, colour: str) -> str:
    return f"{render_seconds(start_s, end_s)} {colour}"


def needle_window(duration_s: float, depth: float, fps: float, policy: FramePolicy) -> tuple[int, int]:
    """(start_frame, n_frames): long enough that the frame sampler always lands at least two frames on it."""
    n_frames = int(round(duration_s * fps))
    sampled = max(policy.min_frames, min(policy.max_frames, int(round(duration_s * policy.target_fps))))
    length = max(int(fps), -(-2 * n_frames // sampled) + 1)
    start = int(round(depth * (n_frames - length)))
    return start, length


@dataclass
class NeedleStage(Stage):
    """Writes haystack videos under ``<data>/needle_videos``, their ``videos`` rows, and ``needle`` samples."""

    model_id: str = ""
    durations_s: tuple[float, ...] = (20.0, 40.0)
    depths: tuple[float, ...] = (0.1, 0.5, 0.9)
    frames: FramePolicy = field(default_factory=lambda: FramePolicy(max_frames=32))
    fps: float = 24.0
    size: tuple[int, int] = (160, 128)
    split: str = "test"
    name = "needle"
    inputs = ()
    output = "samples"  # and the haystacks' `videos` rows

    def setup(self, ds: Dataset) -> None:
        self.tasks = TasksStage(model_id=self.model_id, frames=self.frames)
        self.tasks.setup(ds)

    def items(self, ds: Dataset) -> list[dict]:
        cells = [(d, p) for d in self.durations_s for p in self.depths]
        return [dict(item_id=f"needle-{d:g}s-depth{p:g}", duration_s=d, depth=p, k=k) for k, (d, p) in enumerate(cells)]

    def done_ids(self, ds: Dataset) -> set[str]:
        rows = ds.sql("SELECT DISTINCT regexp_extract(uri, '(needle-[^/]*)\\.mp4', 1) AS cell FROM samples "
                      "WHERE task = 'needle'").column("cell").to_pylist()
        return set(rows)

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        from synth.videos import render_video, write_truth

        rows = []
        for cell in batch:
            path = ds.root / "needle_videos" / f"{cell['item_id']}.mp4"
            start, length = needle_window(cell["duration_s"], cell["depth"], self.fps, self.frames)
            colour = COLOURS[cell["k"] % len(COLOURS)]
            truth = render_video(path, NEEDLE_DOMAIN, cell["duration_s"], seed=100 + cell["k"], fps=self.fps,
                                 size=self.size, n_scenes=max(2, int(cell["duration_s"] // 8)), n_fades=0,
                                 needle=(start, length, colour))
            write_truth(path, truth, needle=dict(start_frame=start, n_frames=length, colour=colour, depth=cell["depth"]))
            video = self._video_row(path)
            ds.write("videos", [video])
            answer = needle_answer(start / video["fps"], (start + length) / video["fps"], colour)
            sample = self.tasks._sample(video, "needle", NEEDLE_PROMPT, answer, cell["item_id"], split=self.split)
            rows.append(sample)
            stats.add("haystacks")
        return rows

    @staticmethod
    def _video_row(path: Path) -> dict:
        return video_row(content_id(path), [path], probe(path), NEEDLE_DOMAIN, "generated", None)
