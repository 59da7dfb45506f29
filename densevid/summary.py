"""One-screen summaries printed with rich."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

console = Console()


_COLUMNS = {"rows_written", "finished_empty", "skipped_done", "failed"}


def print_stage_summary(results) -> None:
    t = Table(title="stages", show_lines=False)
    for col in ("stage", "seconds", "written", "nothing to write", "skipped (done)", "failed", "why"):
        t.add_column(col)
    for r in results:
        why = "; ".join(f"{k} x{v}" for k, v in r.reasons.most_common(2))
        t.add_row(r.stage, f"{r.seconds:.1f}", str(r.counts["rows_written"]), str(r.counts["finished_empty"]),
                  str(r.counts["skipped_done"]), str(r.n_failed), why)
    console.print(t)
    for r in results:  # each stage's own counts (gate checks, retries, samples per task), one line a stage
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()) if k not in _COLUMNS)
        if counts:
            console.print(f"  {r.stage}: {counts}", soft_wrap=True)


def print_arrow(table, max_rows: int = 50) -> None:
    t = Table(show_lines=False)
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        t.add_row(*[_cell(v) for v in row.values()])
    console.print(t)
    if table.num_rows > max_rows:
        console.print(f"... {table.num_rows - max_rows} more rows")


def _cell(v) -> str:
    s = f"{v:.3f}" if isinstance(v, float) else str(v)
    return s if len(s) <= 80 else s[:77] + "..."


def print_balance(report: dict) -> None:
    t = Table(title="hours per domain (train split)")
    for col in ("domain", "samples before", "hours before", "samples after", "hours after"):
        t.add_column(col)
    after = {r["domain"]: r for r in report["after"]}
    for r in report["before"]:
        a = after.get(r["domain"], {"samples": 0, "hours": 0.0})
        t.add_row(r["domain"], str(r["samples"]), f"{r['hours']:.4f}", str(a["samples"]), f"{a['hours']:.4f}")
    console.print(t)
