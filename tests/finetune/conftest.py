"""Fixtures for the fine-tune tests: a mixture of every sample of the small built dataset."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mixture(built_dataset):
    from curation.store import Dataset
    from mixtures.balance import build_mixture
    from mixtures.recipe import MixRecipe

    cfg, _ = built_dataset
    return build_mixture(Dataset(cfg.data), MixRecipe(name="ft-all", split="", holdout=(), balance_by=()))


@pytest.fixture(scope="session")
def rows(mixture):
    from mixtures.balance import read_manifest

    return read_manifest(mixture)


@pytest.fixture
def overrides(tiny_model, mixture, tmp_path):
    """Small, fast settings on top of any recipe: batches of a few samples, no TensorBoard."""
    return [f"model={tiny_model}", f"mixture={mixture}", f"output_dir={tmp_path / 'run'}", "max_steps=3",
            "log_every=1", "save_every=0", "tensorboard=false", "data.num_workers=0", "data.tokens_per_batch=800",
            "data.max_length=800", "data.max_batch_size=4", "optim.warmup_steps=1", "llm.lr=2e-3"]


@pytest.fixture
def fake_mixture(tmp_path):
    """A folder that passes the config's mixture check (no data: for config-only tests)."""
    d = tmp_path / "mix"
    d.mkdir()
    (d / "manifest.parquet").write_bytes(b"")
    return str(d)
