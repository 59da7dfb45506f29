"""One-screen summaries printed with rich."""

from __future__ import annotations

from rich.console import Console, ConsoleDimensions
from rich.table import Table

LOG_WIDTH = 10_000  # outside a terminal nothing wraps or is cut: a table is as wide as its longest row


class _Console(Console):
    """Fitted to the terminal; in a log, CI or a pipe as wide as what is printed, so a table keeps every cell."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)
        return size if self.is_terminal else ConsoleDimensions(LOG_WIDTH, size.height)

    @size.setter
    def size(self, new_size) -> None:
        Console.size.fset(self, new_size)

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError  # the command's own handler ends quietly with status 0 (rich would exit 1)


console = _Console()


def section(title: str) -> None:
    """A heading: a rule across the terminal, one short line in a log."""
    if console.is_terminal:
        console.rule(title)
    else:
        console.print(f"--- {title} ---", markup=False, highlight=False)


_COLUMNS = {"rows_written", "finished_empty", "skipped_done", "failed"}


def print_stage_summary(results, ds=None) -> None:
    """Each stage's counts of this run; with the dataset ``ds``, its open failures (of every run) after."""
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
        if r.nodes:  # Ray: how many nodes did the work
            counts += f", nodes {len(r.nodes)}"
        if counts:
            console.print(f"  {r.stage}: {counts}", soft_wrap=True)
    if ds is not None:
        print_open_failures(ds)


def print_open_failures(ds) -> None:
    """Failures still to fix (the `open_failures` view); those a later run completed are counted apart."""
    recorded = ds.read("failures", ["stage"]).num_rows
    if not recorded:
        return
    counts = ds.open_failure_counts()
    n_open = sum(counts.values())
    by_stage = f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if counts else ""
    console.print(f"open failures: {n_open}{by_stage}; {recorded} recorded, {ds.read('resolved', ['stage']).num_rows} "
                  "resolved by a later run", soft_wrap=True, markup=False)
    if n_open:
        console.print(f'  list them: densevid sql --data {ds.root} "SELECT stage, item_id, message FROM open_failures"',
                      soft_wrap=True, markup=False)


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
    return s if len(s) <= 80 or not console.is_terminal else s[:77] + "..."


def print_balance(report: dict) -> None:
    """Per balanced dimension: each group's target, natural and achieved share in the unit, and the error."""
    unit = report["unit"]
    head = f"mixture {report['mixture']} ({report['split'] or 'every split'}): {report['rows']} rows"
    if not report["rows"]:
        console.print(head + ": no samples, nothing written")
        _print_warnings(report)
        return
    t = Table(title=f"{head}, {_amount(report['total'], unit)} {unit}, {report['repeated_rows']} repeated")
    cols = ("dimension", "group", "target", "before", "achieved", "error", "samples") + ((unit,) if unit != "samples" else ())
    for col in cols:
        t.add_column(col, justify="left" if col in ("dimension", "group") else "right")
    for dim in report["balanced_by"] or ["domain"]:
        for r in report["dimensions"][dim]:
            target = f"{r['target']:.3f}" if "target" in r else "-"
            error = f"{r['error']:+.4f}" if "error" in r else "-"
            amount = (_amount(r["selected"], unit),) if unit != "samples" else ()
            t.add_row(dim, r["group"], target, f"{r['before']:.3f}", f"{r['achieved']:.3f}", error, str(r["samples"]),
                      *amount)
    console.print(t)
    dropped = [f"{f['domain']} {f['split']} -> {f['filter']} -> {f['cap']}" for f in report["filtered"]
               if f["cap"] < f["split"]]
    if dropped:
        console.print("  samples in split -> after filter -> after per-video cap: " + "; ".join(dropped),
                      soft_wrap=True)
    if report["missing_targets"]:
        console.print("  targeted groups absent from this split: " + ", ".join(report["missing_targets"]))
    _print_warnings(report)


def _print_warnings(report: dict) -> None:
    for line in report.get("warnings") or []:
        console.print("  warning: " + line, style="bold red", soft_wrap=True, markup=False, highlight=False)


def _amount(value: float, unit: str) -> str:
    return f"{value:.3f}" if unit == "hours" else f"{value:.0f}"


def print_rounds(data) -> None:
    """The rounds of a dataset, a few lines each (they stay whole in a narrow terminal or a log)."""
    from curation.store import Dataset

    for r in Dataset(data).sql('SELECT * FROM rounds ORDER BY "round"').to_pylist():
        console.print(
            f"round {r['round']}: gate {r['gate']}; pool {r['pool_videos']} videos, {r['records']} records, pass rate "
            f"{_num(r['gate_pass_rate'])}; mixture {r['mixture_samples']} samples ({r['model_samples']} from the "
            f"teacher); held-out mIoU {_num(r['grounding_miou'])}, R@0.5 {_num(r['grounding_r05'])}, dense F1@0.5 "
            f"{_num(r['dense_f1_05'])}, needle {_num(r['needle_accuracy'])}; train {_num(r['train_s'], '.0f')} s",
            soft_wrap=True, markup=False, highlight=False)
        console.print(f"  teacher {r['teacher']} -> student {r['student']}", soft_wrap=True, markup=False,
                      highlight=False)


def _num(v, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)
