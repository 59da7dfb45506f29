"""Items that complete with nothing to write are recorded in `finished`, never as rows of the output table."""

from dataclasses import dataclass

import pytest

from curation.executors import run_stage
from curation.stage import Stage, Stats, key_set
from curation.store import Dataset

ITEMS = ("a", "b", "c", "d", "e", "f", "g")
EMPTY = {"b", "e"}  # complete, nothing to write
BAD = {"d"}  # raise: failures rows


@dataclass
class LetterStage(Stage):
    """One `videos` row per letter, none for EMPTY, an error for BAD; ``tag`` is the stage's variant."""

    tag: str = ""
    name = "letters"
    output = "videos"
    item_column = "video_id"
    batch_size = 3  # a batch with a bad item is retried one item at a time
    parallel = True

    @property
    def variant(self) -> str:
        return self.tag

    def items(self, ds: Dataset) -> list[dict]:
        return [dict(item_id=i) for i in ITEMS]

    def done_ids(self, ds: Dataset) -> set[str]:
        return key_set(ds, "videos", "video_id")

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        bad = [it["item_id"] for it in batch if it["item_id"] in BAD]
        if bad:
            raise ValueError(f"letter {bad[0]} is bad")
        return [dict(video_id=it["item_id"], uri=f"{it['item_id']}.mp4") for it in batch if it["item_id"] not in EMPTY]


def _finished(ds: Dataset) -> list[tuple]:
    return sorted(tuple(r.values()) for r in ds.sql("SELECT stage, variant, item_id FROM finished").to_pylist())


@pytest.mark.parametrize("workers", [1, 2])
def test_empty_items_are_finished_and_failed_ones_are_not(tmp_path, workers):
    ds = Dataset(tmp_path / "d")
    stats = run_stage(LetterStage(tag="v1"), ds, progress=False, workers=workers)
    assert _finished(ds) == [("letters", "v1", "b"), ("letters", "v1", "e")]
    assert sorted(key_set(ds, "videos", "video_id")) == ["a", "c", "f", "g"]
    assert [f["item_id"] for f in ds.rows("failures")] == ["d"]
    assert stats.counts["finished_empty"] == 2 and stats.counts["rows_written"] == 4 and stats.n_failed == 1


def test_a_rerun_skips_finished_items_and_retries_failed_ones(tmp_path):
    ds = Dataset(tmp_path / "d")
    run_stage(LetterStage(tag="v1"), ds, progress=False)
    again = run_stage(LetterStage(tag="v1"), ds, progress=False)
    assert again.counts["skipped_done"] == 6  # 4 with rows + 2 finished; only "d" runs again
    assert again.n_failed == 1 and again.failed_ids == {"d"}
    assert again.counts["rows_written"] == 0 and again.counts["finished_empty"] == 0
    assert len(_finished(ds)) == 2


def test_another_variant_does_not_inherit_finished_items(tmp_path):
    ds = Dataset(tmp_path / "d")
    run_stage(LetterStage(tag="v1"), ds, progress=False)
    other = run_stage(LetterStage(tag="v2"), ds, progress=False)
    assert other.counts["skipped_done"] == 4  # the rows of the output table only
    assert _finished(ds) == [("letters", v, i) for v in ("v1", "v2") for i in ("b", "e")]


def test_a_stage_without_item_column_records_nothing(tmp_path):
    ds = Dataset(tmp_path / "d")
    stage = LetterStage()
    stage.item_column = ""  # rows that do not name their item: nothing can be called empty
    run_stage(stage, ds, progress=False)
    assert _finished(ds) == []
