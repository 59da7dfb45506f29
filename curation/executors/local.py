"""The local executor: this process, or a pool of processes for CPU stages (``workers``)."""

from __future__ import annotations

from curation.executors.work import Collector, plan_work, run_work
from curation.stage import Stage, Stats, process_batch
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
    from concurrent.futures import ProcessPoolExecutor, as_completed

    collector = Collector(stage, ds, stats, writer, bar, works)
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(stage, str(ds.root))) as pool:
        futures = {pool.submit(_worker_run, work): work for work in works}
        for fut in as_completed(futures):
            work = futures[fut]
            try:
                result, part_stats = fut.result()
            except Exception as e:  # a worker died (decoder crash, out of memory) or a unit raised
                collector.failed(work, e)
                continue
            collector.done(work, result, part_stats)


_WORKER: dict = {}


def _worker_init(stage: Stage, root: str) -> None:
    ds = Dataset(root)
    stage.setup(ds)
    _WORKER.update(stage=stage, ds=ds)


def _worker_run(work):
    return run_work(_WORKER["stage"], _WORKER["ds"], work)
