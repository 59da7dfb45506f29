"""What trains in Qwen3-VL: module groups, freezing, per-group learning rates, LoRA targets, YaRN.

Three groups, by parameter name:

- ``vision``: the ViT (patch embedding, position embedding, blocks).
- ``merger``: ``visual.merger`` and ``visual.deepstack_merger_list.*``. The DeepStack mergers belong here, not
  with the vision encoder: like the main merger they project ViT features into the LLM's hidden size (they feed
  the first LLM layers), so they are the vision-language adapter that stage 0 aligns while both towers stay frozen.
- ``llm``: the language model, embeddings and ``lm_head``.
"""

from __future__ import annotations

import re

import torch

GROUPS = ("vision", "merger", "llm")
_GROUP_RE = {
    "merger": re.compile(r"visual\.(merger|deepstack_merger_list)\."),
    "vision": re.compile(r"visual\."),
    "llm": re.compile(r"(language_model\.|lm_head\.)"),
}

LLM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
VISION_TARGETS = r".*visual\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.linear_fc1|mlp\.linear_fc2)$"


def group_of(param_name: str) -> str:
    for g in ("merger", "vision", "llm"):  # merger before vision: its names contain "visual."
        if _GROUP_RE[g].search(param_name):
            return g
    raise ValueError(f"parameter {param_name} is in no module group (vision, merger, llm)")


def lora_target_regex(vision: bool, llm: bool = True) -> str:
    """LLM attention + MLP; optionally vision attention + MLP. Never the patch embedding or the mergers."""
    parts = ([LLM_TARGETS] if llm else []) + ([VISION_TARGETS] if vision else [])
    return "|".join(f"({p})" for p in parts)


def merger_module_names(model) -> list[str]:
    """The merger and each DeepStack merger, as names PEFT's ``modules_to_save`` matches (by suffix)."""
    n = len(model.config.vision_config.deepstack_visual_indexes)
    return ["visual.merger"] + [f"visual.deepstack_merger_list.{i}" for i in range(n)]


def yarn_rope(rope_parameters: dict, factor: float, original_max_position: int) -> dict:
    """Text rope parameters with YaRN on top, keeping interleaved MRoPE sections."""
    return {**rope_parameters, "rope_type": "yarn", "factor": float(factor),
            "original_max_position_embeddings": int(original_max_position)}


def set_trainable(model, cfg) -> None:
    """Full fine-tune: a parameter trains when its group's ``train`` is on."""
    for name, p in model.named_parameters():
        p.requires_grad_(getattr(cfg, group_of(name)).train)


def wrap_lora(model, cfg):
    """LoRA on the LLM and/or vision attention + MLP; the mergers train whole through ``modules_to_save``."""
    from peft import LoraConfig, get_peft_model

    from model.loader import peft_wrapping

    peft_cfg = LoraConfig(
        r=cfg.lora.rank, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=lora_target_regex(cfg.vision.train, cfg.llm.train),
        modules_to_save=merger_module_names(model) if cfg.merger.train else None,
    )
    with peft_wrapping():
        model = get_peft_model(model, peft_cfg)
    for p in model.parameters():  # trained copies (adapters, merger) in fp32 even over a bf16 base
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


def param_groups(model, cfg) -> list[dict]:
    """One optimizer group per module group with its own lr; no weight decay on norms and biases."""
    buckets: dict[tuple[str, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = p.ndim >= 2
            buckets.setdefault((group_of(name), decay), []).append(p)
    return [dict(params=ps, lr=cfg.lr_of(g), base_lr=cfg.lr_of(g), name=f"{g}{'' if d else '_no_decay'}",
                 weight_decay=cfg.optim.weight_decay if d else 0.0)
            for (g, d), ps in sorted(buckets.items())]


def count_params(model) -> dict[str, int]:
    counts = {f"{g}_trainable": 0 for g in GROUPS}
    total = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if p.requires_grad:
            counts[f"{group_of(name)}_trainable"] += p.numel()
    counts["trainable"] = sum(counts[f"{g}_trainable"] for g in GROUPS)
    counts["total"] = total
    return counts


def enable_checkpointing(model, reentrant: bool) -> None:
    """Gradient checkpointing on the ViT blocks and LLM layers.

    With reentrant checkpointing a block whose inputs do not require grad returns no gradients to the LoRA
    weights inside it; the patch embedding and token embedding are frozen under LoRA, so their outputs are
    made to require grad.
    """
    base = _hf_model(model)
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    make_inputs_require_grad(base)


def make_inputs_require_grad(base) -> list:
    def hook(_module, _inputs, output):
        output.requires_grad_(True)

    return [base.model.visual.patch_embed.register_forward_hook(hook),
            base.get_input_embeddings().register_forward_hook(hook)]


def _hf_model(model):
    """The Qwen3VLForConditionalGeneration inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def weight_dtype(cfg, device: str) -> torch.dtype:
    """bf16 storage only for a frozen base under LoRA on GPU; trained weights stay fp32 (autocast does bf16)."""
    if use_bf16(cfg, device) and cfg.method == "lora":
        return torch.bfloat16
    return torch.float32


def use_bf16(cfg, device: str) -> bool:
    return cfg.precision == "bf16" or (cfg.precision == "auto" and device.startswith("cuda"))
