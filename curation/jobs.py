"""Stages and the local executor: a stage maps a batch of input rows to output rows; the executor
skips keys already written, writes atomically, records failures and reports counts and time."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from tqdm.auto import tqdm

from curation.store import Dataset

log = logging.getLogger("densevid")


@dataclass
class Stats:
    stage: str
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def failed(self, reason: str) -> None:
        self.counts["failed"] += 1
        self.reasons[reason] += 1

    @property
    def n_failed(self) -> int:
        return self.counts["failed"]

    def line(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        why = "; ".join(f"{k} x{v}" for k, v in self.reasons.most_common(3))
        return f"{self.stage:<8} {self.seconds:6.1f}s  {parts}" + (f"  (failures: {why})" if why else "")


class Stage:
    """One pipeline step. Subclasses set ``name``, ``output`` and implement ``items`` and ``process``.

    ``items`` lists the work (one dict per item, with ``item_id``), ``done_ids`` what is already written,
    ``process`` maps one batch of items to output rows; an exception in ``process`` for a single-item
    batch becomes a ``failures`` row.
    """

    name = "stage"
    output = ""
    batch_size = 1
    resources = {"cpus": 1, "gpus": 0}

    def setup(self, ds: Dataset) -> None:
        """Load heavy things once (models, processors)."""

    def items(self, ds: Dataset) -> list[dict]:
        raise NotImplementedError

    def done_ids(self, ds: Dataset) -> set[str]:
        return set()

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        raise NotImplementedError


def run_stage(stage: Stage, ds: Dataset, progress: bool = True, max_items: int | None = None) -> Stats:
    """Run one stage locally: skip finished items, process the rest in batches, write each batch."""
    stats = Stats(stage.name)
    t0 = time.perf_counter()
    todo = stage.items(ds)
    done = stage.done_ids(ds)
    failed_before = {k[1] for k in ds.keys("failures") if k[0] == stage.name}
    pending = [it for it in todo if it["item_id"] not in done]
    stats.add("skipped_done", len(todo) - len(pending))
    if max_items is not None:
        pending = pending[:max_items]
    if pending:
        stage.setup(ds)
    bar = tqdm(total=len(pending), desc=stage.name, unit="item", disable=not progress, leave=False)
    for start in range(0, len(pending), stage.batch_size):
        batch = pending[start : start + stage.batch_size]
        rows = _process_batch(stage, batch, ds, stats, failed_before)
        if rows:
            ds.write(stage.output, rows)
            stats.add("rows_written", len(rows))
        bar.update(len(batch))
    bar.close()
    ds.refresh_catalog()
    stats.seconds = time.perf_counter() - t0
    return stats


def _process_batch(stage: Stage, batch: list[dict], ds: Dataset, stats: Stats, failed_before: set) -> list[dict]:
    try:
        return stage.process(batch, ds, stats)
    except Exception as e:
        if len(batch) > 1:  # isolate the bad item: retry one by one
            return [r for item in batch for r in _process_batch(stage, [item], ds, stats, failed_before)]
        item = batch[0]
        log.warning("%s: %s failed: %s", stage.name, item["item_id"], e)
        stats.failed(type(e).__name__)
        ds.fail(stage.name, item["item_id"], e, raw=getattr(e, "raw", ""))
        return []


def key_set(ds: Dataset, table: str, column: str) -> set[str]:
    """Distinct values of one column of a table, e.g. the videos that already have segments."""
    return set(ds.read(table, [column]).column(column).to_pylist())


def chunks(seq: list, n: int) -> Iterable[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
