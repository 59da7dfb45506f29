"""Two simulated Ray nodes and no shared folder: videos and dataset on a local S3 server, the endpoint and
keys reach the workers only with the work (Ray's runtime_env), and the tables equal a local run's, for
ingest and split (Ray tasks) and for the model stages caption, ground and verify (Ray actors, tiny model)."""

import json
import os

import pytest
import ray
from ray.cluster_utils import Cluster
from s3server import bucket, comparable_tables, s3_endpoint, upload  # noqa: F401  (fixtures)

from curation import storage
from curation.executors import RunOptions, run_stage
from curation.executors.ray import shutdown_actors
from curation.frames import FramePolicy
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from model.structured import Decoding
from synth.captions import CaptionStage
from synth.grounding import GroundStage, GroundTruthStage
from synth.verify import VerifyStage

RAY = RunOptions(executor="ray", write_rows=1000, write_every_s=30.0)


@pytest.fixture(scope="module")
def bare_nodes(s3_endpoint):
    """Two nodes whose processes start without any storage variable: nothing to inherit."""
    saved = {k: os.environ.pop(k) for k in storage.WORKER_ENV if k in os.environ}
    try:
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    finally:
        os.environ.update(saved)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@ray.remote(num_cpus=1)
def _storage_env():
    return {k: os.environ.get(k) for k in storage.WORKER_ENV if os.environ.get(k)}


def test_ingest_and_split_on_two_nodes_from_a_bucket_equal_a_local_run(bare_nodes, corpus, bucket, s3_endpoint,
                                                                     tmp_path, monkeypatch):
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    assert ray.get(_storage_env.remote()) == {}  # a worker without the work's runtime_env has no endpoint or keys

    local = Dataset(tmp_path / "local")
    run_stage(IngestStage(videos=corpus), local, progress=False)
    run_stage(SplitStage(), local, progress=False)

    videos, data = upload(corpus, f"{bucket}/videos"), f"{bucket}/ds"
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the endpoint travels as a storage option, the keys as AWS_*
    monkeypatch.setenv(storage.OPTIONS_ENV, json.dumps({"endpoint_url": s3_endpoint}))
    remote = Dataset(data)
    ingest = run_stage(IngestStage(videos=storage.location(videos)), remote, progress=False, options=RAY)
    split = run_stage(SplitStage(), remote, progress=False, options=RAY)

    assert ingest.n_failed == 0 and split.n_failed == 0
    assert len(split.nodes) == 2, dict(split.nodes)
    assert comparable_tables(remote, (f"{videos}/", "<videos>/")) == \
        comparable_tables(local, (f"{corpus}/", "<videos>/"))
    assert remote.counts()["segments"] == local.counts()["segments"] > 0
    assert {r["uri"].split("/", 3)[2] for r in remote.rows("videos")} == {bucket[len("s3://"):]}


def model_stages(model) -> list[tuple]:
    """(stage, most items) for caption, ground, verify as the pipeline builds them, small: greedy only (a
    sampled retry's draw could differ in another worker process) and as many new tokens as the schema allows
    (nothing cut off); batches small enough to give both nodes work. Grounding on two segments only: the tiny
    model fills a record's schema, hundreds of tokens a segment."""
    common = dict(model_id=str(model), frames=FramePolicy(max_frames=4), decoding=Decoding(max_new_tokens=0),
                  max_retries=0)
    return [(CaptionStage(**common, batch_size=2), None), (GroundTruthStage(), None),
            (GroundStage(**common, batch_size=1), 2), (VerifyStage(**common, batch_size=2), None)]


def _ingest_and_split(ds, videos):
    """In this process: the model stages are what runs on the nodes."""
    run_stage(IngestStage(videos=storage.location(videos)), ds, progress=False)
    run_stage(SplitStage(), ds, progress=False)


def test_model_stages_on_two_nodes_from_a_bucket_equal_a_local_run(bare_nodes, corpus, tiny_model, bucket,
                                                                  s3_endpoint, tmp_path, monkeypatch):
    local = Dataset(tmp_path / "local")
    _ingest_and_split(local, corpus)
    for stage, most in model_stages(tiny_model):
        run_stage(stage, local, progress=False, max_items=most)

    videos, data = upload(corpus, f"{bucket}/videos"), f"{bucket}/ds"
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # as above: the endpoint reaches the workers only as a storage option
    monkeypatch.setenv(storage.OPTIONS_ENV, json.dumps({"endpoint_url": s3_endpoint}))
    remote = Dataset(data)
    _ingest_and_split(remote, videos)
    try:
        runs = {stage.name: run_stage(stage, remote, progress=False, max_items=most, options=RAY)
                for stage, most in model_stages(tiny_model)}
    finally:
        shutdown_actors()  # the model workers hold both nodes' CPUs

    assert {name: r.n_failed for name, r in runs.items()} == {name: 0 for name in runs}
    assert remote.rows("failures") == []
    for name in ("caption", "ground", "verify"):
        assert len(runs[name].nodes) == 2, (name, dict(runs[name].nodes))
    assert comparable_tables(remote, (f"{videos}/", "<videos>/")) == \
        comparable_tables(local, (f"{corpus}/", "<videos>/"))
    counts = remote.counts()
    assert counts["captions"] == counts["segments"] > 0
    assert {r["source"] for r in remote.rows("grounding")} == {"model", "ground_truth"}
    assert counts["verdicts"] == sum(r["source"] == "model" for r in remote.rows("grounding")) > 0
