"""A model worker (Ray actor) that dies for good fails its item and is replaced; the rest goes on."""

import os
import sys

import pytest
import ray

import curation.executors.ray as ray_executor
from curation.executors import RunOptions, run_stage
from curation.stage import Resources, Stage
from curation.store import Dataset


class DiesOnActor(Stage):
    """A model-like stage (asks for a GPU, so it runs in actors) whose worker exits on the ``fatal`` item."""

    name = "dies_on_actor"
    output = "videos"
    item_column = "video_id"
    resources = Resources(cpus=1.0, gpus=1.0)

    def __init__(self, fatal: str):
        self.fatal = fatal

    def items(self, ds):
        return [{"item_id": i} for i in "abcdef"]

    def done_ids(self, ds):
        return set(ds.read("videos", ["video_id"]).column("video_id").to_pylist())

    def process(self, batch, ds, stats):
        if any(it["item_id"] == self.fatal for it in batch):
            os._exit(3)
        return [{"video_id": it["item_id"], "uri": f"/v/{it['item_id']}.mp4"} for it in batch]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    yield
    ray_executor.shutdown_actors()
    ray.shutdown()


def test_a_dead_actor_never_gets_work_again(tmp_path, monkeypatch):
    monkeypatch.setattr(ray_executor, "RETRIES", 1)  # one restart, then the actor is dead for good
    ds = Dataset(tmp_path / "d")
    stats = run_stage(DiesOnActor("c"), ds, progress=False,
                      options=RunOptions(executor="ray", min_actors=1, max_actors=1))
    assert sorted(r["video_id"] for r in ds.rows("videos")) == ["a", "b", "d", "e", "f"]
    (failure,) = ds.rows("failures")
    assert (failure["item_id"], failure["error_type"]) == ("c", "WorkerDied")
    assert "item c" in failure["message"]
    assert stats.counts["actors_replaced"] == 1
    (pool,) = ray_executor._ACTORS.values()
    assert len(pool) == 1 and ray.get(pool[0].node.remote())  # the cached actor is the live replacement
