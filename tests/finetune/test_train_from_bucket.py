"""Training from a bucket (a local S3 server): the manifest and every frame are read from the bucket in a
DataLoader worker process, and the per-step losses equal those of the same training on the local copy; the
length estimates that plan the batches read the videos' frame sizes from the bucket too."""

import json
import shutil
import uuid
from pathlib import Path

import pytest
from s3server import s3_endpoint, upload  # noqa: F401  (fixtures)

from curation import storage
from curation.store import TABLES, Dataset
from densevid.cli import main
from finetune.config import load_config
from finetune.data import ManifestDataset
from finetune.train import train
from mixtures.balance import read_manifest
from model.loader import load_processor

# lengths from the videos' frame sizes; 16 tokens a frame pair would cost what the stored token counts give
BUDGET = dict(max_frames=4, max_frame_tokens=8)


def _moved(value, places: dict[str, str]):
    if isinstance(value, str):
        for old, new in places.items():
            if value.startswith(old):
                return new + value[len(old):]
    return value


def put_on_bucket(local: Dataset, data: str, places: dict[str, str]) -> Dataset:
    """``local``'s tables written to ``data`` with every path under a key of ``places`` moved to its URL:
    the dataset as the pipeline on that bucket writes it (tests/densevid/test_object_store_cli.py checks that
    equality), without running the model stages a second time."""
    remote = Dataset(data)
    for table in TABLES:
        remote.write(table, [{k: _moved(v, places) for k, v in r.items()} for r in local.rows(table)])
    return remote


@pytest.fixture(scope="module")
def two_mixtures(built_dataset, corpus, s3_endpoint, tmp_path_factory):
    """The `balanced` mixture of the same dataset twice: on local disk, and on a bucket with its videos."""
    cfg, _ = built_dataset
    local = tmp_path_factory.mktemp("train-from-bucket") / "local"
    shutil.copytree(cfg.data, local)
    bucket = f"s3://densevid-{uuid.uuid4().hex[:10]}"
    fs, _ = storage.filesystem(bucket)
    fs.mkdir(bucket[len("s3://"):])
    videos, data = upload(corpus, f"{bucket}/videos"), f"{bucket}/ds"
    needles = upload(local / "needle_videos", f"{data}/needle_videos")  # haystacks live in the dataset folder
    places = {f"{corpus}/": f"{videos}/", f"{Path(cfg.data).resolve()}/needle_videos/": f"{needles}/"}
    put_on_bucket(Dataset(local), data, places)
    for where in (str(local), data):
        assert main(["-q", "mix", "balanced", "--data", where]) == 0
    return f"{local}/mixtures/balanced", f"{data}/mixtures/balanced"


def test_the_bucket_mixture_lists_the_local_samples_with_bucket_videos(two_mixtures, tiny_model):
    local_mix, bucket_mix = two_mixtures
    rows, local_rows = read_manifest(bucket_mix), read_manifest(local_mix)
    assert rows and all(r["uri"].startswith("s3://") for r in rows)  # every frame comes from the bucket
    assert [r["sample_id"] for r in rows] == [r["sample_id"] for r in local_rows]
    processor = load_processor(tiny_model)
    on_disk = ManifestDataset(local_rows, processor, 800, **BUDGET).lengths()
    assert ManifestDataset(rows, processor, 800, **BUDGET).lengths() == on_disk


def _train(overrides, mixture, out):
    run = overrides + [f"mixture={mixture}", f"output_dir={out}", "data.num_workers=1", "seed=3"]
    return train(load_config("lora", run), log=lambda *_: None)


def _samples_per_step(out) -> list[int]:
    return [json.loads(line)["samples"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_from_a_bucket_gives_the_local_losses(two_mixtures, overrides, tmp_path):
    local_mix, bucket_mix = two_mixtures
    on_disk = _train(overrides, local_mix, tmp_path / "disk")
    out = tmp_path / "bucket"
    from_bucket = _train(overrides, bucket_mix, out)

    assert from_bucket["dropped"] == on_disk["dropped"] == {}  # a frame that failed to load would be a drop
    assert len(from_bucket["losses"]) == 3
    assert from_bucket["losses"] == pytest.approx(on_disk["losses"], rel=1e-6, abs=1e-7)
    assert _samples_per_step(out) == _samples_per_step(tmp_path / "disk")
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
