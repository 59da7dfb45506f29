"""The Ray executor: CPU stages as Ray tasks, model stages as a pool of actors (one loaded model each).

The driver lists the items, skips what is done, plans the work (batches, and the units of long items) and
writes every result through the same write path as the local executor, to a dataset folder every node sees or
a bucket (the workers get the storage options and credentials in their ``runtime_env``). Ray retries a task or
restarts an actor whose worker died; work that still fails becomes failures rows, and an actor dead for good
is replaced, never given work again. Actors stay up across model stages of one pipeline run
(``shutdown_actors`` ends them), so a worker loads its model, or vLLM engine, once for caption, ground and
verify.
"""

from __future__ import annotations

import logging

from curation import storage
from curation.executors.work import Collector, WorkerDied, died_message, plan_work, run_work
from curation.stage import Stage, Stats
from curation.store import Dataset

log = logging.getLogger("densevid")
RETRIES = 3  # of a task whose worker died, and restarts of a killed actor
_ACTORS: dict[tuple, list] = {}  # (dataset, cpus, gpus) -> live actors, reused by the next model stage


def connect(address: str = ""):
    """Join the cluster at ``address`` ("auto": the one this node belongs to), or start a local one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    return ray


def run_ray(stage: Stage, ds: Dataset, pending: list[dict], stats: Stats, bar, writer, opts) -> None:
    ray = connect(opts.ray_address)
    works = plan_work(stage, pending)
    collector = Collector(stage, ds, stats, writer, bar, works)
    if stage.resources.gpus > 0:
        _run_actors(ray, stage, ds, works, collector, opts)
    else:
        _run_tasks(ray, stage, ds, works, collector)


# --- CPU stages: tasks ----------------------------------------------------------------------------------------


def _run_tasks(ray, stage: Stage, ds: Dataset, works, collector: Collector) -> None:
    res = stage.resources
    if _ACTORS and ray.available_resources().get("CPU", 0) < res.cpus:
        shutdown_actors()  # model workers kept for a later stage hold the CPUs these tasks need
    task = ray.remote(_task).options(num_cpus=res.cpus, memory=_memory(res), max_retries=RETRIES,
                                     runtime_env=_runtime_env())
    stage_ref = ray.put(stage)
    window = max(2, int(2 * ray.cluster_resources().get("CPU", 1)))  # in flight, so results stream back
    queue = list(reversed(works))
    running: dict = {}
    while queue or running:
        while queue and len(running) < window:
            work = queue.pop()
            running[task.remote(stage_ref, str(ds.root), work)] = work
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            _collect(ray, ref, running.pop(ref), collector)


_SET_UP: dict = {}  # per worker process: the stage set up last, by its config


def _task(stage: Stage, root: str, work):
    key = (type(stage).__name__, repr(stage), root)
    if key not in _SET_UP:
        _SET_UP.clear()
        ds = Dataset(root)
        stage.setup(ds)
        _SET_UP[key] = (stage, ds)
    stage, ds = _SET_UP[key]
    return _on_node(run_work(stage, ds, work))


def _on_node(out):
    """Count the work on the node that did it."""
    import ray

    out[1].nodes[ray.get_runtime_context().get_node_id()] += 1
    return out


def _collect(ray, ref, work, collector: Collector) -> bool:
    """The work's rows, or its failure; False when the worker that ran it died for good."""
    try:
        result, part_stats = ray.get(ref)
    except (ray.exceptions.ActorDiedError, ray.exceptions.WorkerCrashedError):  # retries and restarts spent
        collector.failed(work, WorkerDied(died_message(collector.stage, work)))
        return False
    except Exception as e:  # a unit raised
        collector.failed(work, _cause(e))
        return True
    collector.done(work, result, part_stats)
    return True


def _cause(error: BaseException) -> BaseException:
    """The exception raised in the task, not Ray's wrapper around it."""
    return getattr(error, "cause", None) or error


def _runtime_env() -> dict | None:
    """Workers on other nodes get the storage options and credentials with the work, not from a shared
    folder or the environment their node was started with (read per stage: a command may change them)."""
    env = storage.worker_env()
    return {"env_vars": env} if env else None


def _memory(res) -> int | None:
    return int(res.memory_gb * 2**30) or None


# --- model stages: a pool of actors ---------------------------------------------------------------------------


class StageWorker:
    """Holds one set-up stage (its model stays loaded in this process for the next stage)."""

    def __init__(self, root: str):
        self.ds = Dataset(root)
        self.key = None
        self.stage = None

    def run(self, key, stage: Stage, work):
        if key != self.key:
            stage.setup(self.ds)
            self.key, self.stage = key, stage
        return _on_node(run_work(self.stage, self.ds, work))

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def _run_actors(ray, stage: Stage, ds: Dataset, works, collector: Collector, opts) -> None:
    pool_key, actors = _pool(ray, stage, ds, len(works), opts)
    key = (type(stage).__name__, repr(stage))
    stage_ref = ray.put(stage)
    queue = list(reversed(works))
    running: dict = {}
    free = list(actors)
    while queue or running:
        while queue and free:
            actor, work = free.pop(), queue.pop()
            running[actor.run.remote(key, stage_ref, work)] = (actor, work)
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            actor, work = running.pop(ref)
            if _collect(ray, ref, work, collector):
                free.append(actor)
                continue
            _ACTORS[pool_key].remove(actor)  # dead: a later stage must not get it either
            if queue:
                free.append(_new_actor(ray, stage, ds, pool_key))
                collector.stats.add("actors_replaced")


def _new_actor(ray, stage: Stage, ds: Dataset, pool_key: tuple):
    gpus = pool_key[2]
    cls = ray.remote(StageWorker).options(num_cpus=stage.resources.cpus, num_gpus=gpus, memory=_memory(stage.resources),
                                          max_restarts=RETRIES, max_task_retries=RETRIES, runtime_env=_runtime_env())
    actor = cls.remote(str(ds.root))
    _ACTORS[pool_key].append(actor)
    return actor


def pool_size(stage: Stage, cluster: dict, n_works: int, min_actors: int, max_actors: int) -> int:
    """As many actors as the cluster's GPUs (or CPUs, without GPUs) hold, within the bounds and the work."""
    res = stage.resources
    fit = cluster.get("GPU", 0) // res.gpus if res.gpus and cluster.get("GPU", 0) else \
        cluster.get("CPU", 1) // max(res.cpus, 1e-9)
    size = max(min_actors, int(fit))
    if max_actors:
        size = min(size, max_actors)
    return max(1, min(size, n_works))


def _pool(ray, stage: Stage, ds: Dataset, n_works: int, opts) -> list:
    cluster = ray.cluster_resources()
    gpus = stage.resources.gpus if cluster.get("GPU", 0) else 0
    if stage.resources.gpus and not gpus:
        log.warning("%s: the cluster has no GPU; its model workers run on CPU", stage.name)
    key = (str(ds.root), stage.resources.cpus, gpus)
    want = pool_size(stage, cluster, n_works, opts.min_actors, opts.max_actors)
    for other in [k for k in _ACTORS if k != key]:  # a different shape: free its resources first
        _kill(ray, _ACTORS.pop(other))
    actors = _ACTORS.setdefault(key, [])
    while len(actors) < want:
        _new_actor(ray, stage, ds, key)
    return key, actors[:want]


def shutdown_actors() -> None:
    """End the model workers kept for the next stage (the end of a pipeline run)."""
    if not _ACTORS:
        return
    import ray

    for key in list(_ACTORS):
        _kill(ray, _ACTORS.pop(key))


def _kill(ray, actors: list) -> None:
    for a in actors:
        ray.kill(a)
