"""LoRA fine-tune of Qwen3-VL on a mixture manifest. The loop reads top to bottom."""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

LLM_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
VISION_TARGETS = r".*visual\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.linear_fc1|mlp\.linear_fc2)$"


@dataclass
class LoraConfig:
    model: str = "Qwen/Qwen3-VL-2B-Instruct"
    mixture: str = ""
    output_dir: str = "runs/lora"
    max_steps: int = 20
    batch_size: int = 1
    lr: float = 1e-3
    warmup_steps: int = 2
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    vision_lora: bool = False
    train_merger: bool = False
    seed: int = 0
    log_every: int = 1

    def problems(self) -> list[str]:
        out = []
        if not self.mixture:
            out.append("mixture is empty; pass the folder `densevid mix` wrote (<data>/mixtures/<name>)")
        if self.max_steps < 1:
            out.append(f"max_steps {self.max_steps} < 1")
        if self.batch_size < 1:
            out.append(f"batch_size {self.batch_size} < 1")
        return out


def lora_target_regex(vision: bool) -> str:
    """LLM attention + MLP; optionally vision attention + MLP. Never the patch embedding."""
    return f"({LLM_TARGETS})|({VISION_TARGETS})" if vision else LLM_TARGETS


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_lora(cfg: LoraConfig, log=print) -> dict:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from finetune.data import SampleCollator
    from mixtures.balance import read_manifest
    from model.loader import load_model

    problems = cfg.problems()
    if problems:
        raise ValueError("bad training config:\n  " + "\n  ".join(problems))
    seed_everything(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    # model + adapter
    lm = load_model(cfg.model)
    model, processor = lm.model, lm.processor
    peft_cfg = PeftLoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=lora_target_regex(cfg.vision_lora),
        modules_to_save=["visual.merger"] if cfg.train_merger else None,
    )
    model = get_peft_model(model, peft_cfg)
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")

    # data: the manifest, shuffled by seed, cycled for max_steps
    rows = [r for r in read_manifest(cfg.mixture)]
    if not rows:
        raise ValueError(f"mixture {cfg.mixture} has no samples")
    collate = SampleCollator(processor)
    rng = random.Random(cfg.seed)
    order: list[int] = []

    # optimizer + cosine schedule with warmup
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))

    device = next(model.parameters()).device
    losses, metrics_path = [], out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    for step in range(cfg.max_steps):
        batch_rows = []
        while len(batch_rows) < cfg.batch_size:
            if not order:
                order = list(range(len(rows)))
                rng.shuffle(order)
            batch_rows.append(rows[order.pop()])
        batch = collate(batch_rows).to(device)
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.max_steps - 1:
            rec = dict(step=step, loss=round(loss.item(), 6), lr=lr_at(step),
                       tokens=int(batch["attention_mask"].sum()), elapsed_s=round(time.perf_counter() - t0, 2))
            with metrics_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            log(f"step {step:4d}  loss {loss.item():.4f}  lr {rec['lr']:.2e}")

    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return dict(output_dir=str(out), losses=losses, trainable=trainable)
