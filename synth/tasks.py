"""Training samples in chat form: dense captioning and temporal grounding.

Every sample stores the exact source frame indices and fps it shows, so the ``<t seconds>`` markers the
processor writes and the times in the target text are on the same clock: the source video's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from curation import CODE_VERSION
from curation.frames import FramePolicy, sample_indices
from curation.jobs import Stage, Stats
from curation.store import Dataset, stable_id
from model.inputs import assistant_message, user_video_message
from synth.dense import render_seconds

DENSE_PROMPT = "Describe this video in detail. For each event give its time span as <start - end seconds>."
GROUNDING_PROMPT = "When does {phrase} {action}? Answer with the time span as <start - end seconds>."
TASKS = ("dense_caption", "temporal_grounding")


def assign_split(video_id: str, val_pct: int = 10, test_pct: int = 10) -> str:
    """Split by video, from its id, so no video leaks across splits and reruns agree."""
    bucket = int(stable_id("split", video_id, n=8), 16) % 100
    return "test" if bucket < test_pct else "val" if bucket < test_pct + val_pct else "train"


def messages_json(prompt: str, answer: str) -> str:
    return json.dumps([user_video_message(prompt), assistant_message(answer)])


def grounding_answer(start_s: float, end_s: float) -> str:
    return render_seconds(start_s, end_s)


@dataclass
class TasksStage(Stage):
    model_id: str = ""
    caption_model: str = ""
    frames: FramePolicy = field(default_factory=lambda: FramePolicy(max_frames=32))
    name = "tasks"
    output = "samples"

    def setup(self, ds: Dataset) -> None:
        from model.loader import load_processor

        self.processor = load_processor(self.model_id)

    def items(self, ds: Dataset) -> list[dict]:
        return [dict(v, item_id=v["video_id"]) for v in ds.rows("videos")]

    def done_ids(self, ds: Dataset) -> set[str]:
        return set(ds.sql("SELECT DISTINCT video_id FROM samples").column("video_id").to_pylist())

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        rows = []
        for v in batch:
            dense = ds.sql("SELECT rendered FROM dense_captions WHERE video_id = ? AND model = ?",
                           [v["video_id"], str(self.caption_model or self.model_id)]).column("rendered").to_pylist()
            truth = ds.sql("SELECT phrase, action, start_s, end_s FROM grounding WHERE video_id = ? "
                           "AND source = 'ground_truth' AND phrase <> '' ORDER BY start_s", [v["video_id"]]).to_pylist()
            if dense:
                rows.append(self._sample(v, "dense_caption", DENSE_PROMPT, dense[0], key="all"))
            for g in truth:
                prompt = GROUNDING_PROMPT.format(phrase=g["phrase"], action=g["action"])
                rows.append(self._sample(v, "temporal_grounding", prompt, grounding_answer(g["start_s"], g["end_s"]),
                                         key=f"{g['phrase']}@{g['start_s']:.3f}"))
            stats.add("samples", len(rows))
        return rows

    def _sample(self, v: dict, task: str, prompt: str, answer: str, key: str) -> dict:
        idx = sample_indices(0, v["n_frames"], v["fps"], self.frames)
        msgs = messages_json(prompt, answer)
        return dict(
            sample_id=stable_id(task, v["video_id"], key), task=task, video_id=v["video_id"], uri=v["uri"],
            clip_start_s=0.0, clip_end_s=v["n_frames"] / v["fps"], frame_indices=idx, fps=v["fps"], messages=msgs,
            domain=v["domain"], split=assign_split(v["video_id"]),
            n_text_tokens=len(self.processor.tokenizer(prompt + answer)["input_ids"]),
            n_visual_tokens=self._visual_tokens(len(idx), v["height"], v["width"]), code_version=CODE_VERSION,
        )

    def _visual_tokens(self, n_frames: int, height: int, width: int) -> int:
        vp = self.processor.video_processor
        return int(vp.get_num_of_video_patches(n_frames, height, width)) // (vp.merge_size ** 2)
