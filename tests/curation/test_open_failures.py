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
