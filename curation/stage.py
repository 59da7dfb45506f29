"""The stage contract, apart from where stages run.

A stage declares its input and output tables and what one copy needs (``Resources``), lists its items,
says which are done, and maps a batch of items to output rows; ``setup`` loads heavy things once per
worker. A long item may be cut into units (``units``) that run anywhere and are joined by ``combine``.
Executors (``curation.executors``: local processes, Ray) run the same stage objects and hand every batch's
rows to ``write_batch``, the one write path: atomic files, stored keys skipped, items that wrote nothing
recorded as finished, failures as rows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from curation.store import Dataset, stable_id

log = logging.getLogger("densevid")


@dataclass(frozen=True)
class Resources:
    """What one copy of a stage needs; the Ray executor asks the cluster for exactly this."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0


@dataclass
class Stats:
    """Counts and time of one stage run; ``failed_ids`` are the items that became failures rows."""

    stage: str
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    failed_ids: set[str] = field(default_factory=set)
    nodes: Counter = field(default_factory=Counter)  # work done per cluster node (Ray)
    seconds: float = 0.0

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def failed(self, reason: str, item_id: str) -> None:
        self.counts["failed"] += 1
        self.reasons[reason] += 1
        self.failed_ids.add(item_id)

    def merge(self, other: Stats) -> None:
        """Fold in the counts of a batch run elsewhere (a worker process, a Ray task)."""
        self.counts.update(other.counts)
        self.reasons.update(other.reasons)
        self.failed_ids |= other.failed_ids
        self.nodes.update(other.nodes)

    @property
    def n_failed(self) -> int:
        return self.counts["failed"]

    def line(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        why = "; ".join(f"{k} x{v}" for k, v in self.reasons.most_common(3))
        return f"{self.stage:<8} {self.seconds:6.1f}s  {parts}" + (f"  (failures: {why})" if why else "")


class Stage:
    """One pipeline step. Subclasses set the class fields and implement ``items`` and ``process``.

    Fields: ``name`` the stage in failures and finished rows; ``inputs`` the tables read; ``output`` the
    table written; ``item_column`` the output column that names the item a row came from ("" when rows do
    not name it: then an item that writes nothing is not recorded and runs again); ``batch_size`` items per
    ``process`` call; ``parallel`` True when items may run in several worker processes at once on one
    machine (CPU-bound, no shared model); ``resources`` what one copy needs (a stage that asks for a GPU
    runs in long-lived workers, one loaded model each). ``variant`` names what makes a rerun other work
    (model, prompt version), "" by default.

    ``items`` lists the work (one dict per item, with ``item_id``), ``done_ids`` what the output table
    already holds, ``process`` maps one batch of items to output rows; an exception in ``process`` for a
    single-item batch becomes a ``failures`` row. ``units`` may cut one item into parts that run apart
    (``run_unit``) and are joined by ``combine`` into the item's rows.
    """

    name = "stage"
    inputs: tuple[str, ...] = ()
    output = ""
    item_column = ""
    batch_size = 1
    parallel = False
    resources = Resources()

    @property
    def variant(self) -> str:
        return ""

    def setup(self, ds: Dataset) -> None:
        """Load heavy things once per worker (models, processors)."""

    def items(self, ds: Dataset) -> list[dict]:
        raise NotImplementedError

    def done_ids(self, ds: Dataset) -> set[str]:
        return set()

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        raise NotImplementedError

    def make_batches(self, pending: list[dict]) -> list[list[dict]]:
        """Fixed-size batches; model stages pack by a token budget instead."""
        return list(chunks(pending, self.batch_size))

    def units(self, item: dict) -> list[dict] | None:
        """Parts of one long item that may run on different workers; None: the item runs whole."""
        return None

    def run_unit(self, unit: dict):
        """One part of an item (no dataset access: it may run on any node); its result goes to ``combine``."""
        raise NotImplementedError

    def combine(self, item: dict, parts: list, stats: Stats) -> list[dict]:
        """The item's rows from the results of all its units, in unit order."""
        raise NotImplementedError


def item_size(item: dict) -> float:
    """What longest-first scheduling sorts by."""
    return float(item.get("duration_s") or item.get("bytes") or item.get("n_frames") or 0)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n), for cluster schedulers that start n copies of a job."""
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r} must look like i/n, e.g. 0/8") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def in_shard(item_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    return int(stable_id("shard", item_id, n=8), 16) % shard[1] == shard[0]


def pending_items(stage: Stage, ds: Dataset, stats: Stats, shard=None, max_items: int | None = None,
                  videos: frozenset[str] | None = None) -> list[dict]:
    """The stage's items in this shard (and of these videos, when given) that are not done yet (counted as
    skipped_done)."""
    todo = [it for it in stage.items(ds) if in_shard(it["item_id"], shard)
            and (videos is None or it.get("video_id") in videos)]
    done = done_items(stage, ds)
    pending = [it for it in todo if it["item_id"] not in done]
    stats.add("skipped_done", len(todo) - len(pending))
    return pending[:max_items] if max_items is not None else pending


def done_items(stage: Stage, ds: Dataset) -> set[str]:
    """Items a run skips: those the output table holds and those that finished with nothing to write."""
    return stage.done_ids(ds) | ds.finished(stage.name, stage.variant)


def write_batch(stage: Stage, ds: Dataset, batch: list[dict], rows: list[dict], stats: Stats) -> None:
    """A batch's rows, then its items that wrote none and did not fail, as finished.

    Each item's outcome lives in one table, so a kill between the two writes only repeats the items
    not yet recorded.
    """
    if rows:
        ds.write(stage.output, rows)
        stats.add("rows_written", len(rows))
    empty = empty_items(stage, batch, rows, stats.failed_ids)
    if empty:
        ds.finish(stage.name, stage.variant, empty)
        stats.add("finished_empty", len(empty))


def empty_items(stage: Stage, batch: list[dict], rows: list[dict], failed: set[str]) -> list[str]:
    """Items of the batch that completed without error and wrote no row."""
    if not stage.item_column:
        return []
    written = {r[stage.item_column] for r in rows}
    return [it["item_id"] for it in batch if it["item_id"] not in written and it["item_id"] not in failed]


def fail_item(stage: Stage, ds: Dataset, stats: Stats, item_id: str, error: BaseException, raw: str = "") -> None:
    """An item that failed: a `failures` row, a count by error type, a log line; the batch goes on."""
    log.warning("%s: %s failed: %s", stage.name, item_id, error)
    stats.failed(type(error).__name__, item_id)
    ds.fail(stage.name, item_id, error, raw=raw, variant=stage.variant)


def process_batch(stage: Stage, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
    """``stage.process`` with a bad item isolated: a failing batch is retried one item at a time."""
    try:
        return stage.process(batch, ds, stats)
    except Exception as e:
        if len(batch) > 1:
            return [r for item in batch for r in process_batch(stage, [item], ds, stats)]
        fail_item(stage, ds, stats, batch[0]["item_id"], e, raw=getattr(e, "raw", ""))
        return []


class GroupedWriter:
    """Collects finished batches and writes them together once ``rows`` rows or ``seconds`` have gathered
    (0 and 0: each batch at once, as a single machine does), so a cluster writes few large files instead
    of one per batch. Items count as done only once written: a crash loses at most one group's work."""

    def __init__(self, stage: Stage, ds: Dataset, stats: Stats, rows: int = 0, seconds: float = 0.0):
        self.stage, self.ds, self.stats = stage, ds, stats
        self.max_rows, self.max_s = rows, seconds
        self.batch: list[dict] = []
        self.rows: list[dict] = []
        self.since = time.monotonic()

    def add(self, batch: list[dict], rows: list[dict]) -> None:
        self.batch += batch
        self.rows += rows
        full = self.max_rows > 0 and len(self.rows) >= self.max_rows
        old = self.max_s > 0 and time.monotonic() - self.since >= self.max_s
        if full or old or (self.max_rows <= 0 and self.max_s <= 0):
            self.flush()

    def flush(self) -> None:
        if self.batch:
            write_batch(self.stage, self.ds, self.batch, self.rows, self.stats)
            self.stats.add("writes")
        self.batch, self.rows, self.since = [], [], time.monotonic()


def key_set(ds: Dataset, table: str, column: str) -> set[str]:
    """Distinct values of one column of a table, e.g. the videos that already have segments."""
    return set(ds.read(table, [column]).column(column).to_pylist())


def chunks(seq: list, n: int) -> Iterable[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
