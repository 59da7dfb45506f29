"""Mixture samples -> model inputs: decode the sample's frames, run the processor, mask all but the answer."""

from __future__ import annotations

import json

import torch

from curation.video import read_frames
from model.inputs import build_inputs, video_metadata

IGNORE = -100


def assistant_spans(input_ids: list[int], start_seq: list[int], end_id: int) -> list[tuple[int, int]]:
    """[a, b) token spans of assistant answers: after ``<|im_start|>assistant\\n`` up to and with ``<|im_end|>``."""
    spans, n, k = [], len(input_ids), len(start_seq)
    i = 0
    while i <= n - k:
        if input_ids[i : i + k] == start_seq:
            a = i + k
            b = a
            while b < n and input_ids[b] != end_id:
                b += 1
            spans.append((a, min(b + 1, n)))
            i = b
        else:
            i += 1
    return spans


def mask_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer) -> torch.Tensor:
    start_seq = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    labels = torch.full_like(input_ids, IGNORE)
    for row in range(input_ids.shape[0]):
        for a, b in assistant_spans(input_ids[row].tolist(), start_seq, end_id):
            labels[row, a:b] = input_ids[row, a:b]
    labels[attention_mask == 0] = IGNORE
    return labels


class SampleCollator:
    """Decodes frames for a batch of manifest rows and builds padded, label-masked inputs."""

    def __init__(self, processor, video_sizes: dict[str, tuple[int, int, int]] | None = None):
        self.processor = processor
        self.video_sizes = video_sizes or {}

    def __call__(self, rows: list[dict]):
        convs, videos, metas = [], [], []
        for r in rows:
            convs.append(json.loads(r["messages"]))
            frames = read_frames(r["uri"], r["frame_indices"])
            n_frames = self.video_sizes.get(r["video_id"], (None,))[0] or int(round(r["clip_end_s"] * r["fps"]))
            videos.append(frames)
            metas.append(video_metadata(r["frame_indices"], r["fps"], n_frames, frames.shape[2], frames.shape[1]))
        inputs = build_inputs(self.processor, convs, videos, metas, add_generation_prompt=False, padding_side="right")
        inputs["labels"] = mask_labels(inputs["input_ids"], inputs["attention_mask"], self.processor.tokenizer)
        return inputs
