"""Schema-constrained generation with xgrammar on transformers ``generate``.

The grammar guarantees parseable JSON even from a random model; string fields are bounded by patterns
so a generation always terminates. Content is still validated by the caller.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache

TEXT = "^[A-Za-z0-9 ,.;:'()-]{1,%d}$"
MAX_TEXT = 120  # xgrammar fails to compile much longer bounded repetitions
NUMBER_CHARS = 24  # room for a JSON number: sign, digits, point, decimals


def text_field(max_len: int) -> dict:
    if max_len > MAX_TEXT:
        raise ValueError(f"text fields are limited to {MAX_TEXT} characters, got {max_len}")
    return {"type": "string", "pattern": TEXT % max_len}


def max_json_chars(schema: dict) -> int:
    """The longest compact JSON text ``schema`` allows (numbers counted as ``NUMBER_CHARS``).

    Every token is at least one character, so this bounds the tokens a constrained generation needs.
    Raises ValueError for a schema without bounds (a string without a length, an array without maxItems).
    """
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return 2 + max(0, len(props) - 1) + sum(len(json.dumps(k)) + 1 + max_json_chars(v) for k, v in props.items())
    if kind == "array":
        if "maxItems" not in schema:
            raise ValueError("an array without maxItems has no length bound")
        n = schema["maxItems"]
        return 2 + max(0, n - 1) + n * max_json_chars(schema["items"])
    if kind == "string":
        return 2 + _string_chars(schema)
    if kind == "integer" and "minimum" in schema and "maximum" in schema:
        return max(len(str(int(schema["minimum"]))), len(str(int(schema["maximum"]))))
    if kind in ("number", "integer"):
        return NUMBER_CHARS
    raise ValueError(f"no length bound for schema type {kind!r}")


def _string_chars(schema: dict) -> int:
    if "maxLength" in schema:
        return int(schema["maxLength"])
    bound = re.search(r"\{\d*,(\d+)\}\$?$", schema.get("pattern", ""))
    if not bound:
        raise ValueError(f"a string without maxLength or a bounded pattern has no length bound: {schema}")
    return int(bound.group(1))


def token_budget(schemas: list[dict]) -> int:
    """New tokens enough for any output the schemas allow, plus the end-of-turn token."""
    return max(max_json_chars(s) for s in schemas) + 1


@dataclass(frozen=True)
class Generated:
    """One constrained generation: its text, and whether ``max_new_tokens`` stopped it before the end."""

    text: str
    truncated: bool = False


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 0  # 0: enough for the longest output the schema allows (``token_budget``)
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
                  decoding: Decoding) -> list[Generated]:
    """Generate one JSON text per batch row, constrained to ``schema`` (or to one schema per row)."""
    import torch
    import xgrammar as xgr

    n = inputs["input_ids"].shape[0]
    schemas = schema if isinstance(schema, list) else [schema] * n
    compiled = [grammars.compile(json.dumps(s)) for s in schemas]  # key order is the order generated
    device = next(model.parameters()).device
    inputs = inputs.to(device)
    logits_processor = xgr.contrib.hf.LogitsProcessor(compiled)
    kwargs = dict(max_new_tokens=decoding.max_new_tokens or token_budget(schemas), do_sample=decoding.do_sample)
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
        kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p)
    with torch.no_grad():
        out = model.generate(**inputs, logits_processor=[logits_processor], **kwargs)
    new = out[:, inputs["input_ids"].shape[1]:]
    texts = processor.tokenizer.batch_decode(new, skip_special_tokens=True)
    ended = _ended_rows(new, model.generation_config.eos_token_id)
    return [Generated(t, truncated=not e) for t, e in zip(texts, ended)]


def _ended_rows(new_tokens, eos_token_id) -> list[bool]:
    """Whether each row produced an end token (the grammar allows one only once the JSON is complete)."""
    eos = set(eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])
    return [any(int(t) in eos for t in row) for row in new_tokens]
