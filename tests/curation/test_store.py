import pyarrow.parquet as pq

from curation.store import TABLES, Dataset, stable_id


def _fail_row(i):
    return dict(stage="x", variant="", item_id=f"i{i}", error_type="E", message="m", raw="", created_at=1.0)


def test_write_is_atomic_and_skips_written_keys(tmp_path):
    ds = Dataset(tmp_path / "d")
    p1 = ds.write("failures", [_fail_row(1), _fail_row(2), _fail_row(2)])
    assert pq.read_table(p1).num_rows == 2
    assert ds.write("failures", [_fail_row(1)]) is None  # nothing new
    ds.write("failures", [_fail_row(1), _fail_row(3)])
    assert sorted(r["item_id"] for r in ds.rows("failures")) == ["i1", "i2", "i3"]
    assert not list((tmp_path / "d" / "failures").glob(".*tmp"))


def test_catalog_has_every_table_even_when_empty(tmp_path):
    ds = Dataset(tmp_path / "d")
    ds.refresh_catalog()
    con = ds.connect()
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    con.close()
    assert set(TABLES) <= views and "finished" in TABLES
    assert ds.sql("SELECT count(*) AS n FROM failures").column("n")[0].as_py() == 0
    assert ds.sql("SELECT * FROM finished").schema.names == ["stage", "variant", "item_id", "finished_at",
                                                             "code_version"]


def test_finished_items_are_kept_per_stage_and_variant(tmp_path):
    ds = Dataset(tmp_path / "d")
    ds.finish("ground", "m|p1", ["s1", "s2"])
    ds.finish("ground", "m|p1", ["s2", "s3"])  # s2 again: one row
    ds.finish("ground", "m|p2", ["s4"])
    assert ds.finished("ground", "m|p1") == {"s1", "s2", "s3"}
    assert ds.finished("ground", "m|p2") == {"s4"} and ds.finished("split", "") == set()
    assert ds.sql("SELECT count(*) AS n FROM finished").column("n")[0].as_py() == 4


def test_catalog_is_rebuilt_when_the_dataset_moves(tmp_path):
    ds = Dataset(tmp_path / "a")
    ds.write("failures", [_fail_row(1)])
    ds.refresh_catalog()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = Dataset(tmp_path / "b")
    assert moved.sql("SELECT item_id FROM failures").column("item_id").to_pylist() == ["i1"]


def test_ids_are_deterministic():
    assert stable_id("v", 1, 2) == stable_id("v", 1, 2) != stable_id("v", 1, 3)


def test_compact_keeps_rows_and_bounds_files(tmp_path):
    ds = Dataset(tmp_path / "d")
    for i in range(5):
        ds.write("failures", [_fail_row(i)])
    assert len(ds.files("failures")) == 5
    assert ds.compact("failures") == (5, 1)
    assert len(ds.files("failures")) == 1
    assert sorted(r["item_id"] for r in ds.rows("failures")) == [f"i{i}" for i in range(5)]


def test_compaction_killed_at_any_step_is_finished_by_the_next_reader(tmp_path):
    import json

    from curation.store import COMPACTION_JOURNAL, atomic_write_parquet

    for step in ("after_journal", "after_rename"):
        ds = Dataset(tmp_path / step)
        for i in range(3):
            ds.write("failures", [_fail_row(i)])
        old, data = ds.files("failures"), ds.read("failures")
        d = ds.table_dir("failures")
        atomic_write_parquet(data, d / ".compact-x.parquet.pending")
        journal = {"new": "compact-x.parquet", "pending": ".compact-x.parquet.pending", "old": [f.name for f in old]}
        (d / COMPACTION_JOURNAL).write_text(json.dumps(journal))
        if step == "after_rename":
            (d / ".compact-x.parquet.pending").rename(d / "compact-x.parquet")
        # the SQL catalog finishes it too: no row is seen twice
        assert ds.sql("SELECT count(*) AS n FROM failures").column("n")[0].as_py() == 3
        assert [f.name for f in ds.files("failures")] == ["compact-x.parquet"]
        assert not (d / COMPACTION_JOURNAL).exists()


def test_catalog_works_under_a_path_with_glob_characters(tmp_path):
    ds = Dataset(tmp_path / "ds [v2]*")
    ds.write("failures", [_fail_row(1)])
    assert ds.sql("SELECT item_id FROM failures").column("item_id").to_pylist() == ["i1"]
    ds.write("failures", [_fail_row(2)])  # a new file: the catalog notices without an explicit refresh
    assert ds.sql("SELECT count(*) AS n FROM failures").column("n")[0].as_py() == 2


def test_a_catalog_without_a_newer_table_is_rebuilt(tmp_path):
    """A catalog written before a table existed (no view, an older file signature) gets the view on next use."""
    ds = Dataset(tmp_path / "d")
    ds.refresh_catalog()
    con = ds.connect(read_only=False)
    con.execute("DROP VIEW finished")
    old = "\n".join(line for line in con.execute("SELECT files FROM _catalog").fetchone()[0].splitlines()
                    if not line.startswith("finished/"))
    con.execute("UPDATE _catalog SET files = ?", [old])
    con.close()
    assert ds.sql("SELECT count(*) AS n FROM finished").column("n")[0].as_py() == 0
