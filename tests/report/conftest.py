"""The report built over a copy of the session's pipeline dataset, with a mixture of its own."""

from __future__ import annotations

import shutil

import pytest


def copy_dataset(src, dst):
    """A copy of a dataset's tables (the catalog is rebuilt on first use; mixtures and clips stay behind)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("mixtures", "catalog.duckdb", "clips", "needle_videos"))
    return dst


@pytest.fixture(scope="session")
def report_dataset(built_dataset, tmp_path_factory):
    from curation.store import Dataset
    from mixtures.balance import build_mixtures
    from mixtures.recipe import load_mix_recipe

    cfg, _ = built_dataset
    root = copy_dataset(cfg.data, tmp_path_factory.mktemp("report") / "dataset")
    build_mixtures(Dataset(root), load_mix_recipe("balanced", {"name": "balanced", "split": "", "holdout": []}))
    return root


@pytest.fixture(scope="session")
def report_site(report_dataset, tmp_path_factory):
    from report.build import write_report

    out = tmp_path_factory.mktemp("site")
    return report_dataset, out, write_report(report_dataset, out, progress=False)
