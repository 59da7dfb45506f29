import numpy as np
import torch

from model.inputs import build_inputs, user_video_message, video_metadata
from model.loader import load_model, load_processor

GOLDEN = (
    "<|im_start|>user\n"
    "<0.5 seconds><|vision_start|>" + "<|video_pad|>" * 4 + "<|vision_end|>"
    "<1.5 seconds><|vision_start|>" + "<|video_pad|>" * 4 + "<|vision_end|>"
    "When?<|im_end|>\n<|im_start|>assistant\n"
)


def test_golden_video_prompt_layout(tiny_model):
    processor = load_processor(tiny_model)
    frames = np.zeros((4, 64, 64, 3), np.uint8)
    # frames 6, 18 | 30, 42 at 24 fps: the processor writes the mean time of each pair
    inputs = build_inputs(processor, [[user_video_message("When?")]], [frames],
                          [video_metadata([6, 18, 30, 42], 24.0, 48, 64, 64)])
    assert processor.tokenizer.decode(inputs["input_ids"][0]) == GOLDEN
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]


def test_tiny_checkpoint_is_real_qwen3_vl(tiny_model):
    lm = load_model(tiny_model, device="cpu")
    cfg = lm.model.config
    assert type(lm.model).__name__ == "Qwen3VLForConditionalGeneration"
    assert list(cfg.vision_config.deepstack_visual_indexes) == [0, 1]
    assert cfg.text_config.rope_parameters["mrope_interleaved"] is True
    tok = lm.processor.tokenizer
    for special in ("<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>"):
        assert tok.convert_tokens_to_ids(special) != tok.unk_token_id
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1
    assert type(lm.processor).__name__ == "Qwen3VLProcessor"
    assert lm.revision.startswith("local-")


def test_forward_on_video_gives_finite_logits(tiny_model):
    lm = load_model(tiny_model, device="cpu")
    frames = np.random.default_rng(0).integers(0, 255, (4, 64, 96, 3), dtype=np.uint8)
    inputs = build_inputs(lm.processor, [[user_video_message("Describe.")]], [frames],
                          [video_metadata([0, 12, 24, 36], 24.0, 48, 96, 64)])
    with torch.no_grad():
        logits = lm.model(**inputs).logits
    assert logits.shape[:2] == inputs["input_ids"].shape and torch.isfinite(logits).all()
