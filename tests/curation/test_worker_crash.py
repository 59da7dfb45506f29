"""A local worker process that dies (a decoder crash, the OOM killer) fails its own item only."""

import os
import signal

import pytest

from curation.executors import run_stage
from curation.stage import Stage
from curation.store import Dataset

ITEMS = "abcdefgh"


class DiesOn(Stage):
    """Writes one videos row per item; its worker process dies on the items in ``fatal``."""

    name = "dies_on"
    output = "videos"
    item_column = "video_id"
    batch_size = 2
    parallel = True

    def __init__(self, fatal: set[str], how: str):
        self.fatal, self.how = fatal, how

    def items(self, ds):
        return [{"item_id": i} for i in ITEMS]

    def done_ids(self, ds):
        return set(ds.read("videos", ["video_id"]).column("video_id").to_pylist())

    def process(self, batch, ds, stats):
        for item in batch:
            if item["item_id"] in self.fatal:
                if self.how == "exit":
                    os._exit(3)
                os.kill(os.getpid(), signal.SIGKILL)
        return [{"video_id": it["item_id"], "uri": f"/v/{it['item_id']}.mp4"} for it in batch]


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_a_killed_worker_fails_its_item_and_the_rest_goes_on(tmp_path, how):
    ds = Dataset(tmp_path / "d")
    stats = run_stage(DiesOn({"d", "g"}, how), ds, progress=False, workers=2)
    assert sorted(r["video_id"] for r in ds.rows("videos")) == ["a", "b", "c", "e", "f", "h"]
    failures = ds.rows("failures")
    assert sorted(f["item_id"] for f in failures) == ["d", "g"]
    assert {f["error_type"] for f in failures} == {"WorkerDied"}
    assert all(f"item {f['item_id']}" in f["message"] for f in failures)
    assert stats.n_failed == 2 and stats.counts["rows_written"] == 6
    assert stats.counts["worker_restarts"] >= 2


def test_after_a_crash_a_rerun_retries_only_the_item_that_killed_its_worker(tmp_path):
    ds = Dataset(tmp_path / "d")
    run_stage(DiesOn({"d"}, "exit"), ds, progress=False, workers=2)
    again = run_stage(DiesOn(set(), "exit"), ds, progress=False, workers=2)
    assert again.counts["skipped_done"] == 7 and again.counts["rows_written"] == 1
