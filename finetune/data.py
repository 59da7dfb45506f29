"""Mixture samples -> model inputs: decode the sample's frames, run the processor, mask all but the answer.

Batches are planned by token budget over length buckets (low padding), decoded in DataLoader workers, and
can be packed into one row. The plan is a pure function of (seed, epoch), so a data position is two ints.
"""

from __future__ import annotations

import copy
import functools
from itertools import islice

import numpy as np
import torch

from curation.chats import read_messages
from curation.frames import FramePolicy, sample_indices
from curation.video import read_frames
from model.inputs import build_inputs, video_metadata, visual_tokens

IGNORE = -100
TOKENS_PER_TIMESTAMP = 9  # `<12.5 seconds><|vision_start|>...<|vision_end|>` around each frame pair
TEMPLATE_TOKENS = 16  # role markers and newlines of one user + one assistant turn


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


# --- one sample ----------------------------------------------------------------------------------------


def frame_indices(row: dict, max_frames: int = 0, target_fps: float = 2.0) -> list[int]:
    """The sample's stored frames, or its clip's frames resampled with the captioner's sampler under a new cap."""
    if not max_frames:
        return [int(i) for i in row["frame_indices"]]
    policy = FramePolicy(target_fps=target_fps, max_frames=max_frames)
    start, end = _clip_frames(row)
    return sample_indices(start, max(end, start + 1), row["fps"], policy)


def _clip_frames(row: dict) -> tuple[int, int]:
    if row.get("clip_start_frame") is None or row.get("video_n_frames") is None:
        raise ValueError(f"sample {row['sample_id']} has no clip frames (made by an older densevid); rebuild the "
                         "samples: move <data>/samples away, run `densevid tasks`, then `densevid mix`")
    return row["clip_start_frame"], row["clip_end_frame"]


def estimate_length(row: dict, max_frames: int = 0, target_fps: float = 2.0, processor=None) -> int:
    """Token count without decoding: text + visual tokens + one timestamp per frame pair + template.

    Only orders samples into buckets; the exact length is checked after the processor runs. With a
    ``processor`` (a frame budget of its own, see ``frame_budget``) the visual tokens are the processor's
    count for the video's frame size; otherwise the stored count scaled by the frame count.
    """
    stored = max(1, len(row["frame_indices"]))
    n = len(frame_indices(row, max_frames, target_fps)) if max_frames else stored
    size = frame_size(row["uri"]) if processor is not None else None
    if size is not None:
        visual = visual_tokens(processor, n, *size)
    else:
        visual = int(row["n_visual_tokens"] * n / stored)
    return int(row["n_text_tokens"]) + visual + TOKENS_PER_TIMESTAMP * ((n + 1) // 2) + TEMPLATE_TOKENS


@functools.lru_cache(maxsize=65536)
def frame_size(uri: str) -> tuple[int, int] | None:
    """(height, width) of a video's frames as decoded, from the stream header; None if unreadable. A video
    on a bucket is read by range requests (``av.open`` alone knows no ``s3://``)."""
    from curation.video import av_open, rotation_of

    try:
        with av_open(uri) as container:
            ctx = container.streams.video[0].codec_context
            h, w = ctx.height, ctx.width
        return (w, h) if rotation_of(uri) in (90, 270) else (h, w)
    except Exception:  # an unreadable video is dropped (and counted) when it is decoded
        return None


def frame_budget(processor, max_frames: int, max_frame_tokens: int):
    """The processor with Qwen3-VL's long-video budget: each frame (temporal patch of two frames) costs at
    most ``max_frame_tokens`` visual tokens (the processor's own ``cap_pixels_per_frame``), and the whole-video
    budget is raised to ``max_frames`` such frames, so a long clip keeps its per-frame resolution instead of
    sharing a fixed total. A copy: the processor saved with the model is left as it was loaded."""
    if not max_frame_tokens:
        return processor
    processor = copy.deepcopy(processor)
    vp = processor.video_processor
    factor = vp.patch_size * vp.merge_size
    vp.cap_pixels_per_frame = True
    vp.max_video_tokens = int(max_frame_tokens)
    total = max(2, max_frames) * max_frame_tokens * factor * factor
    vp.size = {"shortest_edge": vp.size["shortest_edge"], "longest_edge": max(vp.size["longest_edge"], total)}
    return processor


def load_video(row: dict, max_frames: int = 0, target_fps: float = 2.0):
    """(frames, metadata) of a sample: decoded at its frame indices, metadata on the source clock."""
    idx = frame_indices(row, max_frames, target_fps)
    _clip_frames(row)
    frames = read_frames(row["uri"], idx)
    return frames, video_metadata(idx, row["fps"], row["video_n_frames"], frames.shape[2], frames.shape[1])


def encode_sample(processor, row: dict, max_frames: int = 0, target_fps: float = 2.0) -> dict:
    """Decode frames and build one sample's inputs through the processor (no padding), labels masked."""
    frames, meta = load_video(row, max_frames, target_fps)
    inputs = build_inputs(processor, [read_messages(row["messages"])], [frames], [meta],
                          add_generation_prompt=False, padding_side="right")
    labels = mask_labels(inputs["input_ids"], inputs["attention_mask"], processor.tokenizer)
    return dict(input_ids=inputs["input_ids"][0], labels=labels[0], mm_token_type_ids=inputs["mm_token_type_ids"][0],
                pixel_values_videos=inputs["pixel_values_videos"], video_grid_thw=inputs["video_grid_thw"],
                sample_id=row["sample_id"])


class ManifestDataset(torch.utils.data.Dataset):
    """Manifest rows -> encoded samples, in DataLoader workers. Too long or undecodable: a counted drop."""

    def __init__(self, rows: list[dict], processor, max_length: int, max_frames: int = 0, target_fps: float = 2.0,
                 max_frame_tokens: int = 0):
        for row in rows[:1]:  # a whole manifest made before clip frames were stored: say so before training
            _clip_frames(row)
        self.rows, self.processor = rows, frame_budget(processor, max_frames, max_frame_tokens)
        self.max_length, self.max_frames, self.target_fps = max_length, max_frames, target_fps
        self.max_frame_tokens = max_frame_tokens

    def __len__(self) -> int:
        return len(self.rows)

    def lengths(self) -> list[int]:
        budget = self.processor if self.max_frame_tokens else None
        return [estimate_length(r, self.max_frames, self.target_fps, budget) for r in self.rows]

    def __getitem__(self, i: int) -> dict:
        row = self.rows[i]
        try:
            sample = encode_sample(self.processor, row, self.max_frames, self.target_fps)
        except Exception as e:  # a bad video must not stop training
            return dict(dropped="decode_failed", sample_id=row["sample_id"], why=f"{type(e).__name__}: {e}")
        n = int(sample["input_ids"].shape[0])
        if n > self.max_length:
            why = f"{n} tokens > max_length {self.max_length}"
            return dict(dropped="too_long", sample_id=row["sample_id"], why=why)
        return sample


# --- batching ------------------------------------------------------------------------------------------


def plan_batches(lengths: list[int], tokens_per_batch: int, max_batch_size: int, seed: int, epoch: int,
                 packing: bool = False, window: int = 64) -> list[list[int]]:
    """Token-budget batches for one epoch, from (seed, epoch) alone.

    Shuffle, then sort each window of ``window`` batches' worth of samples by length and cut greedily: a
    batch costs ``len * max_len`` tokens padded, or ``sum(len)`` packed. Batch order is shuffled again.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    span = max(1, window * max_batch_size)
    batches: list[list[int]] = []
    for w in range(0, len(order), span):
        chunk = sorted(order[w : w + span], key=lambda i: (-lengths[i], i))
        cur: list[int] = []
        for i in chunk:
            trial = cur + [i]
            cost = sum(lengths[j] for j in trial) if packing else len(trial) * max(lengths[j] for j in trial)
            if cur and (cost > tokens_per_batch or len(trial) > max_batch_size):
                batches.append(cur)
                trial = [i]
            cur = trial
        if cur:
            batches.append(cur)
    return [batches[k] for k in rng.permutation(len(batches)).tolist()]


def global_stream(plan, epoch: int = 0, offset: int = 0):
    """(epoch, index, batch) over epochs forever, starting at a saved data position."""
    while True:
        batches = plan(epoch)
        if not batches:
            raise ValueError("the mixture gives no batches; it has no samples")
        for i in range(offset, len(batches)):
            yield epoch, i, batches[i]
        epoch, offset = epoch + 1, 0


class RankBatches:
    """This process's micro-batches: global micro-batch k goes to rank k % world (a batch_sampler)."""

    def __init__(self, plan, position: tuple[int, int], rank: int, world: int):
        self.plan, self.position, self.rank, self.world = plan, position, rank, world

    def __iter__(self):
        for k, (_, _, batch) in enumerate(global_stream(self.plan, *self.position)):
            if k % self.world == self.rank:
                yield batch


class Position:
    """Walks the global stream in step-sized strides to know the data position after each step."""

    def __init__(self, plan, position: tuple[int, int], per_step: int):
        self._it = global_stream(plan, *position)
        self.per_step = per_step

    def advance(self) -> tuple[int, int]:
        epoch, i, _ = list(islice(self._it, self.per_step))[-1]
        return epoch, i + 1


class Collate:
    """Encoded samples -> one padded (or packed) batch plus counts: samples, dropped, tokens, padding."""

    def __init__(self, pad_id: int, packing: bool = False):
        self.pad_id, self.packing = pad_id, packing

    def __call__(self, items: list[dict]) -> dict:
        kept = [s for s in items if "dropped" not in s]
        dropped = [dict(sample_id=s["sample_id"], reason=s["dropped"], why=s["why"]) for s in items if "dropped" in s]
        lens = [int(s["input_ids"].shape[0]) for s in kept]
        stats = dict(samples=len(kept), dropped=dropped, tokens=sum(lens), label_tokens=0, padded_tokens=0)
        if not kept:
            return dict(inputs=None, stats=stats)
        rows = [kept] if self.packing else [[s] for s in kept]
        width = max(sum(int(s["input_ids"].shape[0]) for s in r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mm = torch.zeros((len(rows), width), dtype=kept[0]["mm_token_type_ids"].dtype)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, samples in enumerate(rows):
            n = sum(int(s["input_ids"].shape[0]) for s in samples)
            ids[r, :n] = torch.cat([s["input_ids"] for s in samples])
            labels[r, :n] = torch.cat([s["labels"] for s in samples])
            mm[r, :n] = torch.cat([s["mm_token_type_ids"] for s in samples])
            mask[r, :n] = 1
        inputs = dict(input_ids=ids, labels=labels, mm_token_type_ids=mm,
                      pixel_values_videos=torch.cat([s["pixel_values_videos"] for s in kept]),
                      video_grid_thw=torch.cat([s["video_grid_thw"] for s in kept]))
        if self.packing:  # no padding inside a packed row; positions restart per sample (see packed_positions)
            inputs["pack_lengths"] = torch.tensor(lens)
            inputs["pack_videos"] = torch.tensor([s["video_grid_thw"].shape[0] for s in kept])
        else:
            inputs["attention_mask"] = mask
        stats.update(label_tokens=int((labels[:, 1:] != IGNORE).sum()), padded_tokens=ids.numel())
        return dict(inputs=inputs, stats=stats)


def packed_positions(core_model, inputs: dict) -> dict:
    """Model inputs for a packed row: per-sample MRoPE positions (from the model's own ``get_rope_index``)
    with text positions that restart at each sample, so the causal mask keeps samples apart."""
    lens, n_videos = inputs.pop("pack_lengths").tolist(), inputs.pop("pack_videos").tolist()
    ids, mm, grids = inputs["input_ids"][0], inputs["mm_token_type_ids"][0], inputs["video_grid_thw"]
    parts, a, g = [], 0, 0
    for n, v in zip(lens, n_videos):
        rope, _ = core_model.get_rope_index(ids[None, a : a + n], mm[None, a : a + n],
                                            video_grid_thw=grids[g : g + v] if v else None)
        text = torch.arange(n, device=rope.device).view(1, 1, n)
        parts.append(torch.cat([text, rope], dim=0))
        a, g = a + n, g + v
    inputs["position_ids"] = torch.cat(parts, dim=2)
    return inputs


class SampleCollator:
    """Manifest rows -> one padded, label-masked batch, decoded in the calling process (tests, quick checks)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, rows: list[dict]):
        videos = [load_video(r) for r in rows]
        inputs = build_inputs(self.processor, [read_messages(r["messages"]) for r in rows], [v[0] for v in videos],
                              [v[1] for v in videos], add_generation_prompt=False, padding_side="right")
        inputs["labels"] = mask_labels(inputs["input_ids"], inputs["attention_mask"], self.processor.tokenizer)
        return inputs
