"""Resuming a LoRA run loads every adapter weight, or says which weights do not fit and what to do."""

import pytest
import torch

from finetune.config import LoraOpts, ModuleOpts, TrainConfig
from finetune.train import build_model


def _cfg(tiny_model, vision=False, merger=False, rank=4):
    return TrainConfig(model=str(tiny_model), vision=ModuleOpts(train=vision), merger=ModuleOpts(train=merger),
                       lora=LoraOpts(rank=rank, alpha=2 * rank), tensorboard=False)


def _saved_adapter(cfg, ckpt):
    """A checkpoint folder whose model/ holds an adapter with random (not initial) weights."""
    torch.manual_seed(0)
    model, _ = build_model(cfg)
    for p in model.parameters():
        if p.requires_grad:
            p.data.normal_()
    model.save_pretrained(ckpt / "model")
    return ckpt, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_the_same_settings_load_every_adapter_weight(tiny_model, tmp_path):
    cfg = _cfg(tiny_model, vision=True, merger=True)
    ckpt, trained = _saved_adapter(cfg, tmp_path / "ckpt")
    model, _ = build_model(cfg, resume_from=ckpt)
    loaded = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert loaded.keys() == trained.keys() and any("modules_to_save" in n for n in loaded)
    assert all(torch.equal(loaded[n], trained[n]) for n in trained)


def test_an_adapter_that_does_not_fit_names_the_weights_and_the_way_out(tiny_model, tmp_path):
    llm_only, _ = _saved_adapter(_cfg(tiny_model), tmp_path / "llm-only")
    with pytest.raises(ValueError) as e:
        build_model(_cfg(tiny_model, vision=True, merger=True), resume_from=llm_only)
    msg = str(e.value)
    assert "missing from the file" in msg and "visual.blocks.0.attn" in msg and "lora.rank" in msg
    assert "not in the model" not in msg

    with_vision, _ = _saved_adapter(_cfg(tiny_model, vision=True), tmp_path / "vision")
    with pytest.raises(ValueError, match=r"in the file but not in the model \(.*visual\.blocks\.0\.attn"):
        build_model(_cfg(tiny_model), resume_from=with_vision)

    with pytest.raises(ValueError, match=r"of another shape \(.*lora_A"):
        build_model(_cfg(tiny_model, rank=8), resume_from=llm_only)
