"""Stages and the local executor: a stage maps a batch of input rows to output rows; the executor
skips items already done, writes atomically, records failures and items finished with nothing to write,
and reports counts and time."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from tqdm.auto import tqdm

from curation.store import Dataset, stable_id

log = logging.getLogger("densevid")


@dataclass
class Stats:
    """Counts and time of one stage run; ``failed_ids`` are the items that became failures rows."""

    stage: str
    counts: Counter = field(default_factory=Counter)
    reasons: Counter = field(default_factory=Counter)
    failed_ids: set[str] = field(default_factory=set)
    seconds: float = 0.0

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n

    def failed(self, reason: str, item_id: str) -> None:
        self.counts["failed"] += 1
        self.reasons[reason] += 1
        self.failed_ids.add(item_id)

    def merge(self, other: Stats) -> None:
        """Fold in the counts of a batch run elsewhere (a worker process)."""
        self.counts.update(other.counts)
        self.reasons.update(other.reasons)
        self.failed_ids |= other.failed_ids

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
    ``process`` call; ``parallel`` True when items may run in worker processes (CPU-bound, no shared
    model); ``resources`` what one copy needs. ``variant`` names what makes a rerun other work (model,
    prompt version), "" by default.

    ``items`` lists the work (one dict per item, with ``item_id``), ``done_ids`` what the output table
    already holds, ``process`` maps one batch of items to output rows; an exception in ``process`` for a
    single-item batch becomes a ``failures`` row.
    """

    name = "stage"
    inputs: tuple[str, ...] = ()
    output = ""
    item_column = ""
    batch_size = 1
    parallel = False
    resources = {"cpus": 1, "gpus": 0}

    @property
    def variant(self) -> str:
        return ""

    def setup(self, ds: Dataset) -> None:
        """Load heavy things once (models, processors)."""

    def items(self, ds: Dataset) -> list[dict]:
        raise NotImplementedError

    def done_ids(self, ds: Dataset) -> set[str]:
        return set()

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        raise NotImplementedError

    def make_batches(self, pending: list[dict]) -> list[list[dict]]:
        """Fixed-size batches; model stages pack by a token budget instead (after ``setup``)."""
        return list(chunks(pending, self.batch_size))


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


def run_stage(stage: Stage, ds: Dataset, progress: bool = True, max_items: int | None = None,
              workers: int = 1, shard: tuple[int, int] | None = None) -> Stats:
    """Run one stage: skip finished items, process the rest in batches, write each batch as it completes."""
    stats = Stats(stage.name)
    t0 = time.perf_counter()
    todo = [it for it in stage.items(ds) if in_shard(it["item_id"], shard)]
    done = done_items(stage, ds)
    pending = [it for it in todo if it["item_id"] not in done]
    stats.add("skipped_done", len(todo) - len(pending))
    if max_items is not None:
        pending = pending[:max_items]
    bar = tqdm(total=len(pending), desc=stage.name, unit="item", disable=not progress, leave=False)
    if workers > 1 and hasattr(stage, "run_parallel") and pending:
        stage.run_parallel(pending, ds, stats, bar, workers)
    elif workers > 1 and stage.parallel and len(pending) > stage.batch_size:
        run_batches_in_pool(stage, ds, list(chunks(pending, stage.batch_size)), stats, bar, workers)
    elif pending:
        stage.setup(ds)
        for batch in stage.make_batches(pending):
            write_batch(stage, ds, batch, _process_batch(stage, batch, ds, stats), stats)
            bar.update(len(batch))
    bar.close()
    ds.refresh_catalog()
    stats.seconds = time.perf_counter() - t0
    return stats


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
    ds.fail(stage.name, item_id, error, raw=raw)


def run_batches_in_pool(stage: Stage, ds: Dataset, batches: list[list[dict]], stats: Stats, bar, workers: int) -> None:
    """Longest items first, one batch per task, so a long video starts early and never runs alone at the end."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    batches.sort(key=lambda b: -sum(it.get("duration_s") or it.get("bytes") or 0 for it in b))
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(stage, str(ds.root))) as pool:
        futures = {pool.submit(_worker_process, batch): batch for batch in batches}
        for fut in as_completed(futures):
            batch = futures[fut]
            try:
                rows, batch_stats = fut.result()
            except Exception as e:  # a worker died (decoder crash, out of memory): its items fail, not the job
                for item in batch:
                    fail_item(stage, ds, stats, item["item_id"], e)
                bar.update(len(batch))
                continue
            stats.merge(batch_stats)
            write_batch(stage, ds, batch, rows, stats)
            bar.update(len(batch))


_WORKER: dict = {}


def _worker_init(stage: Stage, root: str) -> None:
    ds = Dataset(root)
    stage.setup(ds)
    _WORKER.update(stage=stage, ds=ds)


def _worker_process(batch: list[dict]) -> tuple[list[dict], Stats]:
    stats = Stats(_WORKER["stage"].name)
    rows = _process_batch(_WORKER["stage"], batch, _WORKER["ds"], stats)
    return rows, stats


def _process_batch(stage: Stage, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
    try:
        return stage.process(batch, ds, stats)
    except Exception as e:
        if len(batch) > 1:  # isolate the bad item: retry one by one
            return [r for item in batch for r in _process_batch(stage, [item], ds, stats)]
        fail_item(stage, ds, stats, batch[0]["item_id"], e, raw=getattr(e, "raw", ""))
        return []


def key_set(ds: Dataset, table: str, column: str) -> set[str]:
    """Distinct values of one column of a table, e.g. the videos that already have segments."""
    return set(ds.read(table, [column]).column(column).to_pylist())


def chunks(seq: list, n: int) -> Iterable[list]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
