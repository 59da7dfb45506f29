import json

import numpy as np

from model.inputs import build_inputs, user_video_message, video_metadata
from model.loader import load_model
from model.structured import Decoding, GrammarCache, generate_json
from synth.captions import CAPTION_SCHEMA, validate_caption
from synth.grounding import grounding_schema


def test_random_tiny_model_returns_schema_valid_json_in_a_batch(tiny_model):
    lm = load_model(tiny_model, device="cpu")
    grammars = GrammarCache(lm.processor.tokenizer, lm.model.config.get_text_config().vocab_size)
    frames = np.random.default_rng(1).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    md = video_metadata([0, 8, 16, 24], 24.0, 48, 64, 64)
    inputs = build_inputs(lm.processor, [[user_video_message("Caption.")]] * 2 + [[user_video_message("Other words.")]],
                          [frames, frames[:2], frames], [md, video_metadata([0, 8], 24.0, 48, 64, 64), md])
    for seed, sample in ((0, False), (1, True)):
        outs = generate_json(lm.model, lm.processor, inputs, CAPTION_SCHEMA, grammars,
                             Decoding(max_new_tokens=400, do_sample=sample, seed=seed))
        assert len(outs) == 3
        for out in outs:
            assert not out.truncated
            summary, details = validate_caption(json.loads(out.text))
            assert 1 <= len(summary) <= 100 and details.startswith("people: ")


def test_grounding_schema_bounds_times_to_the_segment():
    schema = grounding_schema(2.5, 7.25)
    t = schema["properties"]["entities"]["items"]["properties"]["start_s"]
    assert (t["minimum"], t["maximum"]) == (2.5, 7.25)


def test_vllm_backend_is_import_guarded():
    from model import vllm_backend

    if vllm_backend.available():
        return  # a GPU machine with vLLM: exercised there, not in CI
    import pytest

    with pytest.raises(ValueError, match="densevid\\[vllm\\]"):
        vllm_backend.VllmEngine("Qwen/Qwen3-VL-2B-Instruct")


def test_the_token_budget_follows_from_the_schema_bounds():
    import pytest

    from model.structured import max_json_chars, text_field, token_budget

    obj = {"type": "object", "properties": {"a": text_field(5), "n": {"type": "integer", "minimum": 0, "maximum": 1000}}}
    assert max_json_chars(obj) == len('{"a":"xxxxx","n":1000}') == 22
    arr = {"type": "array", "items": obj, "maxItems": 3}
    assert max_json_chars(arr) == 2 + 2 + 3 * 22
    assert token_budget([obj, arr]) == 70 + 1  # the longest output and the end-of-turn token
    with pytest.raises(ValueError, match="maxItems"):
        max_json_chars({"type": "array", "items": obj})
    with pytest.raises(ValueError, match="no length bound"):
        max_json_chars({"type": "string"})


def test_an_output_cut_off_by_the_token_limit_is_flagged(tiny_model):
    lm = load_model(tiny_model, device="cpu")
    grammars = GrammarCache(lm.processor.tokenizer, lm.model.config.get_text_config().vocab_size)
    frames = np.random.default_rng(1).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    inputs = build_inputs(lm.processor, [[user_video_message("Caption.")]], [frames],
                          [video_metadata([0, 8], 24.0, 48, 64, 64)])
    cut = generate_json(lm.model, lm.processor, inputs, CAPTION_SCHEMA, grammars, Decoding(max_new_tokens=5))[0]
    assert cut.truncated and len(lm.processor.tokenizer(cut.text)["input_ids"]) <= 5
    whole = generate_json(lm.model, lm.processor, inputs, CAPTION_SCHEMA, grammars, Decoding())[0]
    assert not whole.truncated and validate_caption(json.loads(whole.text))
