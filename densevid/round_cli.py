"""`densevid round`: one round of the loop (teacher labels the pool, the gate filters, a student trains)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from densevid.exits import EXIT_OK, EXIT_SOME_FAILED

LABEL_STAGES = ("caption", "dense", "ground", "verify", "tasks")
_ROUND_FLAGS = ("teacher", "round", "pool", "heldout", "mix_recipe", "student_init", "base", "eval_max_samples",
                "eval_dense_tokens", "truth_dir")


def add_parsers(sub) -> None:
    from densevid.cli import add_config_flags
    from densevid.pipeline import PipelineConfig
    from finetune.rounds import RoundConfig

    p = sub.add_parser(
        "round", help="one round of the loop: densevid round --data DIR --teacher MODEL --round N [RECIPE key=value ...]",
        description="The teacher captions, grounds and verifies the pool's videos; the round's mixture (ground truth "
                    "plus the teacher's gated samples) trains a student by RECIPE (a training preset or YAML, default "
                    "lora; key=value overrides it, mix.key=value overrides the mixture recipe); the student is scored "
                    "on the fixed held-out set and the round is written to the rounds table. A finished round is "
                    "skipped; a killed one resumes.")
    p.add_argument("items", nargs="*", metavar="RECIPE|key=value|mix.key=value")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    fields = {f.name: f for f in dataclasses.fields(RoundConfig)}
    for name in _ROUND_FLAGS:
        f = fields[name]
        required = f.default is dataclasses.MISSING
        p.add_argument("--" + name.replace("_", "-"), dest="round_" + name, required=required,
                       type=int if f.type in (int, "int") else str, default=None if required else f.default,
                       metavar=name.upper(), help=f.metadata["help"])
    p.add_argument("--no-gate", dest="round_gate", action="store_false", help="train on every well-formed record of the teacher "
                   "(the no-gate control); the default trains only on records the gate passed")
    p.add_argument("--no-label", dest="round_label", action="store_false", help=fields["label"].metadata["help"])
    add_config_flags(p, PipelineConfig, LABEL_STAGES, exclude=("model",))
    p.set_defaults(round_cmd=True)


def dispatch(args) -> int | None:
    return cmd_round(args) if args.cmd == "round" else None


def round_config(args):
    from finetune.rounds import RoundConfig

    items = list(args.items)
    recipe = items.pop(0) if items and "=" not in items[0] else "lora"
    mix = tuple(i[len("mix."):] for i in items if i.startswith("mix."))
    train = tuple(i for i in items if not i.startswith("mix."))
    kwargs = {name: getattr(args, "round_" + name) for name in _ROUND_FLAGS}
    return RoundConfig(data=str(args.data), train_recipe=recipe, train=train, mix=mix, gate=args.round_gate,
                       label=args.round_label, eval_frames=args.sample_frames, **kwargs)


def cmd_round(args) -> int:
    from densevid.cli import config_from_args
    from densevid.pipeline import PipelineConfig
    from densevid.summary import print_rounds
    from finetune.rounds import run_round

    cfg = round_config(args)
    labelling = config_from_args(PipelineConfig, args)
    problems = cfg.problems() + labelling.problems(LABEL_STAGES)
    if problems:
        raise ValueError("bad round options:\n  " + "\n  ".join(problems))
    failed: list = []
    run_round(cfg, labeller(labelling, progress=not args.quiet, failed=failed))
    print_rounds(Path(cfg.data))
    return EXIT_SOME_FAILED if failed else EXIT_OK


def labeller(labelling, progress: bool = True, failed: list | None = None):
    """The round's label step: the pipeline's labelling stages with the teacher, over the pool's videos only;
    stages with failures are added to ``failed``."""
    from densevid.pipeline import run_pipeline
    from densevid.summary import print_stage_summary

    def label(teacher: str, videos: frozenset, include_rejected: bool):
        stage_cfg = dataclasses.replace(labelling, model=teacher, include_rejected=include_rejected)
        results = run_pipeline(stage_cfg, LABEL_STAGES, progress=progress, videos=videos)
        print_stage_summary(results)
        if failed is not None:
            failed.extend(r for r in results if r.n_failed)
        return results

    return label
