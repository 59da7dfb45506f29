"""Two simulated Ray nodes: one long video is split by workers on both, and the joined cuts equal one pass;
the pipeline's tables equal a local run's."""

from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from curation.executors import RunOptions, run_stage
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from synth.videos import make_corpus
from conftest import assert_same_tables

RAY = RunOptions(executor="ray", write_rows=1000, write_every_s=30.0)


@pytest.fixture(scope="module", autouse=True)
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("long2")
    make_corpus(root, [("cinematic", "long", 30, 6, 1)], fps=24.0, size=(160, 128))
    return root


def test_one_long_video_is_split_on_both_nodes(long_video, tmp_path):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    one, spread = Dataset(tmp_path / "one"), Dataset(tmp_path / "spread")
    run_stage(IngestStage(videos=long_video), one, progress=False)
    run_stage(SplitStage(), one, progress=False)
    run_stage(IngestStage(videos=long_video), spread, progress=False, options=RAY)
    stats = run_stage(SplitStage(chunk_s=2.0), spread, progress=False, options=RAY)
    assert stats.n_failed == 0
    assert len(stats.nodes) == 2 and sum(stats.nodes.values()) == 15, dict(stats.nodes)
    segs = lambda ds: sorted((r["segment_id"], r["start_frame"], r["end_frame"], r["cut_score"])
                             for r in ds.rows("segments"))
    assert segs(spread) == segs(one) and len(segs(one)) >= 5


def test_the_pipeline_on_two_nodes_writes_the_local_tables(built_dataset, tmp_path):
    from dataclasses import replace

    from densevid.pipeline import run_pipeline

    local_cfg = replace(built_dataset[0], data=tmp_path / "local", retries=0)  # greedy: see test_ray_executor
    cfg = replace(local_cfg, data=tmp_path / "two-nodes", executor="ray")
    run_pipeline(local_cfg, progress=False)
    results = run_pipeline(cfg, progress=False)
    assert_same_tables(Dataset(local_cfg.data), Dataset(cfg.data))
    split = next(r for r in results if r.stage == "split")
    assert len(split.nodes) == 2, dict(split.nodes)
