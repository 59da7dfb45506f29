"""Datasets and videos on an S3 bucket (a local S3 server): the same tables and guarantees as on disk."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from s3server import bucket, comparable_tables, counted_requests, s3_endpoint, upload  # noqa: F401  (fixtures)

from curation import storage
from curation.executors import run_stage
from curation.quality import DedupStage, QualityStage
from curation.stages import IngestStage, SplitStage
from curation.store import COMPACTION_JOURNAL, TABLES, Dataset, _epoch



def _failure(i, stage="x"):
    return dict(stage=stage, variant="", item_id=f"i{i}", error_type="E", message="m", raw="", created_at=1.0)


def _objects(url):
    fs, inner = storage.filesystem(url)
    return sorted(p[len(inner) + 1:] for p in fs.find(inner))


def test_table_writes_are_whole_objects_with_deterministic_keys_and_reruns_skip(bucket):
    ds = Dataset(f"{bucket}/ds")
    first = ds.write("failures", [_failure(i) for i in range(3)])
    assert ds.write("failures", [_failure(i) for i in range(3)]) is None  # every key stored: nothing written
    again = Dataset(f"{bucket}/ds").write("failures", [_failure(i) for i in range(2, 5)])  # a new process
    assert sorted(r["item_id"] for r in ds.rows("failures")) == ["i0", "i1", "i2", "i3", "i4"]
    assert _objects(f"{bucket}/ds") == sorted(["failures/" + first.name, "failures/" + again.name])
    other = Dataset(f"{bucket}/other")
    assert other.write("failures", [_failure(i) for i in range(3)]).name == first.name  # keys name the file


def test_a_table_write_costs_four_requests_and_each_file_another_process_wrote_one_more(bucket):
    ds = Dataset(f"{bucket}/ds")
    first = ds.write("failures", [_failure(0)])
    table = f"{bucket[5:]}/ds/failures"
    listing = [f"GET {table}/_compaction.epoch", f"LIST {table}/", f"GET {table}/_compaction.epoch"]
    with counted_requests() as requests:
        second = ds.write("failures", [_failure(1)])  # the keys of the file it wrote are known without a read
    assert requests == [*listing, f"PUT {table}/{second.name}"]
    with counted_requests() as requests:
        assert ds.write("failures", [_failure(0), _failure(1)]) is None  # a rerun: nothing to put
    assert requests == listing
    with counted_requests() as requests:
        third = Dataset(f"{bucket}/ds").write("failures", [_failure(2)])  # a new process reads each file once
    reads = sorted(f"GET {table}/{f.name}" for f in (first, second))  # in the listing's order
    assert requests == [*listing, *reads, f"PUT {table}/{third.name}"]
    assert sorted(r["item_id"] for r in Dataset(f"{bucket}/ds").rows("failures")) == ["i0", "i1", "i2"]


def test_compaction_on_a_bucket_swaps_without_rename_and_keeps_a_concurrent_write(bucket, monkeypatch):
    ds = Dataset(f"{bucket}/ds")
    for i in range(4):
        ds.write("failures", [_failure(i)])
    real_read = pq.read_table
    armed = [True]

    def read_table(path, *args, **kwargs):  # another writer adds a file while the compactor reads
        if armed[0]:
            armed[0] = False
            Dataset(f"{bucket}/ds").write("failures", [_failure(9)])
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(pq, "read_table", read_table)
    assert ds.compact("failures") == (4, 1)
    monkeypatch.undo()
    names = [f.name for f in ds.files("failures")]
    assert len(names) == 2 and any(n.startswith("compact-") for n in names)
    assert sorted(r["item_id"] for r in ds.rows("failures")) == ["i0", "i1", "i2", "i3", "i9"]
    assert not [o for o in _objects(f"{bucket}/ds") if ".pending" in o or "_compaction.json" in o or ".compacting" in o]


def test_a_swap_rewrites_the_epoch_before_it_moves_any_file_and_again_when_done(bucket, monkeypatch):
    ds = Dataset(f"{bucket}/ds")
    for i in range(3):
        ds.write("failures", [_failure(i)])
    d = ds.table_dir("failures")
    before, started = _epoch(d), []
    finish = Dataset._finish_compaction

    def finish_after_looking(d):  # a listing that overlaps the swap from here on reads two epochs
        started.append((_epoch(d), sorted(_objects(str(d)))))
        finish(d)

    monkeypatch.setattr(Dataset, "_finish_compaction", staticmethod(finish_after_looking))
    assert ds.compact("failures") == (3, 1)
    (at_start, objects), = started
    assert at_start not in ("", before) and _epoch(d) not in ("", at_start)
    assert len([o for o in objects if o.startswith("part-")]) == 3  # nothing was moved yet


def _three_failure_files(bucket):
    """A bucket dataset whose failures table is three files: the dataset, its folder and the files."""
    ds = Dataset(f"{bucket}/ds")
    for i in range(3):
        ds.write("failures", [_failure(i)])
    return ds, ds.table_dir("failures"), ds.files("failures")


def test_a_compaction_killed_after_its_journal_is_finished_by_the_next_reader(bucket):
    ds, d, old = _three_failure_files(bucket)
    merged = pa.concat_tables([pq.read_table(str(f), filesystem=storage.filesystem(str(f))[0]) for f in old])
    from curation.atomic import atomic_path

    with atomic_path(d / ".compact-x.parquet.pending") as tmp:  # the compactor wrote these, then died
        pq.write_table(merged, tmp)
    (d / COMPACTION_JOURNAL).write_text(json.dumps(
        {"new": "compact-x.parquet", "pending": ".compact-x.parquet.pending", "old": [f.name for f in old]}))
    reader = Dataset(f"{bucket}/ds")
    assert [f.name for f in reader.files("failures")] == ["compact-x.parquet"]
    assert sorted(r["item_id"] for r in reader.rows("failures")) == ["i0", "i1", "i2"]


def test_a_held_lock_keeps_a_second_compactor_out(bucket):
    ds = Dataset(f"{bucket}/ds")
    for i in range(3):
        ds.write("failures", [_failure(i)])
    lock = ds.table_dir("failures") / ".compacting"
    assert storage.create_exclusive(lock, b"other")
    assert not storage.create_exclusive(lock, b"me")  # a conditional put: exactly one holder
    assert ds.compact("failures") == (3, 3)
    storage.filesystem(str(lock))[0].rm_file(storage.filesystem(str(lock))[1])
    assert ds.compact("failures") == (3, 1)


def test_catalog_over_the_bucket_has_every_view(bucket):
    ds = Dataset(f"{bucket}/ds")
    ds.write("failures", [_failure(0), _failure(1, "split")])
    ds.resolve("split", ["i1"])
    assert ds.open_failure_counts() == {"x": 1}
    con = ds.connect()
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert set(TABLES) | {"quality", "open_failures"} <= views
    assert con.execute("SELECT count(*) FROM segments").fetchone() == (0,)  # empty tables keep their columns
    assert "signature" in [d[0] for d in con.execute("SELECT * FROM segments").description]


def _curate(videos, data):
    ds = Dataset(data)
    for stage in (IngestStage(videos=storage.location(videos)), SplitStage(), QualityStage(), DedupStage()):
        stats = run_stage(stage, ds, progress=False)
        assert not stats.failed_ids, stage.name
    return ds


def test_videos_and_dataset_on_a_bucket_give_the_local_tables(corpus, bucket, tmp_path):
    local = _curate(corpus, tmp_path / "ds")
    upload(corpus, f"{bucket}/videos")
    remote = _curate(f"{bucket}/videos", f"{bucket}/ds")
    got = comparable_tables(remote, (f"{bucket}/videos", "<videos>"), (str(remote.root), "<data>"))
    want = comparable_tables(local, (str(corpus), "<videos>"), (str(local.root), "<data>"))
    for table in TABLES:
        assert got[table] == want[table], table
    assert remote.rows("videos")[0]["uri"].startswith(f"{bucket}/videos/")
    assert not [o for o in _objects(f"{bucket}/ds") if o.rsplit("/", 1)[-1].startswith(".")]  # no temporaries


def test_ingest_and_split_state_each_video_once_and_open_it_by_its_known_size(corpus, bucket):
    upload(corpus, f"{bucket}/videos")
    ds = Dataset(f"{bucket}/ds")
    with counted_requests() as requests:
        for stage in (IngestStage(videos=storage.location(f"{bucket}/videos")), SplitStage()):
            assert not run_stage(stage, ds, progress=False).failed_ids
    videos = [v["uri"][5:] for v in ds.rows("videos")]
    heads = sorted(r[5:] for r in requests if r.startswith("HEAD ") and r.endswith(".mp4"))
    assert heads == sorted(videos)  # the probe's stat; hashing, decoding and scene detection reuse sizes


def test_a_catalog_lists_the_dataset_once_between_each_tables_epoch_reads(bucket):
    ds = Dataset(f"{bucket}/ds")
    first, second = ds.write("failures", [_failure(0)]), ds.write("failures", [_failure(1)])
    root = f"{bucket[5:]}/ds"
    epochs = [f"GET {root}/{t}/_compaction.epoch" for t in TABLES]
    with counted_requests() as requests:
        assert Dataset(f"{bucket}/ds").sql("SELECT count(*) AS n FROM failures").to_pylist() == [{"n": 2}]
    reads = sorted(f"GET {root}/failures/{f.name}" for f in (first, second))
    # the top level (one folder deep), then everything under it at once
    assert requests[:-2] == [*epochs, f"LIST {root}/", f"LIST {root}/", *epochs] and sorted(requests[-2:]) == reads


def test_a_dataset_beside_many_clips_lists_its_table_folders_only(bucket):
    ds = Dataset(f"{bucket}/ds")
    ds.write("failures", [_failure(0)])
    ds.write("videos", [dict(video_id="v", uri="s3://x/v.mp4")])
    for k in range(3):  # an export's clips under the dataset: thousands, in real use
        storage.location(f"{bucket}/ds/clips/v/{k}-{k + 1}.mp4").write_bytes(b"x")
    root = f"{bucket[5:]}/ds"
    with counted_requests() as requests:
        files = Dataset(f"{bucket}/ds").all_files()
    listings = [r for r in requests if r.startswith("LIST")]
    assert listings == [f"LIST {root}/", f"LIST {root}/failures/", f"LIST {root}/videos/"]
    assert [f.name for f in files["failures"]] == [f.name for f in ds.files("failures")]
    assert len(files["videos"]) == 1 and all(not files[t] for t in TABLES if t not in ("failures", "videos"))


def test_a_catalog_finishes_a_killed_compaction_before_it_reads(bucket):
    ds, d, old = _three_failure_files(bucket)
    # the compactor's merged file (here a copy of the first file, to tell it apart) and journal; then it died
    storage.copy_object(old[0], d / ".compact-x.parquet.pending")
    (d / COMPACTION_JOURNAL).write_text(json.dumps(
        {"new": "compact-x.parquet", "pending": ".compact-x.parquet.pending", "old": [f.name for f in old]}))
    merged = pq.read_table(str(old[0]), filesystem=storage.filesystem(str(old[0]))[0], columns=["item_id"])
    assert Dataset(f"{bucket}/ds").sql("SELECT item_id FROM failures").to_pylist() == merged.to_pylist()
    assert Dataset(f"{bucket}/ds").all_files()["failures"] == [d / "compact-x.parquet"]
    assert COMPACTION_JOURNAL not in [o.rsplit("/", 1)[-1] for o in _objects(f"{bucket}/ds")]


def test_an_object_replaced_after_it_was_listed_is_never_read_as_the_old_one(bucket):
    url = f"{bucket}/videos/a.mp4"
    storage.location(url).write_bytes(b"a" * 1000)
    fs, inner = storage.filesystem(url)
    storage.remember(url, fs.info(inner))  # as ingest's listing does
    with storage.open_input(url) as f:
        assert f.read(10) == b"a" * 10
    storage.location(url).write_bytes(b"b" * 2000)  # replaced under the same name
    with pytest.raises(OSError):
        with storage.open_input(url) as f:
            f.read(10)
    assert storage.open_input(f"{bucket}/ds/t/part-x.parquet", immutable_size=5).size == 5  # a table file: no HEAD
