import pyarrow.parquet as pq

from curation.store import TABLES, Dataset, stable_id


def _fail_row(i):
    return dict(stage="x", item_id=f"i{i}", error_type="E", message="m", raw="", created_at=1.0)


def test_write_is_atomic_and_skips_written_keys(tmp_path):
    ds = Dataset(tmp_path / "d")
    p1 = ds.write("failures", [_fail_row(1), _fail_row(2), _fail_row(2)])
    assert pq.read_table(p1).num_rows == 2
    assert ds.write("failures", [_fail_row(1)]) is None  # nothing new
    ds.write("failures", [_fail_row(1), _fail_row(3)])
    assert sorted(r["item_id"] for r in ds.rows("failures")) == ["i1", "i2", "i3"]
    assert not list((tmp_path / "d" / "failures").glob(".*tmp"))


def test_catalog_has_all_seven_tables_even_when_empty(tmp_path):
    ds = Dataset(tmp_path / "d")
    ds.refresh_catalog()
    con = ds.connect()
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    con.close()
    assert set(TABLES) <= views
    assert ds.sql("SELECT count(*) AS n FROM failures").column("n")[0].as_py() == 0


def test_catalog_is_rebuilt_when_the_dataset_moves(tmp_path):
    ds = Dataset(tmp_path / "a")
    ds.write("failures", [_fail_row(1)])
    ds.refresh_catalog()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = Dataset(tmp_path / "b")
    assert moved.sql("SELECT item_id FROM failures").column("item_id").to_pylist() == ["i1"]


def test_ids_are_deterministic():
    assert stable_id("v", 1, 2) == stable_id("v", 1, 2) != stable_id("v", 1, 3)
