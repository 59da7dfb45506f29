"""`densevid mix`: a mixture recipe (preset or YAML) with key=value overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

from curation import storage
from densevid.exits import EXIT_OK
from densevid.train_cli import flag_overrides, reparse

# old flags, kept as spellings of overrides
_FLAG_KEYS = {"name": "name", "split": "split"}
_OLD_BALANCE = {"domain": ["temperature=inf", "balance_by=domain"], "none": ["balance_by="]}


def add_parsers(sub) -> None:
    mix = sub.add_parser(
        "mix", help="build a mixture from a recipe: densevid mix [RECIPE] [key=value ...] --data DIR",
        description="RECIPE is a preset (balanced, natural, hours-t2, targets) or a YAML file (default: balanced); "
                    "key=value pairs override its fields, e.g. unit=hours temperature=2 budget=10 "
                    "targets.domain.cinematic=0.5 filter=\"n_visual_tokens < 4000\" max_per_video=8.")
    _mix_options(mix)
    mix.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _mix_options(p) -> None:
    p.add_argument("items", nargs="*", metavar="RECIPE|key=value")
    p.add_argument("--data", type=storage.location, default=None, help="dataset folder")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    p.add_argument("--dry-run", action="store_true", help="print the balance table without writing anything")
    for flag in _FLAG_KEYS:
        p.add_argument("--" + flag, dest="flag_" + flag, default=None, metavar=flag.upper(),
                       help=f"same as {_FLAG_KEYS[flag]}=...")
    p.add_argument("--balance", choices=tuple(_OLD_BALANCE), default=None,
                   help="domain: equal samples per domain (the balanced preset); none: every sample")


def dispatch(args) -> int | None:
    return cmd_mix(args) if args.cmd == "mix" else None


def recipe_from_args(args):
    from curation.typed_config import parse_overrides
    from mixtures.recipe import load_mix_recipe

    items = list(args.items)
    recipe = items.pop(0) if items and "=" not in items[0] else "balanced"
    old = _OLD_BALANCE[args.balance] if args.balance else []
    return load_mix_recipe(recipe, parse_overrides(old + flag_overrides(args, _FLAG_KEYS) + items))


def cmd_mix(args) -> int:
    from curation.store import Dataset
    from densevid.summary import print_balance
    from mixtures.balance import build_mixtures
    from mixtures.recipe import dump_yaml

    args = reparse(args, _mix_options, "densevid mix")
    recipe = recipe_from_args(args)
    if args.print_config:
        print(dump_yaml(recipe), end="")
        return EXIT_OK
    if args.data is None:
        raise ValueError("--data DIR is required: the dataset whose samples the mixture draws from")
    for built in build_mixtures(Dataset(args.data), recipe, dry_run=args.dry_run):
        print_balance(built.report)
        if built.path:
            print(f"mixture: {built.path}")
    if args.dry_run:
        print("dry run: nothing written")
    return EXIT_OK
