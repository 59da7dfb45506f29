"""Build a tiny Qwen3-VL checkpoint offline: real architecture, few layers, random weights.

The tokenizer is a small byte-level BPE trained here, with every special token Qwen uses, so the
real Qwen3-VL processor classes and chat template work on it unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2's pre-tokenizer split: digits one by one, words with a leading space.
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# The Qwen3-VL chat template, reduced to what densevid sends: text, images and videos in user turns.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = """
Describe the video. Summarize the main event in one sentence, then list the people, objects,
background and actions. Answer in JSON. When does the red square move? The blue circle enters from
the left at 3.0 seconds and leaves at 7.5 seconds. A person picks up a cup in the kitchen.
The camera pans across a street; cars drive by; a green triangle slides down the screen.
summary details people objects background actions phrase action start end boxes bbox_2d seconds
instructional cinematic egocentric scene shape square circle triangle moving static fade black white
yellow purple orange cyan magenta gray dark bright left right top bottom center enters leaves appears
"""


def train_tokenizer(vocab_size: int = 600) -> Tokenizer:
    """A byte-level BPE with Qwen's pre-tokenizer and special tokens."""
    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = _CORPUS.split("\n") + ['{"summary": "', '", "details": "', "<12.5 seconds>", "0123456789"]
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    return tok


# The default sizes: small widths, 2 vision blocks with DeepStack on both, 2 text layers.
TINY_SIZES = dict(vision_depth=2, vision_hidden=32, vision_intermediate=64, vision_heads=2, text_hidden=64,
                  text_intermediate=128, text_layers=2, text_heads=4, text_kv_heads=2, head_dim=16,
                  mrope_section=(2, 3, 3), frame_tokens=16)

# Wider and deeper, for the learning checks on synth.world: the random vision tower must learn colours and the
# text layers must tie a frame to the `<t seconds>` marker before it.
WORLD_SIZES = dict(TINY_SIZES, vision_hidden=64, vision_intermediate=128, vision_heads=4, text_hidden=128,
                   text_intermediate=256, text_layers=4, head_dim=32, mrope_section=(4, 6, 6))


def tiny_config_kwargs(vocab_size: int, specials: dict[str, int], **sizes) -> dict:
    """Qwen3-VL config fields at ``TINY_SIZES`` (any of them overridden by ``sizes``), interleaved MRoPE."""
    unknown = set(sizes) - set(TINY_SIZES)
    if unknown:
        raise ValueError(f"unknown tiny model sizes {sorted(unknown)}; known: {', '.join(TINY_SIZES)}")
    z = dict(TINY_SIZES, **sizes)
    if sum(z["mrope_section"]) * 2 != z["head_dim"]:
        raise ValueError(f"mrope_section {z['mrope_section']} must sum to head_dim / 2 = {z['head_dim'] // 2}")
    return dict(
        vision_config=dict(
            depth=z["vision_depth"],
            hidden_size=z["vision_hidden"],
            intermediate_size=z["vision_intermediate"],
            num_heads=z["vision_heads"],
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=z["text_hidden"],
            num_position_embeddings=256,
            deepstack_visual_indexes=list(range(min(2, z["vision_depth"]))),
        ),
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=z["text_hidden"],
            intermediate_size=z["text_intermediate"],
            num_hidden_layers=z["text_layers"],
            num_attention_heads=z["text_heads"],
            num_key_value_heads=z["text_kv_heads"],
            head_dim=z["head_dim"],
            max_position_embeddings=32768,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": list(z["mrope_section"]),  # sums to head_dim / 2
                "mrope_interleaved": True,
            },
            pad_token_id=specials["<|endoftext|>"],
        ),
        image_token_id=specials["<|image_pad|>"],
        video_token_id=specials["<|video_pad|>"],
        vision_start_token_id=specials["<|vision_start|>"],
        vision_end_token_id=specials["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_checkpoint(out_dir: str | Path, seed: int = 0, **sizes) -> Path:
    """Write a loadable tiny Qwen3-VL checkpoint (model, tokenizer, processor) to ``out_dir``; ``sizes``
    override ``TINY_SIZES`` (e.g. ``**WORLD_SIZES``)."""
    from transformers import (
        GenerationConfig,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    raw = json.loads(train_tokenizer().to_str())
    vocab, merges = raw["model"]["vocab"], raw["model"]["merges"]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=QWEN_SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )
    specials = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    vocab_size = len(tokenizer)
    # Pixel budgets sized for tiny frames: 32x32 patches after merging -> a few tokens per frame.
    video_processor = Qwen3VLVideoProcessor(
        size={"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 4 * 256},
        cap_pixels_per_frame=True,
        max_video_tokens=sizes.get("frame_tokens", TINY_SIZES["frame_tokens"]),
    )
    image_processor = Qwen2VLImageProcessor(
        size={"shortest_edge": 32 * 32 * 4, "longest_edge": 32 * 32 * 64}, patch_size=16, merge_size=2
    )
    processor = Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    torch.manual_seed(seed)
    config = Qwen3VLConfig(**tiny_config_kwargs(vocab_size, specials, **sizes))
    model = Qwen3VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[specials["<|im_end|>"], specials["<|endoftext|>"]],
        pad_token_id=specials["<|endoftext|>"],
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
