"""Splits are assigned once and stored: a video never changes split, a near-duplicate family stays in one,
and a copy added later with a smaller id joins its original's split instead of moving the family; a domain
without a video in train gets one of its new families there."""

from curation.splits import assign_split, assign_splits, families, plan_splits
from curation.store import Dataset


def ids_in(split: str, other: str) -> tuple[str, str]:
    """An original whose id hashes to ``split`` and a smaller id (its later copy) that hashes to ``other``."""
    orig = next(f"v9{k:04d}" for k in range(10_000) if assign_split(f"v9{k:04d}") == split)
    copy = next(f"v1{k:04d}" for k in range(10_000) if assign_split(f"v1{k:04d}") == other)
    return orig, copy


def dup(seg: str, video: str, group: str, others=()) -> dict:
    return dict(segment_id=seg, video_id=video, dup_group=group, other_groups=list(others))


def hashed(split: str, prefix: str, k: int = 0) -> str:
    """The k-th id starting with ``prefix`` that hashes to ``split``."""
    return [f"{prefix}{i:04d}" for i in range(10_000) if assign_split(f"{prefix}{i:04d}") == split][k]


def videos(ds: Dataset, domains: dict[str, str]) -> None:
    ds.write("videos", [dict(video_id=v, uri=f"/v/{v}.mp4", domain=d) for v, d in domains.items()])


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


def test_one_video_per_domain_puts_every_domain_in_train(tmp_path):
    ds = Dataset(tmp_path / "d")
    a, b, c = hashed("train", "a"), hashed("val", "b"), hashed("test", "c")
    videos(ds, {a: "sports", b: "cooking", c: "news"})
    assert assign_splits(ds, [a, b, c]) == {a: "train", b: "train", c: "train"}
    assert {r["video_id"]: r["how"] for r in ds.rows("splits")} == {a: "hash", b: "stratified", c: "stratified"}


def test_a_domain_moves_one_family_from_the_split_holding_most_of_it(tmp_path):
    ds = Dataset(tmp_path / "d")
    v1, v2, t1 = hashed("val", "a"), hashed("val", "a", 1), hashed("test", "a")
    copy = hashed("test", "b")  # a near-duplicate of v1: the family moves whole
    videos(ds, {v1: "news", v2: "news", t1: "news", copy: "news"})
    ds.write("duplicates", [dup("s1", v1, "s1"), dup("s2", copy, "s1")])
    assert min(v1, copy) == v1 and v1 < v2
    assert assign_splits(ds, [v1, v2, t1, copy]) == {v1: "train", copy: "train", v2: "val", t1: "test"}
    assert {r["video_id"]: r["how"] for r in ds.rows("splits")} == {v1: "stratified", copy: "family", v2: "hash",
                                                                    t1: "hash"}


def test_stored_splits_never_move_and_only_a_domain_missing_from_train_is_stratified(tmp_path):
    ds = Dataset(tmp_path / "d")
    old_val, sport = hashed("val", "a"), hashed("train", "b")
    videos(ds, {old_val: "news", sport: "sports"})
    ds.write("splits", [dict(video_id=old_val, split="val", family=old_val, how="hash"),
                        dict(video_id=sport, split="train", family=sport, how="hash")])
    new_news, new_sport = hashed("test", "c"), hashed("test", "d")
    videos(ds, {new_news: "news", new_sport: "sports"})
    assert assign_splits(ds, [old_val, sport, new_news, new_sport]) == {
        old_val: "val", sport: "train", new_news: "train", new_sport: "test"}
    assert {r["video_id"]: r["how"] for r in ds.rows("splits")} == {
        old_val: "hash", sport: "hash", new_news: "stratified", new_sport: "hash"}
    later = hashed("val", "e")  # news is in train now: the usual hash again
    videos(ds, {later: "news"})
    assert assign_splits(ds, [later])[later] == "val"


def test_the_tasks_stage_stores_each_videos_split_and_its_samples_follow_it(built_dataset):
    ds = Dataset(built_dataset[0].data)
    stored = {r["video_id"]: r["split"] for r in ds.rows("splits")}
    samples = ds.sql("SELECT DISTINCT video_id, split FROM samples WHERE task <> 'needle'").to_pylist()
    assert samples and {r["video_id"]: r["split"] for r in samples} == stored
    assert all(r["how"] in ("hash", "family", "stratified") for r in ds.rows("splits"))
    domains = {r["video_id"]: r["domain"] for r in ds.rows("videos") if r["domain"] != "needle"}
    assert {domains[v] for v, s in stored.items() if s == "train"} == set(domains.values()) == {
        "instructional", "cinematic", "egocentric"}  # one video each: every one in train
