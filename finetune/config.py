"""Typed training config: YAML recipes and `key=value` overrides fill the same dataclass fields.

Every problem (unknown key, bad type, bad value) is collected and reported at once, each with its fix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from curation import storage, typed_config
from curation.typed_config import build, load_raw
from model.loader import DEFAULT_MODEL

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
PRESETS = ("lora", "full", "s0-align", "s1-multimodal", "s2-long", "s3-ultralong")


@dataclass
class ModuleOpts:
    """One part of the model: does it train (fully, or by LoRA when method=lora), and at what learning rate."""

    train: bool = True
    lr: float = 1e-4


@dataclass
class LoraOpts:
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0


@dataclass
class DataOpts:
    max_length: int = 8192  # tokens; a longer sample is dropped and counted, never cut
    tokens_per_batch: int = 16384  # padded tokens per micro-batch (length buckets keep padding low)
    max_batch_size: int = 16
    packing: bool = False  # several samples in one row, attention kept apart
    num_workers: int = 0  # DataLoader workers decoding frames
    max_frames: int = 0  # 0: the frames stored with each sample; else resample the clip with this cap
    target_fps: float = 2.0  # used with max_frames
    max_frame_tokens: int = 0  # 0: the processor's own pixel budget; else visual tokens per frame pair, capped


@dataclass
class OptimOpts:
    grad_accum: int = 1
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 0.0
    clip_grad: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class RopeOpts:
    scaling: str = "none"  # none | yarn
    factor: float = 1.0  # yarn: target length / original_max_position
    original_max_position: int = 0  # 0: the model's max_position_embeddings


@dataclass
class TrainConfig:
    """One training run, as a recipe YAML and ``key=value`` overrides give it.

    ``model`` is the base (hub id or local dir) and ``mixture`` / ``val_mixture`` the folders `densevid mix`
    wrote; adapters or weights, checkpoints and metrics go to ``output_dir``. ``method`` is lora or full;
    ``vision``, ``merger`` and ``llm`` say which parts train and at what learning rate; the nested options
    shape LoRA, batching, the optimizer and rope scaling. ``max_steps`` counts optimizer steps; ``*_every``
    are in steps (0: never).
    """

    model: str = DEFAULT_MODEL
    mixture: str = ""
    val_mixture: str = ""
    output_dir: str = "runs/lora"
    method: str = "lora"  # lora | full
    vision: ModuleOpts = field(default_factory=lambda: ModuleOpts(train=False, lr=2e-6))
    merger: ModuleOpts = field(default_factory=lambda: ModuleOpts(train=False, lr=1e-5))
    llm: ModuleOpts = field(default_factory=lambda: ModuleOpts(train=True, lr=1e-4))
    lora: LoraOpts = field(default_factory=LoraOpts)
    data: DataOpts = field(default_factory=DataOpts)
    optim: OptimOpts = field(default_factory=OptimOpts)
    rope: RopeOpts = field(default_factory=RopeOpts)
    max_steps: int = 100
    save_every: int = 0  # 0: only the final save
    log_every: int = 1
    val_every: int = 0  # 0: no validation loss
    val_samples: int = 64
    seed: int = 0
    resume: str = ""  # "": start fresh, "auto": latest checkpoint in output_dir, or a checkpoint folder
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    gradient_checkpointing: bool = False
    checkpoint_reentrant: bool = False
    attn_implementation: str = "sdpa"  # sdpa | flash_attention_2 | flex_attention | sdpa_varlen | auto
    max_dense_mask_gib: float = 0.0  # largest dense attention mask allowed; 0: 1/8 of the GPU's (or RAM's) memory
    tensorboard: bool = True

    def problems(self) -> list[str]:
        """Everything wrong with this config, each with the fix."""
        out = []
        if not self.mixture:
            out.append("mixture is empty; pass mixture=<data>/mixtures/<name> (the folder `densevid mix` wrote)")
        elif not storage.exists(storage.location(self.mixture) / "manifest.parquet"):
            out.append(f"mixture {self.mixture}: no manifest.parquet there; build it with `densevid mix --data DIR`")
        if self.val_mixture and not storage.exists(storage.location(self.val_mixture) / "manifest.parquet"):
            out.append(f"val_mixture {self.val_mixture}: no manifest.parquet there; build it with "
                       "`densevid mix --data DIR --split val --name val`")
        if self.method not in ("lora", "full"):
            out.append(f"method {self.method!r} is not one of lora, full")
        trained = [n for n in ("vision", "merger", "llm") if getattr(self, n).train]
        if not trained:
            out.append("nothing trains; set at least one of vision.train, merger.train, llm.train to true")
        if self.method == "lora" and not (self.vision.train or self.llm.train):
            out.append("method=lora needs vision.train or llm.train (LoRA goes there); "
                       "for merger-only training use method=full (as s0-align does)")
        for n in trained:
            if getattr(self, n).lr <= 0:
                out.append(f"{n}.lr {getattr(self, n).lr} must be > 0 when {n}.train is true")
        for name, value, low in (("max_steps", self.max_steps, 1), ("log_every", self.log_every, 1),
                                 ("save_every", self.save_every, 0), ("val_every", self.val_every, 0),
                                 ("lora.rank", self.lora.rank, 1), ("optim.grad_accum", self.optim.grad_accum, 1),
                                 ("data.max_length", self.data.max_length, 16),
                                 ("data.max_batch_size", self.data.max_batch_size, 1),
                                 ("data.num_workers", self.data.num_workers, 0),
                                 ("data.max_frames", self.data.max_frames, 0),
                                 ("optim.warmup_steps", self.optim.warmup_steps, 0)):
            if value < low:
                out.append(f"{name} {value} must be >= {low}")
        if self.data.max_frames % 2:
            out.append(f"data.max_frames {self.data.max_frames} must be even (frames go in pairs)")
        if self.data.tokens_per_batch < self.data.max_length:
            out.append(f"data.tokens_per_batch {self.data.tokens_per_batch} < data.max_length "
                       f"{self.data.max_length}: a long sample could never fit; raise tokens_per_batch")
        if not 0 <= self.optim.min_lr_ratio <= 1:
            out.append(f"optim.min_lr_ratio {self.optim.min_lr_ratio} must be in [0, 1]")
        if self.precision not in ("auto", "bf16", "fp32"):
            out.append(f"precision {self.precision!r} is not one of auto, bf16, fp32")
        if self.rope.scaling not in ("none", "yarn"):
            out.append(f"rope.scaling {self.rope.scaling!r} is not one of none, yarn")
        if self.rope.scaling == "yarn" and self.rope.factor <= 1:
            out.append(f"rope.factor {self.rope.factor} must be > 1 with rope.scaling=yarn "
                       "(target length / original length, e.g. 4.0)")
        if self.rope.scaling == "yarn" and self.method == "lora":
            out.append("rope.scaling=yarn changes the base model's config, which a LoRA adapter does not carry; "
                       "use method=full (as s3-ultralong does) or rope.scaling=none")
        out += self.attention_problems()
        if self.resume not in ("", "auto") and not Path(self.resume).is_dir():
            out.append(f"resume {self.resume}: no such checkpoint folder; use resume=auto for the latest "
                       "checkpoint in output_dir")
        if self.tensorboard and not _has_tensorboard():
            out.append("tensorboard=true needs the tensorboard package; pip install tensorboard or tensorboard=false")
        return out

    def attention_problems(self, cuda: bool | None = None) -> list[str]:
        """The attention choice against this machine and the batch shape (see finetune/attention.py)."""
        import torch

        from finetune import attention
        from finetune.modules import use_bf16

        if self.attn_implementation not in attention.CHOICES:
            return [f"attn_implementation {self.attn_implementation!r} is not one of {', '.join(attention.CHOICES)}"]
        cuda = torch.cuda.is_available() if cuda is None else cuda
        out, impl = [], attention.resolve(self.attn_implementation, cuda)
        bf16 = use_bf16(self, "cuda" if cuda else "cpu")
        if impl == "flash_attention_2" and not (cuda and attention.has_flash_attn()):
            out.append("attn_implementation=flash_attention_2 needs a CUDA GPU and the flash-attn package "
                       "(pip install flash-attn --no-build-isolation); on a GPU without it use flex_attention, "
                       "on CPU sdpa_varlen (or attn_implementation=auto to pick)")
        if impl == "flash_attention_2" and not bf16:
            out.append("attn_implementation=flash_attention_2 runs in bf16 only; set precision=bf16 (auto is bf16 "
                       "on GPU)")
        if impl == "flex_attention" and not cuda:
            out.append(f"attn_implementation=flex_attention cannot train on CPU (torch {torch.__version__} has no "
                       "FlexAttention backward there); use attn_implementation=sdpa_varlen on CPU")
        gib = attention.dense_mask_gib(impl, self.data.tokens_per_batch, self.data.max_length, self.data.packing,
                                       2 if bf16 else 4)
        limit = self.max_dense_mask_gib or attention.machine_gib() / 8
        if gib > limit:
            shape = (f"a packed row of data.tokens_per_batch={self.data.tokens_per_batch} tokens" if self.data.packing
                     else f"padded rows of up to data.max_length={self.data.max_length} tokens")
            out.append(f"attn_implementation={impl} builds a dense attention mask for {shape}: {gib:.1f} GiB > "
                       f"max_dense_mask_gib {limit:.1f}; use attn_implementation=flash_attention_2 (CUDA, flash-attn) "
                       "or flex_attention (CUDA) or sdpa_varlen (CPU or GPU), or attn_implementation=auto; "
                       "or lower data.tokens_per_batch")
        return out

    def lr_of(self, group: str) -> float:
        return getattr(self, group).lr


def _has_tensorboard() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


# --- loading: recipe file + overrides -> TrainConfig ------------------------------------------------------


def recipe_path(name_or_path: str) -> Path:
    """A preset name (`lora`, `s1-multimodal`, ...) or a YAML path."""
    return typed_config.recipe_path(name_or_path, [RECIPES_DIR, Path.cwd() / "recipes"], PRESETS)


def load_config(recipe: str | None = None, overrides: list[str] | dict | None = None) -> TrainConfig:
    """Recipe YAML (optional) then overrides; raises ValueError listing every problem."""
    raw = load_raw(recipe_path(recipe) if recipe else None, overrides)
    cfg, problems = build(TrainConfig, raw)
    problems += cfg.problems() if cfg is not None else []
    if problems:
        raise ValueError("bad training config:\n  " + "\n  ".join(problems))
    return cfg


def to_dict(cfg: TrainConfig) -> dict:
    return asdict(cfg)


def dump_yaml(cfg: TrainConfig) -> str:
    d = to_dict(cfg)
    d["optim"]["betas"] = list(d["optim"]["betas"])
    return yaml.safe_dump(d, sort_keys=False)
