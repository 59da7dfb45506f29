"""Typed YAML recipes: a recipe file and `key=value` overrides fill the same dataclass fields.

Every problem (unknown key, bad type) is collected instead of stopping at the first, so a config can report
all of them at once, each with its fix. Training recipes and mixture recipes both load this way.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import fields
from pathlib import Path

import yaml


def recipe_path(name_or_path: str, preset_dirs: list[Path], presets: tuple[str, ...], kind: str = "recipe") -> Path:
    """A preset name (looked up in ``preset_dirs``) or a YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ValueError(f"{kind} {p} not found")
        return p
    for base in preset_dirs:
        if (base / f"{name_or_path}.yaml").exists():
            return base / f"{name_or_path}.yaml"
    raise ValueError(f"{kind} {name_or_path!r} is neither a YAML file nor a preset; presets: {', '.join(presets)}")


def parse_overrides(items: list[str]) -> dict:
    """`a.b=1 c=x` -> {"a": {"b": 1}, "c": "x"}; values are read as YAML scalars."""
    out: dict = {}
    bad = [i for i in items if "=" not in i]
    if bad:
        raise ValueError("overrides must look like key=value (e.g. max_steps=8 llm.lr=2e-4); got: " + ", ".join(bad))
    for item in items:
        key, _, raw = item.partition("=")
        value = yaml.safe_load(raw) if raw else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_raw(path: Path | None, overrides: list[str] | dict | None) -> dict:
    """The recipe file's mapping (if any) with the overrides merged over it."""
    raw = (yaml.safe_load(path.read_text()) or {}) if path else {}
    extra = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides or []))
    return merge(raw, extra)


def build(cls, raw: dict, prefix: str = ""):
    """Dataclass from a dict, collecting unknown keys and bad types instead of stopping at the first."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        return cls(), [f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}"]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            problems.append(f"unknown key {prefix}{key}" + (f"; did you mean {prefix}{close[0]}?" if close else
                                                             f"; known: {', '.join(names)}"))
            continue
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key], sub = build(typ, value, f"{prefix}{key}.")
            problems += sub
            continue
        try:
            kwargs[key] = coerce(value, typ)
        except (TypeError, ValueError):
            problems.append(f"{prefix}{key}: {value!r} is not a {_type_name(typ)}")
    return cls(**kwargs), problems


def _type_name(typ) -> str:
    if typing.get_origin(typ) is tuple:
        return "list of " + _type_name(typing.get_args(typ)[0])
    if typing.get_origin(typ) is dict:
        return "mapping of name: " + _type_name(typing.get_args(typ)[1])
    return getattr(typ, "__name__", str(typ))


def coerce(value, typ):
    origin = typing.get_origin(typ)
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(typ))
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(value)
        key_t, val_t = typing.get_args(typ)
        return {coerce(k, key_t): coerce(v, val_t) for k, v in value.items()}
    if typ is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return str(value).lower() in ("true", "1", "yes", "on")
        raise ValueError(value)
    if typ is int:
        if isinstance(value, bool) or float(value) != int(float(value)):
            raise ValueError(value)
        return int(float(value))
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if typ is str:
        if isinstance(value, bool):  # resume=true reads as "auto"
            return "auto" if value else ""
        if isinstance(value, (dict, list)):
            raise ValueError(value)
        return "" if value is None else str(value)
    return value


def _coerce_tuple(value, args: tuple) -> tuple:
    """A YAML list, or one comma-separated string as a `key=a,b` override gives it."""
    if value is None or value == "":
        items = []
    elif isinstance(value, str):
        items = [w.strip() for w in value.split(",") if w.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(v, args[0]) for v in items)
    if len(items) != len(args):
        raise ValueError(value)
    return tuple(coerce(v, t) for v, t in zip(items, args))
