"""What a segment row records: its seconds from its frames, and the detector and policy that made it."""

import json
from dataclasses import asdict

from curation.executors import run_stage
from curation.scenes import DetectorConfig, SegmentPolicy
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset


def test_segments_record_frames_seconds_and_how_they_were_made(corpus, tmp_path):
    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=corpus), ds, progress=False)
    policy = SegmentPolicy(trim_s=0.5)
    run_stage(SplitStage(policy=policy), ds, progress=False)
    rows = ds.sql("SELECT s.*, v.fps FROM segments s JOIN videos v USING (video_id)").to_pylist()
    assert len(rows) >= 5
    expected = dict(asdict(DetectorConfig()), policy=asdict(policy))
    for r in rows:
        assert r["start_s"] == r["start_frame"] / r["fps"] and r["end_s"] == r["end_frame"] / r["fps"]
        assert json.loads(r["detector_params"]) == expected
    assert ds.sql("SELECT count(*) AS n FROM finished").column("n")[0].as_py() == 0  # every video has segments
