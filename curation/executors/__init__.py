"""Executors run the same stage objects in different places: ``local`` (this process, or a pool of
processes with ``workers``) and ``ray`` (tasks and actor pools on a Ray cluster). Both skip what is done,
write through the one write path (``curation.stage.write_batch``), turn failures into rows, show progress,
compact the tables a stage wrote when it left many files, record the run (``Dataset.record_run``) and
return the same ``Stats``."""

from __future__ import annotations

import time
from dataclasses import dataclass

from curation.progress import progress as progress_bar
from curation.stage import GroupedWriter, Stage, Stats, done_items, pending_items
from curation.store import Dataset

EXECUTORS = ("local", "ray")


@dataclass
class RunOptions:
    """Where and how stages run.

    ``workers`` processes for CPU stages on this machine (local); ``shard`` i/n of the items; ``ray_address``
    the cluster to join ("" starts or reuses a local one); ``min_actors`` / ``max_actors`` bound the pool of
    workers of a model stage (0: as many as the cluster's GPUs, or CPUs, hold); ``write_rows`` /
    ``write_every_s`` group finished batches into fewer files (0/0: a file per batch); ``compact_above``
    compacts a table the stage wrote to one file once it has more files than this (0: never); ``videos``
    limits a stage to the items of these videos (a round's pool).
    """

    executor: str = "local"
    workers: int = 1
    shard: tuple[int, int] | None = None
    ray_address: str = ""
    min_actors: int = 1
    max_actors: int = 0
    write_rows: int = 0
    write_every_s: float = 0.0
    compact_above: int = 64
    videos: frozenset[str] | None = None

    def problems(self) -> list[str]:
        out = []
        if self.executor not in EXECUTORS:
            out.append(f"--executor {self.executor!r}: choose one of {', '.join(EXECUTORS)}")
        if self.min_actors < 1:
            out.append(f"--ray-min-actors {self.min_actors} must be >= 1")
        if self.max_actors and self.max_actors < self.min_actors:
            out.append(f"--ray-max-actors {self.max_actors} < --ray-min-actors {self.min_actors}")
        if self.write_rows < 0 or self.write_every_s < 0:
            out.append("--write-rows and --write-every-s must be >= 0 (0: a file per batch)")
        return out


def run_stage(stage: Stage, ds: Dataset, progress: bool = True, max_items: int | None = None, workers: int = 1,
              shard: tuple[int, int] | None = None, options: RunOptions | None = None) -> Stats:
    """Run one stage: skip finished items, process the rest, write as batches complete, then compact."""
    opts = options or RunOptions(workers=workers, shard=shard)
    stats = Stats(stage.name)
    t0 = time.perf_counter()
    pending = pending_items(stage, ds, stats, opts.shard, max_items, opts.videos)
    bar = progress_bar(total=len(pending), desc=stage.name, enabled=progress)
    writer = GroupedWriter(stage, ds, stats, opts.write_rows, opts.write_every_s)
    if pending:
        if opts.executor == "ray":
            from curation.executors.ray import run_ray

            run_ray(stage, ds, pending, stats, bar, writer, opts)
        else:
            from curation.executors.local import run_local

            run_local(stage, ds, pending, stats, bar, writer, opts.workers)
    writer.flush()
    bar.close()
    _close_failures(stage, ds, stats)
    if opts.compact_above:
        for table in (stage.output, "finished", "failures", "resolved"):
            if table and len(ds.files(table)) > opts.compact_above:
                before, after = ds.compact(table)
                stats.add(f"compacted_{table}_files", before - after)
    ds.refresh_catalog()
    stats.seconds = time.perf_counter() - t0
    ds.record_run(stage.name, stage.variant, dict(
        finished_at=time.time(), seconds=stats.seconds, executor=opts.executor, shard=opts.shard, items=len(pending),
        counts=dict(stats.counts), reasons=dict(stats.reasons)))
    return stats


def _close_failures(stage: Stage, ds: Dataset, stats: Stats) -> None:
    """Earlier failures of items this stage has completed since (in this run or another) are resolved."""
    done = None
    for variant in dict.fromkeys((stage.variant, "")):  # '': rows written before failures named a variant
        open_ids = ds.open_failure_ids(stage.name, variant) - stats.failed_ids
        if open_ids:
            done = done_items(stage, ds) if done is None else done
            closed = ds.resolve(stage.name, open_ids & done, variant=variant)
            if closed:
                stats.add("resolved_failures", closed)
