"""Compaction racing writers and readers: no row is lost or seen twice."""

import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curation.store as store
from curation.store import COMPACTION_JOURNAL, Dataset


def _fail_row(i):
    return dict(stage="x", variant="", item_id=f"i{i}", error_type="E", message="m", raw="", created_at=1.0)


def _items(ds):
    return sorted(r["item_id"] for r in ds.rows("failures"))


def _four_files(path):
    ds = Dataset(path)
    for i in range(4):
        ds.write("failures", [_fail_row(i)])
    return ds


def test_a_write_after_compaction_listed_its_files_is_kept_once(tmp_path, monkeypatch):
    ds = _four_files(tmp_path / "d")
    shard = Dataset(tmp_path / "d")  # another process writing to the same table
    calls = []

    def files(table):
        listed = Dataset.files(ds, table)
        calls.append(table)
        if len(calls) == 2:  # the compactor has listed, under its lock, the files it will replace
            shard.write("failures", [_fail_row(9)])
        return listed

    monkeypatch.setattr(ds, "files", files)
    assert ds.compact("failures") == (4, 1)
    monkeypatch.undo()
    assert _items(ds) == ["i0", "i1", "i2", "i3", "i9"]
    assert ds.sql("SELECT count(*) AS n, count(DISTINCT item_id) AS d FROM failures").to_pylist() == [{"n": 5, "d": 5}]
    assert len([f for f in ds.files("failures") if f.name != store.EMPTY_PART]) == 2


def _start_swap(d):
    """What a compactor has done just before it removes the old files: the merged file and its journal."""
    old = sorted(p for p in d.glob("*.parquet") if not p.name.startswith("."))
    merged = pa.concat_tables([pq.read_table(f) for f in old])
    pq.write_table(merged, d / ".compact-x.parquet.pending")
    journal = {"new": "compact-x.parquet", "pending": ".compact-x.parquet.pending", "old": [f.name for f in old]}
    (d / COMPACTION_JOURNAL).write_text(json.dumps(journal))
    (d / ".compact-x.parquet.pending").rename(d / "compact-x.parquet")


@pytest.mark.parametrize("swap_ends_before_the_reader_looks_again", [False, True])
def test_a_reader_listing_during_the_swap_never_sees_old_and_new_files(tmp_path, monkeypatch,
                                                                      swap_ends_before_the_reader_looks_again):
    ds = _four_files(tmp_path / "d")
    d = ds.table_dir("failures")
    real_glob = pathlib.Path.glob
    armed = [True]

    def glob(self, pattern):
        if self == d and armed[0]:
            armed[0] = False
            _start_swap(d)
            listed = list(real_glob(self, pattern))
            if swap_ends_before_the_reader_looks_again:
                Dataset._finish_compaction(d)
            return iter(listed)
        return real_glob(self, pattern)

    monkeypatch.setattr(pathlib.Path, "glob", glob)
    assert [f.name for f in ds.files("failures")] == ["compact-x.parquet"]
    assert not armed[0]
    monkeypatch.undo()
    assert _items(ds) == ["i0", "i1", "i2", "i3"]


def test_a_reader_whose_files_were_compacted_away_reads_the_merged_file(tmp_path, monkeypatch):
    ds = _four_files(tmp_path / "d")
    compactor = Dataset(tmp_path / "d")
    real_read = pq.read_table
    armed = [True]

    def read_table(path, *args, **kwargs):
        if armed[0]:  # the files are listed; another process compacts them before they are read
            armed[0] = False
            assert compactor.compact("failures") == (4, 1)
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(store.pq, "read_table", read_table)
    assert _items(ds) == ["i0", "i1", "i2", "i3"]
    assert not armed[0]
