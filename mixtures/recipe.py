"""Typed mixture recipes: which samples, in what unit, toward which shares, and how large.

A recipe is a YAML file (presets in ``recipes/mix/``) plus ``key=value`` overrides, loaded like training
recipes; every problem is reported at once with its fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from curation import typed_config

MIX_RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes" / "mix"
DIMENSIONS = ("domain", "task", "source")
UNITS = ("samples", "hours", "tokens")
# What one sample weighs in each unit, as SQL over the pool.
UNIT_SQL = {"samples": "CAST(1 AS DOUBLE)", "hours": "(clip_end_s - clip_start_s) / 3600.0",
            "tokens": "CAST(n_text_tokens + n_visual_tokens AS DOUBLE)"}
_WORD = re.compile(r"[A-Za-z0-9_.:/-]+")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def mix_presets() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in MIX_RECIPES_DIR.glob("*.yaml")))


@dataclass
class Targets:
    """Shares per group of each dimension (weights, normalized to sum to 1); groups left out get none."""

    domain: dict[str, float] = field(default_factory=dict)
    task: dict[str, float] = field(default_factory=dict)
    source: dict[str, float] = field(default_factory=dict)


@dataclass
class MixRecipe:
    """One mixture, and its held-out twins.

    ``split`` is where samples come from; ``holdout`` names the splits that get a mixture of their own
    (``<name>-val``, ...) with the same filters and shares, never upsampled. ``unit`` is what shares and
    ``budget`` count: samples, hours of clip, or tokens (text + visual). A dimension with ``targets`` gets
    those shares; the dimensions in ``balance_by`` without targets get shares proportional to size^(1/T)
    (``temperature`` T=1 keeps natural sizes, ``inf`` gives equal shares). ``budget`` (0: as large as the data
    allows) is the total; a group short of its share is ``upsample``d (up to ``max_repeat`` copies) or the
    others ``shrink`` to keep the shares. ``filter`` is a SQL condition over samples and their video's columns;
    ``max_per_video`` caps samples per video; ``seed`` picks which samples, by a stable hash.
    ``max_dropped_share``: a sample's ``keep`` (for ``filter: keep``) holds while the share of its clip's
    segment frames that the ``quality`` view drops is below this, so a segment-level sample follows its own
    segment and a whole-video sample survives a bad tail.
    """

    name: str = "balanced"
    split: str = "train"
    holdout: tuple[str, ...] = ("val", "test")
    unit: str = "samples"
    targets: Targets = field(default_factory=Targets)
    balance_by: tuple[str, ...] = ("domain",)
    temperature: float = 1.0
    budget: float = 0.0
    shortfall: str = "shrink"
    max_repeat: int = 1
    tasks: tuple[str, ...] = ()
    filter: str = ""
    max_per_video: int = 0
    max_dropped_share: float = 0.25
    seed: int = 0

    def problems(self) -> list[str]:
        """Everything wrong with this recipe, each with the fix."""
        out = []
        words = [("name", self.name), ("split", self.split)] + [("holdout", h) for h in self.holdout] + \
                [("tasks", t) for t in self.tasks]
        for key, value in words:
            if not _NAME.fullmatch(value) and not (key == "split" and value == ""):
                out.append(f"{key} {value!r} may only use letters, digits, '_' and '-'")
        if not self.split and self.holdout:
            out.append(f"split '' takes every split, so nothing is held out for holdout {list(self.holdout)}; "
                       "set holdout= (empty) or name a split")
        if self.split and self.split in self.holdout:
            out.append(f"holdout {list(self.holdout)} includes split {self.split!r}; holdout names the other splits")
        if self.unit not in UNITS:
            out.append(f"unit {self.unit!r} is not one of {', '.join(UNITS)}")
        for dim in DIMENSIONS:
            for group, share in getattr(self.targets, dim).items():
                if not _WORD.fullmatch(group):
                    out.append(f"targets.{dim} group {group!r} may only use letters, digits and _.:/-")
                if not (share >= 0 and math.isfinite(share)):
                    out.append(f"targets.{dim}.{group} {share} must be a share >= 0")
            if getattr(self.targets, dim) and not sum(getattr(self.targets, dim).values()) > 0:
                out.append(f"targets.{dim} shares sum to 0; give at least one group a share > 0")
        for dim in self.balance_by:
            if dim not in DIMENSIONS:
                out.append(f"balance_by {dim!r} is not one of {', '.join(DIMENSIONS)}")
        if not self.temperature > 0:
            out.append(f"temperature {self.temperature} must be > 0 (1 keeps natural sizes, inf gives equal shares)")
        if not (self.budget >= 0 and math.isfinite(self.budget)):
            out.append(f"budget {self.budget} must be >= 0 (0: as large as the data allows)")
        if self.shortfall not in ("shrink", "upsample"):
            out.append(f"shortfall {self.shortfall!r} is not one of shrink, upsample")
        if self.max_repeat < 1:
            out.append(f"max_repeat {self.max_repeat} must be >= 1 (1: never repeat a sample)")
        if self.shortfall == "upsample" and not self.budget:
            out.append("shortfall=upsample needs a budget: upsampling fills short groups up to their share of it")
        if self.max_per_video < 0:
            out.append(f"max_per_video {self.max_per_video} must be >= 0 (0: no cap)")
        if not 0 < self.max_dropped_share <= 1:
            out.append(f"max_dropped_share {self.max_dropped_share:g} must be in (0, 1]: a sample keeps while the "
                       "share of its clip that quality drops is below it")
        if ";" in self.filter:
            out.append("filter is one SQL condition (what follows WHERE); remove the ';'")
        return out

    def dimensions(self) -> tuple[str, ...]:
        """The dimensions that get shares: those with targets, then balance_by's others, in a fixed order."""
        chosen = {d for d in DIMENSIONS if getattr(self.targets, d)} | set(self.balance_by)
        return tuple(d for d in DIMENSIONS if d in chosen)

    def repeats(self) -> int:
        return self.max_repeat if self.shortfall == "upsample" else 1

    def for_split(self, split: str) -> "MixRecipe":
        """The same recipe on a held-out split: same filters and shares, no upsampling, no budget."""
        return MixRecipe(**{**asdict(self), "targets": self.targets, "name": f"{self.name}-{split}",
                            "split": split, "holdout": (), "budget": 0.0, "shortfall": "shrink"})


def recipe_path(name_or_path: str) -> Path:
    return typed_config.recipe_path(name_or_path, [MIX_RECIPES_DIR, Path.cwd() / "recipes" / "mix"],
                                    mix_presets(), kind="mixture recipe")


def load_mix_recipe(recipe: str | None = None, overrides: list[str] | dict | None = None) -> MixRecipe:
    """Recipe YAML (a preset name or a path; optional) then overrides; raises ValueError listing every problem."""
    raw = typed_config.load_raw(recipe_path(recipe) if recipe else None, overrides)
    cfg, problems = typed_config.build(MixRecipe, raw)
    problems += cfg.problems()
    if problems:
        raise ValueError("bad mixture recipe:\n  " + "\n  ".join(problems))
    return cfg


def dump_yaml(recipe: MixRecipe) -> str:
    d = asdict(recipe)
    for key in ("holdout", "balance_by", "tasks"):
        d[key] = list(d[key])
    return yaml.safe_dump(d, sort_keys=False)
