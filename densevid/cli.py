"""`densevid`: one console script, one subcommand per stage, plus demo, run, sql, mix and train."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path

from curation import storage
from curation.video import VideoError
from densevid import export_cli, gate_cli, mix_cli, report_cli, round_cli, train_cli
from densevid.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, EXIT_SYSTEM, EXIT_USAGE
from densevid.pipeline import STAGES, PipelineConfig, run_pipeline
from synth.imports import FORMATS as IMPORT_FORMATS
from synth.imports import TOLERANCE_S


def _add_data(p, required=True):
    p.add_argument("--data", type=storage.location, required=required, metavar="DIR",
                   help="dataset directory (Parquet tables + catalog), or a URL: s3://bucket/ds, gs://...")


# --- config dataclass <-> flags ---------------------------------------------------------------------------


def add_config_flags(p, cls, stages: tuple[str, ...], prefix: str = "", exclude: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` used by any of ``stages`` (its metadata ``stages``; a nested config's
    fields follow their parent), less the ``exclude``d fields; help, default, type and choices come from the
    field."""
    for f, typ in _config_fields(cls):
        if not set(f.metadata.get("stages", stages)) & set(stages) or f.name in exclude:
            continue
        if dataclasses.is_dataclass(typ):
            add_config_flags(p, typ, stages, prefix + f.name + ".")
        else:
            p.add_argument(f.metadata.get("flag", "--" + f.name.replace("_", "-")), dest=prefix + f.name,
                           **_flag_options(f, typ))


def config_from_args(cls, args, prefix: str = ""):
    """``cls`` filled from parsed flags (see ``add_config_flags``); a field without a flag keeps its default."""
    kwargs = {}
    for f, typ in _config_fields(cls):
        if dataclasses.is_dataclass(typ):
            kwargs[f.name] = config_from_args(typ, args, prefix + f.name + ".")
        elif hasattr(args, prefix + f.name):
            value = getattr(args, prefix + f.name)
            kwargs[f.name] = tuple(value) if typing.get_origin(typ) is tuple else value
    return cls(**kwargs)


def _config_fields(cls):
    """(field, type) pairs, ``X | None`` read as ``X``."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if isinstance(typ, types.UnionType):
            typ = next(t for t in typing.get_args(typ) if t is not type(None))
        yield f, typ


def _flag_options(f, typ) -> dict:
    meta = f.metadata
    if f.default is dataclasses.MISSING:
        return dict(type=typ, required=True, metavar=meta.get("metavar", f.name.upper()),
                    help=meta["help"] + " (required)")
    if typ is bool:
        return dict(action="store_true", default=f.default, help=meta["help"])
    text = meta["help"] + (f" (default {_shown(f.default)})" if f.default not in (None, ()) else "")
    text += " (required)" if meta.get("required") else ""
    metavar = meta.get("metavar", f.name.upper())
    if meta.get("repeat"):
        return dict(action="append", default=list(f.default), metavar=metavar, help=text)
    if "choices" in meta:  # listed, not enforced: PipelineConfig.problems reports every bad value at once
        metavar = "{" + ",".join(meta["choices"]) + "}"
    if typing.get_origin(typ) is tuple:  # one comma-separated list
        words = typing.get_args(typ)[0] is str
        return dict(type=comma_words if words else train_cli.comma_floats, default=f.default,
                    metavar="A,B,..." if words else "X,Y,...", help=text)
    return dict(type=typ, default=f.default, metavar=metavar, required=meta.get("required", False), help=text)


def comma_words(text: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in text.split(",") if w.strip())


def _shown(value) -> str:
    return train_cli.commas(value) if isinstance(value, tuple) else str(value)


def _add_stage_parser(sub, name: str, stages: tuple[str, ...], summary: str) -> None:
    p = sub.add_parser(name, help=summary)
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    add_config_flags(p, PipelineConfig, stages)
    p.set_defaults(pipeline_stages=stages)


class Parser(argparse.ArgumentParser):
    """Options only by their full names: no prefix matching, so `--video` is no `--videos`. Subcommands'
    parsers are of this class too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.add_argument("--storage-option", dest="storage_options", action="append", default=argparse.SUPPRESS,
                          metavar="KEY=VALUE", help="an fsspec option for s3:// or gs:// URLs, e.g. "
                          "endpoint_url=http://127.0.0.1:9000 (repeatable; credentials from the usual variables)")


def parser() -> argparse.ArgumentParser:
    ap = Parser(prog="densevid", description="Video-language training data from long videos.")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = ap.add_subparsers(dest="cmd", required=True)
    demo = sub.add_parser("demo", help="the whole pipeline offline on generated videos with a tiny model")
    demo.add_argument("--out", type=Path, default=Path("demo_out"))
    demo.add_argument("--train-steps", type=int, default=12, metavar="N", help="steps of the LoRA fine-tune")
    demo.add_argument("--teacher-steps", type=int, default=150, metavar="N",
                      help="steps of the grounding teacher whose records the gate judges")
    for name in STAGES:
        _add_stage_parser(sub, name, (name,), f"run the {name} stage")
    _add_stage_parser(sub, "run", STAGES, f"{STAGES[0]} through {STAGES[-1]} in one go")
    sql = sub.add_parser("sql", help="query the catalog read-only")
    _add_data(sql)
    sql.add_argument("query")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    mix_cli.add_parsers(sub)
    train_cli.add_parsers(sub)
    export_cli.add_parsers(sub)
    report_cli.add_parsers(sub)
    round_cli.add_parsers(sub)
    gate_cli.add_parsers(sub)
    ev = sub.add_parser("eval-grounding", help="score model grounding against ground truth")
    _add_data(ev)
    ev.add_argument("--model", default=None, help="only this model's records (default: every model)")
    compact = sub.add_parser("compact", help="rewrite each table as one Parquet file (bounded file count)")
    _add_data(compact)
    compact.add_argument("--table", action="append", default=None, help="only these tables (repeatable)")
    imp = sub.add_parser("import", help="public annotations as ground truth (videos already ingested)")
    imp.add_argument("file", type=storage.location, help="the annotation file (a path or a URL: s3://bucket/a.json)")
    imp.add_argument("--format", required=True, choices=IMPORT_FORMATS,
                     help="charades-sta (VIDEO START END##sentence lines), activitynet (ActivityNet Captions JSON), "
                          "hc-stvg (HC-STVG v1/v2 JSON with boxes)")
    _add_data(imp)
    imp.add_argument("--map", type=storage.location, default=None, metavar="CSV",
                     help="annotation_id,video_id or annotation_id,uri rows, a uri relative to the CSV's folder "
                          "(a path or a URL; default: match by file stem)")
    imp.add_argument("--tolerance-s", type=float, default=TOLERANCE_S,
                     help=f"a span may pass the video's ends by this much and is clamped (default {TOLERANCE_S:g})")
    tiny = sub.add_parser("build-tiny", help="write the tiny offline Qwen3-VL checkpoint")
    tiny.add_argument("--out", type=Path, required=True)
    return ap


def cmd_stages(args) -> int:
    from curation.store import Dataset
    from densevid.summary import print_stage_summary

    cfg = config_from_args(PipelineConfig, args)
    results = run_pipeline(cfg, args.pipeline_stages, progress=not args.quiet)
    print_stage_summary(results, Dataset(cfg.data))
    return EXIT_SOME_FAILED if any(r.n_failed for r in results) else EXIT_OK


def existing_dataset(data: Path):
    """The dataset at ``data``; a folder that is none (a typo) is an error, never made into an empty dataset."""
    from curation.store import Dataset

    from curation.store import TABLES

    if storage.is_url(str(data)):
        storage.require_reachable(data)
        if not any(Dataset.exists(data, t) for t in TABLES):
            raise ValueError(f"{data} is not a densevid dataset (no tables under it)")
        return Dataset(data)
    if not (data / "catalog.duckdb").exists() and not any(data.glob("*/*.parquet")):
        raise ValueError(f"{data} is not a densevid dataset (no catalog.duckdb, no tables)")
    return Dataset(data)


def cmd_sql(args) -> int:
    table = existing_dataset(args.data).sql(args.query)
    if args.format == "json":
        print(json.dumps(table.to_pylist(), default=str, indent=1))
    elif args.format == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, sys.stdout.buffer)
    else:
        from densevid.summary import print_arrow

        print_arrow(table)
    return EXIT_OK


def cmd_eval_grounding(args) -> int:
    import pyarrow as pa

    from densevid.summary import print_arrow
    from synth.eval_grounding import evaluate_dataset

    scores = evaluate_dataset(existing_dataset(args.data), args.model)
    print_arrow(pa.Table.from_pylist([{"model": m, **s.as_dict()} for m, s in scores.items()]))
    return EXIT_OK


def cmd_import(args) -> int:
    from curation.store import Dataset
    from synth.imports import import_annotations, load_map

    for place in (args.data, args.file, args.map):
        if place:
            storage.require_reachable(place)
    if not Dataset.exists(args.data):
        print(f"error: {args.data} has no videos table; run densevid ingest --videos DIR --data {args.data} first",
              file=sys.stderr)
        return EXIT_USAGE
    mapping = load_map(args.map) if args.map else None
    result = import_annotations(Dataset(args.data), args.format, args.file, mapping, args.tolerance_s)
    print_import_summary(result, args.data)
    return EXIT_SOME_FAILED if result.failures else EXIT_OK


def print_import_summary(result, data: Path, max_failures: int = 10) -> None:
    """Rows written per table, then the failures by kind with the first few messages."""
    from collections import Counter

    print(f"import {result.fmt} {result.path}: {result.entries} lines or entries")
    for table in ("grounding", "dense_captions", "failures"):
        print(f"  {table:<15} {result.written[table]:6d} written  {result.stored[table]:6d} already stored")
    if not result.failures:
        return
    kinds = Counter(f["error_type"] for f in result.failures)
    print("failed: " + ", ".join(f"{kind} x{n}" for kind, n in kinds.most_common()))
    for f in result.failures[:max_failures]:
        print(f"  {f['message']}")
    if len(result.failures) > max_failures:
        print(f"  ... {len(result.failures) - max_failures} more: densevid sql --data {data} "
              f"\"SELECT item_id, message FROM failures WHERE stage = 'import'\"")


def cmd_compact(args) -> int:
    from curation.store import TABLES

    ds = existing_dataset(args.data)
    for table in args.table or TABLES:
        before, after = ds.compact(table)
        print(f"{table:<15} {before:5d} files -> {after}")
    ds.refresh_catalog()
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return status
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as other Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:  # every write is atomic and every stage skips what is done
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


def _storage_options(argv: list[str] | None) -> dict:
    """The ``--storage-option`` values, wherever they stand, read before the other arguments: a path argument
    becomes a URL path when parsed, and it must open its storage with them."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--storage-option", dest="options", action="append", default=[])
    known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    return dict(storage.parse_option(o) for o in known.options)


def _main(argv: list[str] | None) -> int:
    saved = os.environ.get(storage.OPTIONS_ENV)
    args = None
    try:
        storage.configure(_storage_options(argv))
        args = parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        _quiet_libraries()
        if args.cmd == "demo":
            from densevid.demo import run_demo

            return run_demo(args.out, train_steps=args.train_steps, teacher_steps=args.teacher_steps,
                            progress=not args.quiet)
        if hasattr(args, "pipeline_stages"):  # a stage subcommand or run
            return cmd_stages(args)
        if args.cmd == "sql":
            return cmd_sql(args)
        for commands in (mix_cli, train_cli, export_cli, report_cli, round_cli, gate_cli):
            handled = commands.dispatch(args)
            if handled is not None:
                return handled
        if args.cmd == "eval-grounding":
            return cmd_eval_grounding(args)
        if args.cmd == "compact":
            return cmd_compact(args)
        if args.cmd == "import":
            return cmd_import(args)
        if args.cmd == "build-tiny":
            from model.tiny import build_tiny_checkpoint

            print(build_tiny_checkpoint(args.out))
            return EXIT_OK
    except (ValueError, FileNotFoundError, VideoError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        raise
    except OSError as e:
        print(os_error_line(args.cmd if args else "", e), file=sys.stderr)
        return EXIT_SYSTEM
    except Exception as e:
        import duckdb

        if isinstance(e, duckdb.Error):  # SQL typed by the user: show DuckDB's own message
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        raise
    finally:  # the options are this command's (main may run again in the same process)
        _restore_env(storage.OPTIONS_ENV, saved)
    return EXIT_USAGE


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def os_error_line(cmd: str, e: OSError) -> str:
    """``densevid export: cannot write /x: Read-only file system``: one line, the path and the system's reason."""
    path = e.filename if e.filename2 is None else f"{e.filename} -> {e.filename2}"
    if path is None:  # raised without a path (pyarrow, sockets): its own message, on one line
        return f"densevid {cmd}: " + " ".join(_own_message(e).split())
    verb = "write" if e.errno in _WRITE_ERRNOS else "access"
    return f"densevid {cmd}: cannot {verb} {path}: {e.strerror or e}"


def _own_message(e: OSError) -> str:
    """The error's message; one re-raised from a DataLoader worker carries the worker's traceback, whose last
    line is the error itself."""
    text = str(e)
    if "Original Traceback" in text:
        return text.strip().splitlines()[-1]
    return text


def _quiet_libraries() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning)


if __name__ == "__main__":
    sys.exit(main())
