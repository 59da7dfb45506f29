"""Splits are assigned once and stored: a video never changes split, a near-duplicate family stays in one,
and a copy added later with a smaller id joins its original's split instead of moving the family."""

from curation.splits import assign_split, assign_splits, families, plan_splits
from curation.store import Dataset


def ids_in(split: str, other: str) -> tuple[str, str]:
    """An original whose id hashes to ``split`` and a smaller id (its later copy) that hashes to ``other``."""
    orig = next(f"v9{k:04d}" for k in range(10_000) if assign_split(f"v9{k:04d}") == split)
    copy = next(f"v1{k:04d}" for k in range(10_000) if assign_split(f"v1{k:04d}") == other)
    return orig, copy


def dup(seg: str, video: str, group: str, others=()) -> dict:
    return dict(segment_id=seg, video_id=video, dup_group=group, other_groups=list(others))


def test_a_copy_with_a_smaller_id_joins_the_originals_split_and_nothing_moves(tmp_path):
    ds = Dataset(tmp_path / "d")
    orig, copy = ids_in("val", "train")
    ds.write("duplicates", [dup("s1", orig, "s1"), dup("s2", "v5", "s2")])
    first = assign_splits(ds, [orig, "v5"])
    assert first == {orig: "val", "v5": assign_split("v5")}

    ds.write("duplicates", [dup("s0", copy, "s1")])  # the re-upload arrives; its id sorts first
    assert families(ds)[orig] == copy  # the family's key moved to the copy ...
    again = assign_splits(ds, [orig, "v5", copy])
    assert again == {orig: "val", "v5": first["v5"], copy: "val"}  # ... the splits did not
    rows = {r["video_id"]: (r["split"], r["family"], r["how"]) for r in ds.rows("splits")}
    assert rows == {orig: ("val", orig, "hash"), "v5": (first["v5"], "v5", "hash"), copy: ("val", copy, "family")}
    assert assign_splits(ds, [orig, "v5", copy]) == again and len(ds.rows("splits")) == 3


def test_videos_with_samples_from_before_the_table_keep_their_split(tmp_path):
    ds = Dataset(tmp_path / "d")
    orig, copy = ids_in("train", "test")
    ds.write("samples", [dict(sample_id="x", video_id=orig, split="test")])  # as an older version wrote it
    ds.write("duplicates", [dup("s1", orig, "s1"), dup("s0", copy, "s1")])
    splits, rows = plan_splits(ds, [copy, orig])
    assert splits == {orig: "test", copy: "test"}
    assert [(r["video_id"], r["how"]) for r in rows] == [(orig, "samples"), (copy, "family")]
    assert ds.rows("splits") == []  # planning writes nothing


def test_a_bridge_between_two_families_never_moves_either(tmp_path):
    ds = Dataset(tmp_path / "d")
    a, b = ids_in("train", "test")
    ds.write("duplicates", [dup("sa", a, "sa"), dup("sb", b, "sb")])
    assert assign_splits(ds, [a, b]) == {a: "train", b: "test"}
    ds.write("duplicates", [dup("sc", "v0", "sb", others=["sa"])])  # matches both; joins the smallest member's
    assert assign_splits(ds, [a, b, "v0"]) == {a: "train", b: "test", "v0": "test"}


def test_the_tasks_stage_stores_each_videos_split_and_its_samples_follow_it(built_dataset):
    ds = Dataset(built_dataset[0].data)
    stored = {r["video_id"]: r["split"] for r in ds.rows("splits")}
    samples = ds.sql("SELECT DISTINCT video_id, split FROM samples WHERE task <> 'needle'").to_pylist()
    assert samples and {r["video_id"]: r["split"] for r in samples} == stored
    assert all(r["how"] in ("hash", "family") for r in ds.rows("splits"))
