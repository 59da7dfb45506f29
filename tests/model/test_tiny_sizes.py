"""The tiny checkpoint builder's sizes: defaults as before, WORLD_SIZES wider and deeper, bad sizes refused."""

import pytest

from model.tiny import QWEN_SPECIAL_TOKENS, TINY_SIZES, WORLD_SIZES, build_tiny_checkpoint, tiny_config_kwargs

SPECIALS = {t: i for i, t in enumerate(QWEN_SPECIAL_TOKENS)}


def test_default_sizes_are_the_small_ones():
    kw = tiny_config_kwargs(600, SPECIALS)
    assert (kw["text_config"]["hidden_size"], kw["text_config"]["num_hidden_layers"]) == (64, 2)
    assert (kw["vision_config"]["hidden_size"], kw["vision_config"]["depth"]) == (32, 2)
    assert kw["vision_config"]["deepstack_visual_indexes"] == [0, 1]
    assert kw["text_config"]["rope_parameters"]["mrope_section"] == [2, 3, 3]


def test_world_sizes_build_a_loadable_checkpoint(tmp_path):
    from transformers import AutoConfig

    from model.loader import load_processor

    out = build_tiny_checkpoint(tmp_path / "w", **WORLD_SIZES)
    cfg = AutoConfig.from_pretrained(out)
    assert (cfg.text_config.hidden_size, cfg.text_config.num_hidden_layers, cfg.text_config.head_dim) == (128, 4, 32)
    assert (cfg.vision_config.hidden_size, cfg.vision_config.out_hidden_size) == (64, 128)
    assert load_processor(out).video_processor.max_video_tokens == WORLD_SIZES["frame_tokens"]


def test_bad_sizes_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown tiny model sizes \['text_width'\]"):
        tiny_config_kwargs(600, SPECIALS, text_width=3)
    with pytest.raises(ValueError, match="must sum to head_dim / 2 = 16"):
        tiny_config_kwargs(600, SPECIALS, head_dim=32)
    assert set(WORLD_SIZES) == set(TINY_SIZES)
