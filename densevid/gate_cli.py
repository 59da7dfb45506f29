"""The eval-gate subcommand of `densevid`: the gate's verdicts scored against truth the round did not see."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from curation import storage
from densevid.exits import EXIT_OK, EXIT_USAGE

COLUMNS = ("check", "n", "passed", "precision passed", "recall correct", "precision rejected", "recall incorrect")


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "eval-gate", help="how well the gate's checks tell correct model grounding records from wrong ones",
        description="A model record is correct when a truth record of its video with the same phrase reaches "
                    "--min-tiou with it. Per check and overall: precision of passed, recall of correct, "
                    "precision of rejected, recall of incorrect records.")
    p.add_argument("--data", type=storage.location, required=True, help="dataset directory (Parquet tables + catalog)")
    p.add_argument("--model", required=True, help="the model whose records and verdicts are scored (hub id or dir)")
    p.add_argument("--truth-dir", type=Path, default=None,
                   help="also truth JSON files kept apart from the videos, one <video file stem>.json per video")
    p.add_argument("--min-tiou", type=float, default=0.5, help="tIoU a correct record reaches (default 0.5)")
    p.add_argument("--out", type=Path, default=None, help="also write the scores to this JSON file")


def dispatch(args) -> int | None:
    """Run the subcommand if it is ours; None otherwise."""
    if args.cmd == "eval-gate":
        return cmd_eval_gate(args)
    return None


def cmd_eval_gate(args) -> int:
    from curation.store import Dataset
    from synth.gate_eval import gate_scores, load_gate_inputs

    if not 0 < args.min_tiou <= 1:
        print(f"error: --min-tiou {args.min_tiou} must be in (0, 1]", file=sys.stderr)
        return EXIT_USAGE
    if not (args.data / "grounding").is_dir():
        print(f"error: {args.data} has no grounding table; run densevid ground and verify first", file=sys.stderr)
        return EXIT_USAGE
    records, verdicts, truth = load_gate_inputs(Dataset(args.data), args.model, args.truth_dir)
    if not verdicts:
        print(f"error: model {args.model} has no verdicts in {args.data}; run densevid verify --data {args.data} "
              f"--model {args.model} first", file=sys.stderr)
        return EXIT_USAGE
    scores = gate_scores(records, verdicts, truth, args.min_tiou)
    print_gate_scores(scores)
    if args.out:
        args.out.write_text(json.dumps(scores, indent=1))
    return EXIT_OK


def print_gate_scores(scores: dict) -> None:
    from densevid.summary import console
    from rich.table import Table

    t = Table(title=f"{scores['n_scored']} records against truth, {scores['n_correct']} correct at tIoU >= "
                    f"{scores['min_tiou']:g} ({scores['n_unverified']} without a verdict, "
                    f"{scores['n_without_truth']} on videos without truth left out)")
    for col in COLUMNS:
        t.add_column(col)
    for name, s in scores["checks"].items():
        t.add_row(name, str(s["n"]), str(s["n_passed"]),
                  *(_shown(s[m]) for m in ("precision_passed", "recall_correct", "precision_rejected",
                                            "recall_incorrect")))
    console.print(t)


def _shown(share: float | None) -> str:
    return "-" if share is None else f"{share:.3f}"
