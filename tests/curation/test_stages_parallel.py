"""Workers and shards give the same tables as one plain run."""

from curation.executors import run_stage
from curation.stage import parse_shard
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset

import pytest


def _segments(ds):
    return sorted((r["segment_id"], r["start_frame"], r["end_frame"]) for r in ds.rows("segments"))


def test_two_workers_match_one(corpus, tmp_path):
    one, two = Dataset(tmp_path / "one"), Dataset(tmp_path / "two")
    for ds, workers in ((one, 1), (two, 2)):
        run_stage(IngestStage(videos=corpus), ds, progress=False, workers=workers)
        run_stage(SplitStage(), ds, progress=False, workers=workers)
    assert _segments(one) == _segments(two) and len(_segments(one)) >= 5


def test_shards_partition_the_work(corpus, tmp_path):
    full, sharded = Dataset(tmp_path / "full"), Dataset(tmp_path / "sharded")
    run_stage(IngestStage(videos=corpus), full, progress=False)
    seen = []
    for i in range(3):
        s = run_stage(IngestStage(videos=corpus), sharded, progress=False, shard=(i, 3))
        seen.append(s.counts["rows_written"])
    assert sum(seen) == 3
    assert sorted(v["video_id"] for v in full.rows("videos")) == sorted(v["video_id"] for v in sharded.rows("videos"))


@pytest.mark.parametrize("bad", ["3/3", "x", "1/0", "-1/2"])
def test_bad_shard_is_explained(bad):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(bad)


def test_a_long_video_is_shared_between_workers(corpus, tmp_path):
    one, chunked = Dataset(tmp_path / "one"), Dataset(tmp_path / "chunked")
    for ds in (one, chunked):
        run_stage(IngestStage(videos=corpus), ds, progress=False)
    run_stage(SplitStage(), one, progress=False)
    stage = SplitStage(chunk_s=3.0)  # 10-14 s videos -> 3-4 chunks each
    assert len(stage.chunks(chunked.rows("videos")[0])) >= 3
    stats = run_stage(stage, chunked, progress=False, workers=2)
    assert stats.n_failed == 0
    assert _segments(one) == _segments(chunked)
    motion = lambda ds: sorted((r["segment_id"], round(r["motion"], 6), round(r["luma"], 4)) for r in ds.rows("segments"))
    assert motion(one) == motion(chunked)
