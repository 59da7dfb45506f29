"""Training samples in chat form: dense captioning and temporal grounding.

Every sample stores the exact source frame indices and fps it shows, so the ``<t seconds>`` markers the
processor writes and the times in the target text are on the same clock: the source video's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from curation import CODE_VERSION
from curation.domains import EVAL_ONLY_DOMAINS
from curation.frames import FramePolicy, sample_indices
from curation.jobs import Stage, Stats, log
from curation.store import Dataset, stable_id
from model.inputs import assistant_message, user_video_message, visual_tokens
from model.loader import model_key
from synth.dense import render_seconds

DENSE_PROMPT = "Describe this video in detail. For each event give its time span as <start - end seconds>."
SEGMENT_PROMPT = "Describe what happens in this clip: its time span, the main event, then people, objects, background and actions."
GROUNDING_PROMPT = "When does {phrase} {action}? Answer with the time span as <start - end seconds>."
ST_GROUNDING_PROMPT = ("When and where does {phrase} {action}? Give the time span as <start - end seconds> and, "
                       "at a few times <t seconds>, its box as bbox_2d [x1, y1, x2, y2] on a 0..1000 grid.")
TASKS = ("dense_caption", "segment_caption", "temporal_grounding", "spatio_temporal_grounding", "needle")


def assign_split(video_id: str, val_pct: int = 10, test_pct: int = 10) -> str:
    """Split by video, from its id, so no video leaks across splits and reruns agree."""
    bucket = int(stable_id("split", video_id, n=8), 16) % 100
    return "test" if bucket < test_pct else "val" if bucket < test_pct + val_pct else "train"


def messages_json(prompt: str, answer: str) -> str:
    return json.dumps([user_video_message(prompt), assistant_message(answer)])


def grounding_answer(start_s: float, end_s: float) -> str:
    return render_seconds(start_s, end_s)


def st_grounding_answer(phrase: str, start_s: float, end_s: float, boxes: list[dict], max_boxes: int = 4) -> str:
    """``{"phrase": ..., "time": "<a - b seconds>", "boxes": [{"time": "<t seconds>", "bbox_2d": [...]}]}``."""
    step = max(1, -(-len(boxes) // max_boxes))
    picked = boxes[::step][:max_boxes]
    return json.dumps({"phrase": phrase, "time": render_seconds(start_s, end_s),
                       "boxes": [{"time": f"<{b['t_s']:.1f} seconds>", "bbox_2d": [b["x1"], b["y1"], b["x2"], b["y2"]]}
                                 for b in picked]})


def segment_answer(seg: dict) -> str:
    return f"{render_seconds(seg['start_s'], seg['end_s'])} {seg['summary'].strip().rstrip('.')}. {seg['details']}"


@dataclass
class TasksStage(Stage):
    model_id: str = ""
    caption_model: str = ""
    frames: FramePolicy = field(default_factory=lambda: FramePolicy(max_frames=32))
    segment_frames: FramePolicy = field(default_factory=lambda: FramePolicy(max_frames=16))
    name = "tasks"
    inputs = ("videos", "segments", "captions", "dense_captions", "grounding")
    output = "samples"

    def setup(self, ds: Dataset) -> None:
        from model.loader import load_processor

        self.processor = load_processor(self.model_id)

    def items(self, ds: Dataset) -> list[dict]:
        """Videos with a dense caption from the caption model; others wait instead of being marked done."""
        model = model_key(self.caption_model or self.model_id)
        ready = set(ds.sql("SELECT video_id FROM dense_captions WHERE model = ?", [model]).column("video_id").to_pylist())
        videos = [v for v in ds.rows("videos") if v["domain"] not in EVAL_ONLY_DOMAINS]
        if len(ready) < len(videos):
            log.warning("tasks: %d videos wait for their dense caption (model %s)", len(videos) - len(ready), model)
        return [dict(v, item_id=v["video_id"]) for v in videos if v["video_id"] in ready]

    def done_ids(self, ds: Dataset) -> set[str]:
        return set(ds.sql("SELECT DISTINCT video_id FROM samples").column("video_id").to_pylist())

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        rows = []
        model = model_key(self.caption_model or self.model_id)
        for v in batch:
            vid = [v["video_id"]]
            dense = ds.sql("SELECT rendered FROM dense_captions WHERE video_id = ? AND model = ?",
                           vid + [model]).column("rendered").to_pylist()
            segs = ds.sql("SELECT s.start_frame, s.end_frame, s.segment_id, c.start_s, c.end_s, c.summary, c.details "
                          "FROM captions c JOIN segments s USING (segment_id) WHERE c.video_id = ? AND c.model = ? "
                          "ORDER BY s.start_frame", vid + [model]).to_pylist()
            truth = ds.sql("SELECT phrase, action, start_s, end_s, boxes FROM grounding WHERE video_id = ? "
                           "AND source = 'ground_truth' AND phrase <> '' ORDER BY start_s", vid).to_pylist()
            if dense:
                rows.append(self._sample(v, "dense_caption", DENSE_PROMPT, dense[0], "all"))
            for seg in segs:
                rows.append(self._sample(v, "segment_caption", SEGMENT_PROMPT, segment_answer(seg), seg["segment_id"],
                                         span=(seg["start_frame"], seg["end_frame"]), policy=self.segment_frames))
            for g in truth:
                key = f"{g['phrase']}@{g['start_s']:.3f}"
                rows.append(self._sample(v, "temporal_grounding", GROUNDING_PROMPT.format(**g),
                                         grounding_answer(g["start_s"], g["end_s"]), key))
                if g["boxes"]:
                    rows.append(self._sample(v, "spatio_temporal_grounding", ST_GROUNDING_PROMPT.format(**g),
                                             st_grounding_answer(g["phrase"], g["start_s"], g["end_s"], g["boxes"]), key))
        stats.add("samples", len(rows))
        return rows

    def _sample(self, v: dict, task: str, prompt: str, answer: str, key: str, span: tuple[int, int] | None = None,
                policy: FramePolicy | None = None, split: str | None = None) -> dict:
        a, b = span or (0, v["n_frames"])
        idx = sample_indices(a, b, v["fps"], policy or self.frames)
        return dict(
            sample_id=stable_id(task, v["video_id"], key), task=task, video_id=v["video_id"], uri=v["uri"],
            clip_start_s=a / v["fps"], clip_end_s=b / v["fps"], frame_indices=idx, fps=v["fps"],
            messages=messages_json(prompt, answer), domain=v["domain"], split=split or assign_split(v["video_id"]),
            n_text_tokens=len(self.processor.tokenizer(prompt + answer)["input_ids"]),
            n_visual_tokens=visual_tokens(self.processor, len(idx), v["height"], v["width"]), code_version=CODE_VERSION,
        )


