"""Schema-constrained generation with xgrammar on transformers ``generate``.

The grammar guarantees parseable JSON even from a random model; string fields are bounded by patterns
so a generation always terminates. Content is still validated by the caller.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache

TEXT = "^[A-Za-z0-9 ,.;:'()-]{1,%d}$"
MAX_TEXT = 120  # xgrammar fails to compile much longer bounded repetitions


def text_field(max_len: int) -> dict:
    if max_len > MAX_TEXT:
        raise ValueError(f"text fields are limited to {MAX_TEXT} characters, got {max_len}")
    return {"type": "string", "pattern": TEXT % max_len}


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


class GrammarCache:
    """Compiles each JSON schema once per tokenizer."""

    def __init__(self, tokenizer, vocab_size: int):
        import xgrammar as xgr

        self._info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(self._info)

    @lru_cache(maxsize=32)
    def compile(self, schema_json: str):
        return self._compiler.compile_json_schema(schema_json, any_whitespace=False)


def generate_json(model, processor, inputs, schema: dict | list[dict], grammars: GrammarCache,
                  decoding: Decoding) -> list[str]:
    """Generate one JSON text per batch row, constrained to ``schema`` (or to one schema per row)."""
    import torch
    import xgrammar as xgr

    n = inputs["input_ids"].shape[0]
    schemas = schema if isinstance(schema, list) else [schema] * n
    compiled = [grammars.compile(json.dumps(s)) for s in schemas]  # key order is the order generated
    device = next(model.parameters()).device
    inputs = inputs.to(device)
    logits_processor = xgr.contrib.hf.LogitsProcessor(compiled)
    kwargs = dict(max_new_tokens=decoding.max_new_tokens, do_sample=decoding.do_sample)
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
        kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p)
    with torch.no_grad():
        out = model.generate(**inputs, logits_processor=[logits_processor], **kwargs)
    new = out[:, inputs["input_ids"].shape[1]:]
    return processor.tokenizer.batch_decode(new, skip_special_tokens=True)
