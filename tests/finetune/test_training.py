"""Training on real decoded frames through the processor: LoRA learns, full fine-tune reaches every part,
adapters round-trip."""

import json

import numpy as np
import torch

from curation.store import Dataset
from finetune.data import IGNORE, SampleCollator, assistant_spans
from finetune.config import load_config
from finetune.modules import lora_target_regex
from finetune.train import train
from mixtures.balance import build_mixture
from mixtures.recipe import MixRecipe
from model.loader import load_model


def _batch(built_dataset, tiny_model, n=2):
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    rows = ds.sql("SELECT * FROM samples ORDER BY sample_id LIMIT ?", [n]).to_pylist()
    lm = load_model(tiny_model, device="cpu")
    return lm, SampleCollator(lm.processor)(rows)


def test_labels_cover_only_the_answer(built_dataset, tiny_model):
    lm, batch = _batch(built_dataset, tiny_model)
    tok = lm.processor.tokenizer
    for row in range(batch["input_ids"].shape[0]):
        kept = batch["labels"][row] != IGNORE
        text = tok.decode(batch["input_ids"][row][kept])
        assert text.endswith("<|im_end|>") and "<|video_pad|>" not in text and "user" not in text
        assert "seconds>" in text or text.startswith('{"entities": [{"phrase": ')  # segment_grounding's JSON


def test_assistant_spans_on_ids():
    assert assistant_spans([1, 7, 8, 5, 5, 9, 3], [7, 8], 9) == [(3, 6)]
    assert assistant_spans([7, 8, 4], [7, 8], 9) == [(2, 3)]


def test_lora_step_on_a_repeated_batch_lowers_the_loss(built_dataset, tiny_model):
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    lm, batch = _batch(built_dataset, tiny_model)
    torch.manual_seed(0)
    model = get_peft_model(lm.model, PeftLoraConfig(r=8, lora_alpha=16, target_modules=lora_target_regex(False)))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(12):
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5, losses


def test_full_recipe_changes_vision_merger_deepstack_and_llm(tiny_model, overrides, tmp_path):
    """`train()` with the `full` preset: every group's weights in the saved checkpoint differ from the base."""
    out = tmp_path / "full"
    train(load_config("full", overrides + [f"output_dir={out}", "max_steps=2", "optim.warmup_steps=0",
                                           "vision.lr=1e-2", "merger.lr=1e-2", "llm.lr=1e-2"]), log=lambda *_: None)
    watched = {
        "patch_embed": "model.visual.patch_embed.proj.weight",
        "vision": "model.visual.blocks.0.attn.qkv.weight",
        "merger": "model.visual.merger.linear_fc1.weight",
        "deepstack_merger": "model.visual.deepstack_merger_list.0.linear_fc1.weight",
        "llm": "model.language_model.layers.0.mlp.down_proj.weight",
        "lm_head": "lm_head.weight",
    }
    base = dict(load_model(tiny_model, device="cpu").model.named_parameters())
    tuned = dict(load_model(out, device="cpu").model.named_parameters())
    for k, name in watched.items():
        assert not torch.equal(base[name], tuned[name]), f"{k} ({name}) did not change"


def test_vision_lora_never_targets_the_patch_embedding(tiny_model):
    import re

    lm = load_model(tiny_model, device="cpu")
    pattern = re.compile(lora_target_regex(True))
    names = [n for n, _ in lm.model.named_modules()]
    hits = [n for n in names if pattern.fullmatch(n)]
    assert any("visual.blocks" in n for n in hits) and any("language_model" in n for n in hits)
    assert not any("patch_embed" in n or "merger" in n for n in hits)


def test_train_saves_an_adapter_that_reloads_to_the_same_logits(built_dataset, tiny_model, tmp_path, overrides):
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    mixture = build_mixture(ds, MixRecipe(name="all", split="", holdout=(), balance_by=()))
    out = tmp_path / "adapter"
    train(load_config("lora", overrides + [f"mixture={mixture}", f"output_dir={out}", "llm.lr=5e-3"]),
          log=lambda *_: None)
    assert (out / "adapter_config.json").exists() and (out / "processor_config.json").exists()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [0, 1, 2] and all(np.isfinite(m["loss"]) for m in metrics)
    _, batch = _batch(built_dataset, tiny_model, n=1)
    base = load_model(tiny_model, device="cpu")
    tuned = load_model(out, device="cpu")
    again = load_model(out, device="cpu")
    with torch.no_grad():
        a, b, c = (m.model(**batch).logits for m in (base, tuned, again))
    assert torch.allclose(b, c, atol=1e-6)
    assert not torch.allclose(a, b, atol=1e-4), "the adapter must change the model"
