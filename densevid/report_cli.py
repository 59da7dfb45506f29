"""The report subcommand of `densevid`: a static site (opens from disk) to look at a dataset."""

from __future__ import annotations

from curation import storage
from densevid.exits import EXIT_OK, EXIT_SOME_FAILED


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "report", help="a static HTML site to look at a dataset: timelines, captions, boxes, samples, mixtures",
        description="Writes OUT/index.html (overview), a page per video and per mixture, cached thumbnails. "
                    "A rerun rewrites only the pages whose rows changed and cuts only missing thumbnails.")
    p.add_argument("--data", type=storage.location, required=True,
                   help="dataset directory (Parquet tables + catalog), or a URL: s3://bucket/ds, gs://...")
    p.add_argument("--out", type=storage.location, required=True,
                   help="site folder (created; open OUT/index.html), or a URL: s3://bucket/site")
    p.add_argument("--no-thumbnails", action="store_true", help="no frames decoded: grey frames with the boxes")


def dispatch(args) -> int | None:
    """Run the subcommand if it is ours; None otherwise."""
    if args.cmd == "report":
        return cmd_report(args)
    return None


def cmd_report(args) -> int:
    from curation.progress import stderr_is_terminal
    from report.build import write_report

    # its bar only on a terminal: the summary line says what was done
    result = write_report(args.data, args.out, progress=not getattr(args, "quiet", False) and stderr_is_terminal(),
                          thumbnails=not args.no_thumbnails)
    print_report_summary(result)
    return EXIT_SOME_FAILED if result.thumb_failures else EXIT_OK


def print_report_summary(result, max_failures: int = 5) -> None:
    for video_id, error in result.thumb_failures[:max_failures]:
        print(f"  no thumbnails for video {video_id}: {error}")
    print(result.summary())
