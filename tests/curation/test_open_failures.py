"""Failures of items that a later run completed stay as history but are no longer open."""

from curation.executors import run_stage
from curation.stage import Stage
from curation.store import Dataset


class FailsOn(Stage):
    name = "fails_on"
    output = "videos"
    item_column = "video_id"

    def __init__(self, fatal: set[str]):
        self.fatal = fatal

    def items(self, ds):
        return [{"item_id": i} for i in "abcd"]

    def done_ids(self, ds):
        return set(ds.read("videos", ["video_id"]).column("video_id").to_pylist())

    def process(self, batch, ds, stats):
        bad = [it["item_id"] for it in batch if it["item_id"] in self.fatal]
        if bad:
            raise ValueError(f"item {bad[0]} is broken")
        return [{"video_id": it["item_id"], "uri": f"/v/{it['item_id']}.mp4"} for it in batch]


def _open(ds):
    return sorted(r["item_id"] for r in ds.sql("SELECT item_id FROM open_failures").to_pylist())


def test_a_failure_whose_item_later_succeeds_is_closed_and_kept(tmp_path):
    ds = Dataset(tmp_path / "d")
    first = run_stage(FailsOn({"b", "c"}), ds, progress=False)
    assert first.n_failed == 2 and _open(ds) == ["b", "c"]
    second = run_stage(FailsOn({"c"}), ds, progress=False)  # b was fixed, c is still broken
    assert second.counts["resolved_failures"] == 1
    assert sorted(r["item_id"] for r in ds.rows("failures")) == ["b", "c"]  # the history stays
    assert _open(ds) == ["c"]
    assert [(r["stage"], r["item_id"]) for r in ds.rows("resolved")] == [("fails_on", "b")]
    third = run_stage(FailsOn({"c"}), ds, progress=False)  # nothing new is resolved twice
    assert third.counts["resolved_failures"] == 0 and ds.read("resolved").num_rows == 1


def test_resolve_records_only_items_with_an_open_failure(tmp_path):
    ds = Dataset(tmp_path / "d")
    ds.fail("split", "v1", ValueError("bad"))
    ds.fail("ingest", "v2", ValueError("bad"))
    assert ds.resolve("split", ["v1", "v2", "v3"]) == 1  # v2 failed in another stage, v3 never failed
    assert ds.resolve("split", ["v1"]) == 0
    assert _open(ds) == ["v2"]
    assert ds.open_failure_counts() == {"ingest": 1}


def test_the_run_summary_counts_open_failures(tmp_path, capsys):
    from densevid.summary import print_stage_summary

    ds = Dataset(tmp_path / "d")
    run_stage(FailsOn({"b", "c"}), ds, progress=False)
    results = [run_stage(FailsOn({"c"}), ds, progress=False)]
    print_stage_summary(results, ds)
    out = capsys.readouterr().out
    assert "open failures: 1 (fails_on 1); 2 recorded, 1 resolved by a later run" in out


class FailsFor(FailsOn):
    """The same items under a model's name: ``variant`` as a model stage has it."""

    def __init__(self, fatal: set[str], model: str):
        super().__init__(fatal)
        self.model = model

    @property
    def variant(self):
        return self.model

    def done_ids(self, ds):
        return set()  # done is per model: what a model completes is `finished` under its variant

    def process(self, batch, ds, stats):
        super().process(batch, ds, stats)  # raises for a fatal item
        return []


def test_one_models_failure_is_neither_closed_by_another_model_nor_hidden_by_its_failure(tmp_path):
    ds = Dataset(tmp_path / "d")
    run_stage(FailsFor({"b"}, "teacher-0"), ds, progress=False)
    second = run_stage(FailsFor({"c"}, "teacher-1"), ds, progress=False)  # teacher-1 completes b, fails c
    assert second.counts["resolved_failures"] == 0  # b is still teacher-0's to fix
    run_stage(FailsFor({"b"}, "teacher-2"), ds, progress=False)  # fails b as teacher-0 did
    failures = sorted((r["variant"], r["item_id"]) for r in ds.rows("failures"))
    assert failures == [("teacher-0", "b"), ("teacher-1", "c"), ("teacher-2", "b")]
    assert sorted((r["variant"], r["item_id"]) for r in ds.sql("SELECT * FROM open_failures").to_pylist()) == failures
    assert ds.open_failure_ids("fails_on", "teacher-0") == {"b"}


def _with_a_failure_of_before_variants(path):
    """A dataset whose failures file was written before failures had a variant column: item b failed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = Dataset(path)
    old = pa.table({"stage": ["fails_on"], "item_id": ["b"], "error_type": ["ValueError"], "message": ["bad"],
                    "raw": [""], "created_at": [0.0]})
    ds.table_dir("failures").mkdir(parents=True, exist_ok=True)
    pq.write_table(old, ds.table_dir("failures") / "part-old.parquet")
    ds.refresh_catalog()
    return ds


def test_failures_written_before_they_had_a_variant_stay_open_and_close(tmp_path):
    ds = _with_a_failure_of_before_variants(tmp_path / "d")
    assert _open(ds) == ["b"] and ds.open_failure_ids("fails_on") == {"b"}
    run_stage(FailsOn({"b"}), ds, progress=False)  # failing again: the same key, no second row
    assert ds.read("failures").num_rows == 1 and ds.open_failure_counts() == {"fails_on": 1}
    assert run_stage(FailsOn(set()), ds, progress=False).counts["resolved_failures"] == 1
    assert _open(ds) == []


def test_a_model_stage_closes_its_failures_written_before_they_had_a_variant(tmp_path):
    ds = _with_a_failure_of_before_variants(tmp_path / "d")
    assert run_stage(FailsFor(set(), "teacher-0"), ds, progress=False).counts["resolved_failures"] == 1
    assert _open(ds) == []
