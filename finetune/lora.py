"""The everyday LoRA call kept from the first version: ``train_lora(LoraConfig(...))`` runs the full recipe
(finetune/train.py) with the `lora` preset's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from finetune.modules import LLM_TARGETS, VISION_TARGETS, lora_target_regex  # noqa: F401  (public names)
from finetune.train import seed_everything  # noqa: F401


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

    def to_train_config(self):
        from finetune.config import DataOpts, LoraOpts, ModuleOpts, OptimOpts, TrainConfig

        return TrainConfig(
            model=self.model, mixture=self.mixture, output_dir=self.output_dir, method="lora",
            vision=ModuleOpts(train=self.vision_lora, lr=self.lr),
            merger=ModuleOpts(train=self.train_merger, lr=self.lr), llm=ModuleOpts(train=True, lr=self.lr),
            lora=LoraOpts(rank=self.rank, alpha=self.alpha, dropout=self.dropout),
            data=DataOpts(max_batch_size=self.batch_size, max_length=1 << 20, tokens_per_batch=1 << 30),
            optim=OptimOpts(warmup_steps=self.warmup_steps, min_lr_ratio=0.0), max_steps=self.max_steps,
            seed=self.seed, log_every=self.log_every, tensorboard=False,
        )

    def problems(self) -> list[str]:
        return self.to_train_config().problems()


def train_lora(cfg: LoraConfig, log=print) -> dict:
    """Returns output_dir, losses and trainable (parameter count), like the full recipe."""
    from finetune.train import train

    return train(cfg.to_train_config(), log=log)
