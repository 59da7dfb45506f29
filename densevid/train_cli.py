"""The fine-tuning subcommands of `densevid`: train, merge-lora, eval."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from curation import storage
from densevid.exits import EXIT_OK

# old flags, kept as spellings of overrides
_FLAG_KEYS = {"mixture": "mixture", "model": "model", "output_dir": "output_dir", "max_steps": "max_steps",
              "lr": "llm.lr", "seed": "seed"}
_FLAG_METAVARS = {"mixture": "DIR", "model": "MODEL", "output_dir": "DIR", "max_steps": "N", "lr": "LR", "seed": "N"}


def add_parsers(sub) -> None:
    train = sub.add_parser(
        "train", help="fine-tune on a mixture: densevid train RECIPE [key=value ...]",
        description="RECIPE is a preset (lora, full, s0-align, s1-multimodal, s2-long, s3-ultralong) or a YAML "
                    "file; key=value pairs override its fields, e.g. mixture=DIR output_dir=runs/x max_steps=8 "
                    "llm.lr=2e-4 resume=auto.")
    _train_options(train)
    train.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)  # options may follow overrides

    merge = sub.add_parser("merge-lora", help="fold a LoRA adapter into its base model (full checkpoint)")
    merge.add_argument("adapter", type=Path, help="LoRA output folder (or a checkpoint's model/ folder)")
    merge.add_argument("out", type=Path)

    _eval_parser(sub.add_parser("eval", help="temporal grounding mIoU / R@IoU, dense-caption scores and a "
                                             "needle-in-a-haystack heatmap"))


def _eval_parser(ev) -> None:
    """Flags of `densevid eval`; their defaults are EvalConfig's."""
    from finetune.evaluate import EvalConfig

    default = {f.name: f.default for f in dataclasses.fields(EvalConfig)}
    ev.add_argument("--model", required=True, help="hub id, local checkpoint, adapter folder or merged folder")
    ev.add_argument("--mixture", type=storage.location, default=None, help="mixture folder with held-out samples")
    ev.add_argument("--data", type=storage.location, default=None, help="dataset folder: samples of --split are used")
    ev.add_argument("--split", default=default["split"])
    ev.add_argument("--out", type=Path, default=None, help="folder for eval.json and needle_heatmap.png")
    ev.add_argument("--max-samples", type=int, default=default["max_samples"])
    ev.add_argument("--no-dense-captions", dest="dense_captions", action="store_false",
                    help="skip scoring held-out dense captions (BLEU-4, METEOR, CIDEr, SODA_c; METEOR runs on Java)")
    ev.add_argument("--dense-max-new-tokens", type=int, default=default["dense_max_new_tokens"],
                    help="token budget of a generated dense caption")
    ev.add_argument("--needle", action="store_true", help="also generate and score a needle-in-a-haystack grid")
    ev.add_argument("--needle-durations", type=comma_floats, default=default["needle_durations"], metavar="X,Y,...",
                    help=f"haystack lengths in seconds (default {commas(default['needle_durations'])})")
    ev.add_argument("--needle-depths", type=comma_floats, default=default["needle_depths"], metavar="X,Y,...",
                    help=f"needle positions as fractions of the video (default {commas(default['needle_depths'])})")
    ev.add_argument("--needle-trials", type=int, default=default["needle_trials"], help="videos per grid cell")


def dispatch(args) -> int | None:
    """Run the subcommand if it is one of ours; None otherwise."""
    if args.cmd == "train":
        return cmd_train(args)
    if args.cmd == "merge-lora":
        return cmd_merge(args)
    if args.cmd == "eval":
        return cmd_eval(args)
    return None


def _train_options(p) -> None:
    p.add_argument("items", nargs="*", metavar="RECIPE|key=value")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    for flag, key in _FLAG_KEYS.items():
        metavar = _FLAG_METAVARS[flag]
        p.add_argument("--" + flag.replace("_", "-"), dest="flag_" + flag, default=None, metavar=metavar,
                       help=f"same as {key}={metavar}")


def reparse(args, add_options, prog: str):
    """Options and overrides in any order (the main parser stops collecting positionals at the first option):
    what follows the first option is parsed again, and an option given before it still counts."""
    p = argparse.ArgumentParser(prog=prog, allow_abbrev=False)
    add_options(p)
    later = p.parse_intermixed_args(list(args.rest))
    for name, value in vars(args).items():
        if getattr(later, name, None) in (None, False):
            setattr(later, name, value)
    later.items = list(args.items) + later.items
    return later


def flag_overrides(args, flag_keys: dict) -> list[str]:
    """Old-style flags as the key=value overrides they spell."""
    return [f"{key}={getattr(args, 'flag_' + flag)}" for flag, key in flag_keys.items()
            if getattr(args, "flag_" + flag) is not None]


def train_config_from_args(args):
    """Recipe (first item without '='; default lora), then old-style flags, then key=value overrides."""
    from curation.typed_config import parse_overrides
    from finetune.config import load_config

    items = list(args.items)
    recipe = items.pop(0) if items and "=" not in items[0] else "lora"
    return load_config(recipe, parse_overrides(flag_overrides(args, _FLAG_KEYS) + items))


def cmd_train(args) -> int:
    from finetune.config import dump_yaml
    from finetune.train import train

    args = reparse(args, _train_options, "densevid train")
    cfg = train_config_from_args(args)
    if args.print_config:
        print(dump_yaml(cfg), end="")
        return EXIT_OK
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # one line under torchrun, not one per process
        print(f"{'adapter' if cfg.method == 'lora' else 'checkpoint'}: {result['output_dir']}")
    return EXIT_OK


def cmd_merge(args) -> int:
    from finetune.checkpoint import merge_lora

    print(f"merged: {merge_lora(args.adapter, args.out)}")
    return EXIT_OK


def cmd_eval(args) -> int:
    from finetune.evaluate import EvalConfig, run_eval

    cfg = EvalConfig(model=args.model, mixture=str(args.mixture or ""), data=str(args.data or ""), split=args.split,
                     out=str(args.out or ""), max_samples=args.max_samples, dense_captions=args.dense_captions,
                     dense_max_new_tokens=args.dense_max_new_tokens, needle=args.needle,
                     needle_durations=args.needle_durations, needle_depths=args.needle_depths,
                     needle_trials=args.needle_trials)
    report = run_eval(cfg)
    brief = {k: {kk: vv for kk, vv in v.items() if kk != "items"} for k, v in report.items() if isinstance(v, dict)
             and k != "config"}
    print(json.dumps(brief, indent=1))
    return EXIT_OK


def comma_floats(text: str) -> tuple[float, ...]:
    """``"8,16,32"`` -> ``(8.0, 16.0, 32.0)``; an empty text is an empty tuple."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r} (e.g. 8,16,32)") from None


def commas(values: tuple) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
