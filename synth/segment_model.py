"""A stage that asks the model about each segment: frames -> prompt -> schema-constrained JSON -> rows.

Captioning and grounding differ only in prompt, schema and how the JSON becomes rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from curation.frames import FramePolicy, fit_pixels, sample_indices
from curation.stage import Resources, Stage, Stats, fail_item
from curation.store import Dataset
from curation.video import read_frames
from model.inputs import build_inputs, user_video_message, video_metadata, visual_tokens
from model.loader import model_key
from model.structured import Decoding, Generated, GrammarCache, generate_json, token_budget


def pack_by_budget(sized: list[tuple[int, dict]], max_items: int, budget: int) -> list[list[dict]]:
    """Greedy packing in the given order; an item over the budget on its own still gets a batch."""
    batches, current, used = [], [], 0
    for cost, item in sized:
        if current and (len(current) >= max_items or used + cost > budget):
            batches.append(current)
            current, used = [], 0
        current.append(item)
        used += cost
    if current:
        batches.append(current)
    return batches


class InvalidOutput(ValueError):
    """The model's output parsed but broke a rule (time outside the segment, bad box...)."""

    def __init__(self, message: str, raw: str = ""):
        super().__init__(message)
        self.raw = raw


class OutputTruncated(InvalidOutput):
    """Generation stopped at ``max_new_tokens`` before the JSON was complete."""


@dataclass
class SegmentModelStage(Stage):
    """Asks the model one question per segment, with a JSON schema per row.

    Fields: ``model_id`` hub id or local checkpoint; ``prompt_name`` the versioned prompt; ``frames`` the
    frame budget per segment; ``decoding`` the generation settings; ``max_retries`` sampled retries of an
    output that breaks a rule; ``batch_size`` and ``max_batch_visual_tokens`` bound one generate call;
    ``backend`` transformers or vllm.
    """

    model_id: str = ""
    prompt_name: str = ""
    frames: FramePolicy = field(default_factory=lambda: FramePolicy(max_frames=16))
    decoding: Decoding = field(default_factory=Decoding)
    max_retries: int = 2
    batch_size: int = 4
    max_batch_visual_tokens: int = 16384  # per generate call, so a batch of long segments fits in memory
    backend: str = "transformers"  # or "vllm" (GPU)
    vllm_max_model_len: int = 32768
    vllm_gpu_memory: float = 0.85  # share of the GPU's memory the vLLM engine takes
    resources = Resources(cpus=1, gpus=1)
    item_column = "segment_id"

    @property
    def variant(self) -> str:
        """Another model or prompt asks about the segments again."""
        return f"{self.model_name}|{self.prompt_name}"

    def setup(self, ds: Dataset) -> None:
        from model.loader import shared_model
        from synth.prompts import load_prompt

        self.engine = None
        if self.prompt_name:  # a stage that builds its questions itself (``question``) has no prompt file
            self.prompt_version, self.template = load_prompt(self.prompt_name)
        if self.backend == "vllm":  # vLLM holds the weights; we keep only the processor
            from model.loader import LoadedModel, load_processor, model_revision
            from model.vllm_backend import shared_engine

            self.engine = shared_engine(self.model_id, self.vllm_max_model_len, self.vllm_gpu_memory)
            self.lm = LoadedModel(None, load_processor(self.model_id), str(self.model_id), model_revision(self.model_id))
            return
        self.lm = shared_model(self.model_id)
        vocab = self.lm.model.config.get_text_config().vocab_size
        self.grammars = GrammarCache(self.lm.processor.tokenizer, vocab)

    @property
    def model_name(self) -> str:
        return model_key(self.model_id)

    def items(self, ds: Dataset) -> list[dict]:
        videos = {v["video_id"]: v for v in ds.rows("videos")}
        out = []
        for s in ds.rows("segments"):
            v = videos.get(s["video_id"])
            if v:
                out.append(dict(s, item_id=s["segment_id"], uri=v["uri"], fps=v["fps"], n_frames=v["n_frames"],
                                width=v["width"], height=v["height"]))
        return out

    def schema(self, seg: dict) -> dict:
        raise NotImplementedError

    def frame_policy(self, seg: dict) -> FramePolicy:
        """The frame budget this item is asked over (a stage may ask some items over more frames)."""
        return self.frames

    def visual_tokens(self, seg: dict) -> int:
        n = len(sample_indices(seg["start_frame"], seg["end_frame"], seg["fps"], self.frame_policy(seg)))
        return visual_tokens(self.processor, n, seg["height"], seg["width"])

    @property
    def processor(self):
        """The loaded model's processor; before ``setup`` (a cluster's driver planning batches) the processor
        alone, without the weights."""
        if getattr(self, "lm", None) is not None:
            return self.lm.processor
        if getattr(self, "_processor", None) is None:
            from model.loader import load_processor

            self._processor = load_processor(self.model_id)
        return self._processor

    def make_batches(self, pending: list[dict]) -> list[list[dict]]:
        """Similar sizes together (less padding), at most ``batch_size`` items and the visual-token budget."""
        sized = sorted(((self.visual_tokens(seg), seg) for seg in pending), key=lambda x: -x[0])
        return pack_by_budget(sized, self.batch_size, self.max_batch_visual_tokens)

    def to_rows(self, seg: dict, parsed: dict, raw: str, frames_used: list[int]) -> list[dict]:
        raise NotImplementedError

    def question(self, seg: dict) -> str:
        """What the model is asked about this item: the prompt file filled with the segment's span."""
        return self.template.format(start_s=seg["start_s"], end_s=seg["end_s"])

    def schema_budget(self, schemas: list[dict]) -> int:
        """New tokens that fit the longest output the schemas allow (used when max_new_tokens is 0)."""
        return token_budget(schemas)

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        prepared = [self._prepare(seg) for seg in batch]
        pending = list(range(len(batch)))
        rows: dict[int, list[dict]] = {}
        errors: dict[int, InvalidOutput] = {}
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            decoding = self.decoding if attempt == 0 else replace(self.decoding, do_sample=True, seed=attempt)
            outs = self._generate([prepared[i] for i in pending], decoding)
            still = []
            for i, out in zip(pending, outs):
                try:
                    rows[i] = self._rows_of(batch[i], out, prepared[i]["indices"], decoding)
                except InvalidOutput as e:
                    errors[i] = e
                    still.append(i)
            stats.add("retries", len(still) if attempt < self.max_retries else 0)
            pending = still
        for i in pending:
            fail_item(self, ds, stats, batch[i]["item_id"], errors[i], errors[i].raw)
        stats.add("items", len(batch))
        return [r for i in sorted(rows) for r in rows[i]]

    def _rows_of(self, seg: dict, out: Generated, indices: list[int], decoding: Decoding) -> list[dict]:
        """Rows from one output, or InvalidOutput naming what is wrong (a cut-off output says so)."""
        where = f"segment {seg['segment_id']}"
        if out.truncated:
            budget = decoding.max_new_tokens or self.schema_budget([self.schema(seg)])
            raise OutputTruncated(f"{where}: output cut off at max_new_tokens={budget} before its JSON closed; "
                                  "raise --max-new-tokens (0 sizes it from the schema's bounds)", out.text)
        try:
            return self.to_rows(seg, json.loads(out.text), out.text, indices)
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidOutput(f"{where}: {e}", out.text) from e

    def _prepare(self, seg: dict) -> dict:
        policy = self.frame_policy(seg)
        idx = sample_indices(seg["start_frame"], seg["end_frame"], seg["fps"], policy)
        frames = fit_pixels(read_frames(seg["uri"], idx), policy.max_pixels)
        md = video_metadata(idx, seg["fps"], seg["n_frames"], seg["width"], seg["height"])
        return dict(indices=idx, frames=frames, metadata=md, conversation=[user_video_message(self.question(seg))],
                    seg=seg)

    def _generate(self, prepared: list[dict], decoding: Decoding) -> list[Generated]:
        """One batched call; each row has its own schema (grounding bounds times to its segment)."""
        schemas = [self.schema(p["seg"]) for p in prepared]
        decoding = replace(decoding, max_new_tokens=decoding.max_new_tokens or self.schema_budget(schemas))
        if self.engine is not None:
            return self.engine.generate_json(self.lm.processor, prepared, schemas, decoding)
        inputs = build_inputs(self.lm.processor, [p["conversation"] for p in prepared],
                              [p["frames"] for p in prepared], [p["metadata"] for p in prepared])
        return generate_json(self.lm.model, self.lm.processor, inputs, schemas, self.grammars, decoding)
