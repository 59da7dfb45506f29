"""The local executor: this process, or a pool of processes for CPU stages (``workers``).

A worker process that dies (a decoder crash, the out-of-memory killer) breaks the whole pool; the works
that were in flight then run again one at a time in a fresh pool, a batch split into its items, so the
item that kills its worker is the one that fails, and the rest goes on in a new pool.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from curation.executors.work import Collector, Work, WorkerDied, died_message, plan_work, run_work
from curation.stage import Stage, Stats, item_size, process_batch
from curation.store import Dataset


def run_local(stage: Stage, ds: Dataset, pending: list[dict], stats: Stats, bar, writer, workers: int = 1) -> None:
    if workers > 1 and stage.parallel:
        works = plan_work(stage, pending)
        if len(works) > 1:
            return _run_pool(stage, ds, works, stats, bar, writer, workers)
    stage.setup(ds)
    for batch in stage.make_batches(pending):
        writer.add(batch, process_batch(stage, batch, ds, stats))
        bar.update(len(batch))


def _run_pool(stage: Stage, ds: Dataset, works, stats: Stats, bar, writer, workers: int) -> None:
    collector = Collector(stage, ds, stats, writer, bar, works)
    queue = list(reversed(works))
    while queue:
        suspects = _drain(stage, ds, queue, collector, workers)
        if suspects:
            stats.add("worker_restarts")
            _isolate(stage, ds, suspects, collector)


def _isolate(stage: Stage, ds: Dataset, suspects: list[Work], collector: Collector) -> None:
    """Run the works that were in flight when a worker died alone, one after another: a death now names
    its work. A batch that kills is split into its items; an item or unit that kills fails."""
    queue = list(reversed(suspects))
    while queue:
        for work in _drain(stage, ds, queue, collector, 1):
            collector.stats.add("worker_restarts")
            if work.unit is None and len(work.items) > 1:
                queue += [Work([it], size=item_size(it)) for it in reversed(work.items)]
            else:
                collector.failed(work, WorkerDied(died_message(stage, work)))


def _drain(stage: Stage, ds: Dataset, queue: list[Work], collector: Collector, workers: int) -> list[Work]:
    """Run works off the end of ``queue`` in a fresh pool, at most ``workers`` in flight (so each one that
    is in flight is running); returns those in flight when a worker died, [] when the queue is done."""
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(stage, str(ds.root))) as pool:
        running: dict = {}
        while queue or running:
            broken_now = False
            while queue and len(running) < workers and not broken_now:
                try:
                    running[pool.submit(_worker_run, queue[-1])] = queue[-1]
                    queue.pop()
                except BrokenProcessPool:  # a worker died before its future said so: this work never ran
                    broken_now = True
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = _settle({fut: running.pop(fut) for fut in done}, collector)
            if broken or broken_now:
                wait(running)  # the others end too, with a result or the same breakage
                return broken + _settle(running, collector)
    return []


def _settle(futures: dict, collector: Collector) -> list[Work]:
    """Hand finished futures' results (or errors) to the collector; returns the works whose worker died."""
    broken = []
    for fut, work in futures.items():
        try:
            result, part_stats = fut.result()
        except BrokenProcessPool:
            broken.append(work)
            continue
        except Exception as e:  # a unit raised, or its result could not be sent back
            collector.failed(work, e)
            continue
        collector.done(work, result, part_stats)
    return broken


_WORKER: dict = {}


def _worker_init(stage: Stage, root: str) -> None:
    ds = Dataset(root)
    stage.setup(ds)
    _WORKER.update(stage=stage, ds=ds)


def _worker_run(work):
    return run_work(_WORKER["stage"], _WORKER["ds"], work)
