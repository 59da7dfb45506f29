"""Which attention the LLM runs, and what a packed row costs under each.

``attn_implementation`` (the config field) picks one:

- ``sdpa``: transformers' default. A packed row (or a padded batch with padding) gets its mask as a dense
  ``rows x L x L`` tensor; fine at 8K, not at 32K or 256K (``dense_mask_gib``).
- ``flash_attention_2``: CUDA with the flash-attn package. A packed row is one sequence whose text positions
  restart at each sample; transformers reads the resets as ``cu_seqlens`` and runs the variable-length kernel.
  No mask tensor.
- ``flex_attention``: torch's FlexAttention with a block mask built from the packed sequence ids (memory
  about ``(L/128)^2``). transformers does not list Qwen3-VL's text model for it, so it goes in through
  transformers' own extension point (``AttentionInterface`` / ``AttentionMaskInterface``) with transformers'
  own ``flex_attention_forward`` and ``flex_attention_mask``. FlexAttention has no backward on CPU
  (torch 2.14): on CPU it serves forward passes only.
- ``sdpa_varlen``: SDPA run once per packed sample (split where the text positions restart, causal inside
  each sample), so no mask tensor at all; CPU or GPU. The Qwen3-VL vision tower runs SDPA the same way over
  its frames.
- ``auto``: ``flash_attention_2`` on CUDA with flash-attn, ``flex_attention`` on CUDA without it,
  ``sdpa_varlen`` on CPU.

The vision tower always uses ``sdpa`` (per-frame blocks, small) unless flash attention is chosen.
"""

from __future__ import annotations

import importlib.util

import torch

CHOICES = ("auto", "sdpa", "flash_attention_2", "flex_attention", "sdpa_varlen")
FLEX_KEY = "densevid_flex"  # the registered name; one containing "flex_attention" would trip transformers' check
VARLEN_KEY = "sdpa_varlen"
DENSE = ("sdpa", "eager")


def has_flash_attn() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def resolve(choice: str, cuda: bool | None = None) -> str:
    """The implementation ``auto`` stands for on this machine (others are returned as they are)."""
    if choice != "auto":
        return choice
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda:
        return "flash_attention_2" if has_flash_attn() else "flex_attention"
    return "sdpa_varlen"


def model_kwarg(choice: str) -> dict:
    """``attn_implementation`` for ``from_pretrained``: per sub-config, registering our names first."""
    impl = resolve(choice)
    register()
    text = {"flex_attention": FLEX_KEY}.get(impl, impl)
    vision = "flash_attention_2" if impl == "flash_attention_2" else "sdpa"
    return {"attn_implementation": {"": text, "text_config": text, "vision_config": vision}}


def register() -> None:
    """Make ``densevid_flex`` and ``sdpa_varlen`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.integrations.flex_attention import flex_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask, flex_attention_mask

    AttentionInterface.register(FLEX_KEY, flex_attention_forward)
    AttentionMaskInterface.register(FLEX_KEY, flex_attention_mask)
    AttentionInterface.register(VARLEN_KEY, sdpa_varlen_forward)
    AttentionMaskInterface.register(VARLEN_KEY, flash_attention_mask)  # None, or the 2D padding mask: never L x L


def segments(position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, row: int,
             length: int) -> list[tuple[int, int]]:
    """[a, b) spans of one row that attend only within themselves: packed samples (text positions restart at
    0, read with transformers' ``prepare_fa_kwargs_from_position_ids``) or the unpadded prefix of a row."""
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    end = length
    if attention_mask is not None:
        valid = attention_mask[row].bool()
        end = int(valid.sum())
        if not valid[:end].all():
            raise ValueError("sdpa_varlen needs right padding (padding_side='right'), as training uses")
    if position_ids is None or end == 0:
        return [(0, end)] if end else []
    (cu, _), _ = prepare_fa_kwargs_from_position_ids(position_ids[row : row + 1, :end])
    cu = cu.tolist()
    return [(a, b) for a, b in zip(cu[:-1], cu[1:]) if b > a]


def sdpa_varlen_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                        position_ids=None, **kwargs):
    """An ``AttentionInterface`` function: causal SDPA over each packed sample separately.

    ``query/key/value`` are ``(batch, heads, L, head_dim)``; returns ``(batch, L, heads, head_dim)`` as
    transformers' sdpa function does. Positions past a row's padding come out as zeros (no label reads them).
    """
    b, heads, n, dim = query.shape
    gqa = key.shape[1] != heads
    rows = []
    for row in range(b):
        parts, end = [], 0
        for a, end in segments(position_ids, attention_mask, row, n):
            parts.append(torch.nn.functional.scaled_dot_product_attention(
                query[row : row + 1, :, a:end], key[row : row + 1, :, a:end], value[row : row + 1, :, a:end],
                dropout_p=dropout if module.training else 0.0, scale=scaling, is_causal=True, enable_gqa=gqa))
        if end < n:
            parts.append(query.new_zeros(1, heads, n - end, dim))
        rows.append(torch.cat(parts, dim=2) if len(parts) > 1 else parts[0])
    out = torch.cat(rows) if b > 1 else rows[0]
    return out.transpose(1, 2).contiguous(), None


def dense_mask_gib(impl: str, tokens_per_batch: int, max_length: int, packing: bool, element_bytes: int) -> float:
    """Largest attention mask one micro-batch builds, in GiB: ``rows x L x L`` booleans plus the additive
    copy SDPA makes of them (``element_bytes`` each). Packed: one row of up to ``tokens_per_batch``; padded:
    ``rows x L <= tokens_per_batch`` with ``L <= max_length``. Zero for the implementations without one."""
    if impl not in DENSE:
        return 0.0
    elements = tokens_per_batch ** 2 if packing else tokens_per_batch * max_length
    return elements * (1 + element_bytes) / 2 ** 30


def machine_gib() -> float:
    """Memory of the device training runs on: the GPU's, else this machine's RAM."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2 ** 30
    import os

    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
