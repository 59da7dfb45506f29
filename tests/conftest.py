"""Shared fixtures: a tiny Qwen3-VL checkpoint, a small generated corpus, and a dataset built from it."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore")

SMALL_CORPUS = [
    ("instructional", "tie", 14, 3, 1),
    ("cinematic", "run", 12, 3, 0),
    ("egocentric", "cook", 10, 2, 0),
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from model.tiny import build_tiny_checkpoint

    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-qwen3-vl")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    from synth.videos import make_corpus

    root = tmp_path_factory.mktemp("videos")
    make_corpus(root, SMALL_CORPUS, fps=24.0, size=(160, 128))
    return root


@pytest.fixture(scope="session")
def built_dataset(tmp_path_factory, corpus, tiny_model):
    """The whole pipeline, ingest through tasks (needle haystacks included), on the small corpus."""
    from densevid.pipeline import PipelineConfig, run_pipeline

    data = tmp_path_factory.mktemp("ds") / "dataset"
    cfg = PipelineConfig(data=data, videos=corpus, model=str(tiny_model), caption_frames=4, sample_frames=8,
                         batch_size=4, max_new_tokens=512, needle=True, needle_durations_s=(12.0,),
                         needle_depths=(0.2, 0.8))
    stats = run_pipeline(cfg, progress=False)
    return cfg, stats
