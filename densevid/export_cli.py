"""The export subcommand of `densevid`: a mixture as Qwen fine-tune JSON, LLaMA-Factory, ms-swift, HF datasets."""

from __future__ import annotations

from pathlib import Path

from curation import storage
from densevid.exits import EXIT_OK, EXIT_SOME_FAILED


def add_parsers(sub) -> None:
    from mixtures.export import FORMATS

    p = sub.add_parser(
        "export", help="a mixture for other trainers: Qwen fine-tune JSON, LLaMA-Factory, ms-swift, HF datasets",
        description="Samples that show part of a video are cut to their own clip (cached under <dataset>/clips/) "
                    "and their times moved to the clip's clock; whole-video samples keep their source file.")
    p.add_argument("mixture", type=storage.location, help="mixture folder, <dataset>/mixtures/<name>/")
    p.add_argument("--format", dest="export_formats", default=",".join(FORMATS), metavar="{" + ",".join(FORMATS) + "}",
                   help=f"one or more, comma-separated (default {','.join(FORMATS)})")
    p.add_argument("--out", type=Path, required=True, help="export folder (clips are hard-linked into it)")
    p.add_argument("--crf", type=int, default=18, help="libx264 quality of cut clips (default 18)")


def dispatch(args) -> int | None:
    """Run the subcommand if it is ours; None otherwise."""
    if args.cmd == "export":
        return cmd_export(args)
    return None


def cmd_export(args) -> int:
    from mixtures.clips import ClipEncoding
    from mixtures.export import export_mixture, parse_formats

    formats = parse_formats(args.export_formats)  # a ValueError names every unknown format
    result = export_mixture(args.mixture, args.out, formats, progress=not getattr(args, "quiet", False),
                            encoding=ClipEncoding(crf=args.crf))
    print_export_summary(result)
    return EXIT_SOME_FAILED if result.n_failed else EXIT_OK


def print_export_summary(result, max_failures: int = 5) -> None:
    from rich.table import Table

    from densevid.summary import console
    t = Table(title=f"export {result.mixture.name} -> {result.out}")
    for col in ("format", "rows", "files"):
        t.add_column(col)
    for fmt in result.formats:
        t.add_row(fmt, str(result.rows[fmt]), ", ".join(str(p.relative_to(result.out)) for p in result.files[fmt]))
    console.print(t)
    console.print(f"manifest rows {result.rows_in}; clips cut {result.clips_cut}, reused {result.clips_reused}; "
                  f"failed samples {result.n_failed}", soft_wrap=True)
    for f in result.failures[:max_failures]:
        console.print(f"  {f['item_id']}: {f['error_type']}: {f['message']}", soft_wrap=True, markup=False)
    if result.n_failed > max_failures:
        console.print(f"  ... {result.n_failed - max_failures} more: densevid sql --data {result.dataset} "
                      "\"SELECT item_id, message FROM failures WHERE stage = 'export'\"", soft_wrap=True, markup=False)
    if result.qwen_snippet:
        console.print(result.qwen_snippet, soft_wrap=True, markup=False, highlight=False)
