"""`densevid`: one console script, one subcommand per stage, plus demo, run, sql, mix and train."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from curation.video import VideoError
from densevid import train_cli
from densevid.exits import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE


def _add_data(p, required=True):
    p.add_argument("--data", type=Path, required=required, help="dataset directory (Parquet tables + catalog)")


def _add_pipeline_args(p, stage: str):
    _add_data(p)
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    p.add_argument("--workers", type=int, default=1, help="processes for CPU stages (ingest, split)")
    p.add_argument("--shard", default=None, help="i/n: process only shard i of n (for cluster schedulers)")
    if stage in ("ingest", "run"):
        p.add_argument("--videos", type=Path, required=True, help="folder of videos; subfolders name domains")
        p.add_argument("--manifest", type=Path, default=None,
                       help="CSV/JSONL/Parquet with uri and any of domain, source, license")
        p.add_argument("--domain-rule", action="append", default=[], metavar="GLOB=DOMAIN",
                       help="label matching paths, e.g. '*/ego/*=egocentric' (repeatable)")
    if stage in ("caption", "ground", "tasks", "dense", "run"):
        p.add_argument("--model", default=None, help="hub id or local dir (default Qwen/Qwen3-VL-2B-Instruct)")
        p.add_argument("--caption-frames", type=int, default=16, help="max frames per segment (even)")
        p.add_argument("--sample-frames", type=int, default=64, help="max frames per training sample (even)")
        p.add_argument("--batch-size", type=int, default=4)
        p.add_argument("--max-new-tokens", type=int, default=512)
        p.add_argument("--backend", choices=("transformers", "vllm"), default="transformers",
                       help="inference backend for caption/ground (vllm: GPU, pip install 'densevid[vllm]')")
        p.add_argument("--renderer", choices=("seconds", "hms"), default="seconds",
                       help="dense caption times: <12.0 - 17.5 seconds> or <00:00:12 - 00:00:17>")
        p.add_argument("--storyline", action="store_true",
                       help="dense: let the model rewrite each video's entries as one story (spans checked)")
    if stage in ("split", "run"):
        p.add_argument("--detector", default="content+threshold",
                       help="content | adaptive | threshold | content+threshold")
        p.add_argument("--threshold", type=float, default=27.0, help="content detector threshold")
        p.add_argument("--fade-threshold", type=float, default=12.0, help="threshold detector: mean brightness")
        p.add_argument("--downscale", type=int, default=0, help="integer downscale before detection (0: auto)")
        p.add_argument("--frame-skip", type=int, default=0, help="detect on every (N+1)th frame")
        p.add_argument("--fallback-window-s", type=float, default=10.0, help="window length when no cut is found")
        p.add_argument("--min-segment-s", type=float, default=2.0)
        p.add_argument("--max-segment-s", type=float, default=30.0)
        p.add_argument("--trim-s", type=float, default=0.25)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="densevid", description="Video-language training data from long videos.")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = ap.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="the whole pipeline offline on generated videos with a tiny model")
    demo.add_argument("--out", type=Path, default=Path("demo_out"))
    demo.add_argument("--train-steps", type=int, default=12)
    for name in ("ingest", "split", "caption", "dense", "ground", "tasks", "run"):
        _add_pipeline_args(sub.add_parser(name, help=f"run the {name} stage" if name != "run" else
                                          "ingest through tasks in one go"), name)
    sql = sub.add_parser("sql", help="query the catalog read-only")
    _add_data(sql)
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    mix = sub.add_parser("mix", help="build a domain-balanced mixture")
    _add_data(mix)
    mix.add_argument("--name", default="balanced")
    mix.add_argument("--split", default="train")
    mix.add_argument("--balance", choices=("domain", "none"), default="domain")
    train_cli.add_parsers(sub)
    ev = sub.add_parser("eval-grounding", help="score model grounding against ground truth")
    _add_data(ev)
    ev.add_argument("--model", default=None, help="only this model's records (default: every model)")
    compact = sub.add_parser("compact", help="rewrite each table as one Parquet file (bounded file count)")
    _add_data(compact)
    compact.add_argument("--table", action="append", default=None, help="only these tables (repeatable)")
    tiny = sub.add_parser("build-tiny", help="write the tiny offline Qwen3-VL checkpoint")
    tiny.add_argument("--out", type=Path, required=True)
    return ap


def _pipeline_config(args, stages):
    from curation.scenes import DetectorConfig, SegmentPolicy
    from densevid.pipeline import PipelineConfig
    from model.loader import DEFAULT_MODEL

    kw = dict(data=args.data, videos=getattr(args, "videos", None), model=getattr(args, "model", None) or DEFAULT_MODEL)
    if hasattr(args, "detector"):
        kw["detector"] = DetectorConfig(detector=args.detector, threshold=args.threshold,
                                        fade_threshold=args.fade_threshold, downscale=args.downscale,
                                        frame_skip=args.frame_skip)
        kw["policy"] = SegmentPolicy(min_segment_s=args.min_segment_s, max_segment_s=args.max_segment_s,
                                     trim_s=args.trim_s, fallback_window_s=args.fallback_window_s)
    if hasattr(args, "manifest"):
        kw["manifest"], kw["domain_rules"] = args.manifest, tuple(args.domain_rule)
    for name in ("caption_frames", "sample_frames", "batch_size", "max_new_tokens", "workers", "shard", "storyline", "backend",
                 "renderer"):
        if hasattr(args, name):
            kw[name] = getattr(args, name)
    return PipelineConfig(**kw)


def cmd_stages(args, stages) -> int:
    from densevid.pipeline import run_pipeline
    from densevid.summary import print_stage_summary

    cfg = _pipeline_config(args, stages)
    results = run_pipeline(cfg, stages, progress=not args.quiet)
    print_stage_summary(results)
    return EXIT_SOME_FAILED if any(r.n_failed for r in results) else EXIT_OK


def cmd_sql(args) -> int:
    from curation.store import Dataset

    if not (args.data / "catalog.duckdb").exists() and not any(args.data.glob("*/*.parquet")):
        print(f"error: {args.data} is not a densevid dataset (no catalog.duckdb, no tables)", file=sys.stderr)
        return EXIT_USAGE
    table = Dataset(args.data).sql(args.query)
    if args.format == "json":
        print(json.dumps(table.to_pylist(), default=str, indent=1))
    elif args.format == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sys.stdout.buffer)
    else:
        from densevid.summary import print_arrow

        print_arrow(table)
    return EXIT_OK


def cmd_mix(args) -> int:
    from curation.store import Dataset
    from densevid.summary import print_balance
    from mixtures.balance import MixRecipe, balance_report, build_mixture

    out = build_mixture(Dataset(args.data), MixRecipe(name=args.name, split=args.split, balance=args.balance))
    print_balance(balance_report(out))
    print(f"mixture: {out}")
    return EXIT_OK


def cmd_eval_grounding(args) -> int:
    import pyarrow as pa

    from curation.store import Dataset
    from densevid.summary import print_arrow
    from synth.eval_grounding import evaluate_dataset

    scores = evaluate_dataset(Dataset(args.data), args.model)
    print_arrow(pa.Table.from_pylist([{"model": m, **s.as_dict()} for m, s in scores.items()]))
    return EXIT_OK


def cmd_compact(args) -> int:
    from curation.store import TABLES, Dataset

    ds = Dataset(args.data)
    for table in args.table or TABLES:
        before, after = ds.compact(table)
        print(f"{table:<15} {before:5d} files -> {after}")
    ds.refresh_catalog()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        if args.cmd == "demo":
            from densevid.demo import run_demo

            return run_demo(args.out, train_steps=args.train_steps, progress=not args.quiet)
        if args.cmd == "run":
            from densevid.pipeline import STAGES

            return cmd_stages(args, STAGES)
        if args.cmd in ("ingest", "split", "caption", "dense", "ground", "tasks"):
            return cmd_stages(args, (args.cmd,))
        if args.cmd == "sql":
            return cmd_sql(args)
        if args.cmd == "mix":
            return cmd_mix(args)
        handled = train_cli.dispatch(args)
        if handled is not None:
            return handled
        if args.cmd == "eval-grounding":
            return cmd_eval_grounding(args)
        if args.cmd == "compact":
            return cmd_compact(args)
        if args.cmd == "build-tiny":
            from model.tiny import build_tiny_checkpoint

            print(build_tiny_checkpoint(args.out))
            return EXIT_OK
    except (ValueError, FileNotFoundError, VideoError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:
        import duckdb

        if isinstance(e, duckdb.Error):  # SQL typed by the user: show DuckDB's own message
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    return EXIT_USAGE


def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning)


if __name__ == "__main__":
    sys.exit(main())
