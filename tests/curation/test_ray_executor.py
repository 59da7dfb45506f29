"""The Ray executor on a local Ray cluster: the same tables as the local executor (keys and values), failures
as rows, and a worker killed mid-stage retried without loss or duplicates."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray

from curation.executors import RunOptions, run_stage
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from densevid.pipeline import run_pipeline
from synth.videos import make_corpus
from conftest import assert_same_tables

RAY = RunOptions(executor="ray", write_rows=1000, write_every_s=30.0)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def greedy_local(built_dataset, tmp_path_factory):
    """The demo pipeline run locally with greedy decoding only: a sampled retry (after an output breaks a
    rule) need not come out the same in another worker process, a greedy output does."""
    from dataclasses import replace

    cfg = replace(built_dataset[0], data=tmp_path_factory.mktemp("greedy") / "local", retries=0)
    run_pipeline(cfg, progress=False)
    return cfg


def test_the_demo_pipeline_on_ray_writes_the_local_tables(greedy_local, tmp_path):
    from dataclasses import replace

    local_cfg = greedy_local
    cfg = replace(local_cfg, data=tmp_path / "ray", executor="ray")
    run_pipeline(cfg, progress=False)
    assert_same_tables(Dataset(local_cfg.data), Dataset(cfg.data))
    assert Dataset(cfg.data).counts()["samples"] > 0
    # a rerun finds everything done
    again = run_pipeline(cfg, progress=False)
    assert sum(r.counts["rows_written"] for r in again) == 0


def test_broken_videos_fail_as_rows_exactly_as_locally(bad_corpus, tmp_path):
    local, remote = Dataset(tmp_path / "local"), Dataset(tmp_path / "ray")
    for ds, opts in ((local, RunOptions()), (remote, RAY)):
        ingest = run_stage(IngestStage(videos=bad_corpus), ds, progress=False, options=opts)
        run_stage(SplitStage(), ds, progress=False, options=opts)
        assert ingest.n_failed == 4
    assert_same_tables(local, remote)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("long")
    make_corpus(root, [("cinematic", "long", 30, 6, 1)], fps=24.0, size=(160, 128))
    return root


def ray_task_pids(name: str) -> list[int]:
    """Processes whose title says they run our Ray task right now (Ray titles a busy worker ray::<task>)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith(f"ray::{name}"):
                pids.append(int(entry))
    return pids


def test_a_worker_killed_mid_stage_is_retried(long_video, tmp_path):
    one, killed = Dataset(tmp_path / "one"), Dataset(tmp_path / "killed")
    run_stage(IngestStage(videos=long_video), one, progress=False)
    run_stage(SplitStage(), one, progress=False)
    run_stage(IngestStage(videos=long_video), killed, progress=False, options=RAY)
    out = {}
    stage = SplitStage(chunk_s=2.0)  # 15 units of one 30 s video
    run = threading.Thread(target=lambda: out.update(stats=run_stage(stage, killed, progress=False, options=RAY)))
    run.start()
    victim, deadline = None, time.time() + 120
    while victim is None and run.is_alive() and time.time() < deadline:
        pids = ray_task_pids("_task")
        if pids:
            victim = pids[0]
            os.kill(victim, signal.SIGKILL)
        time.sleep(0.005)
    run.join()
    assert victim is not None, "a worker must be killed while it runs a chunk"
    assert out["stats"].n_failed == 0
    segs = lambda ds: sorted((r["segment_id"], r["start_frame"], r["end_frame"]) for r in ds.rows("segments"))
    assert segs(killed) == segs(one)
    n = killed.sql("SELECT count(*) AS n, count(DISTINCT segment_id) AS d FROM segments").to_pylist()[0]
    assert n["n"] == n["d"]
