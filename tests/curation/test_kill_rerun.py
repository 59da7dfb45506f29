"""kill -9 in the middle of a split, then rerun: the same segments as an uninterrupted run, no duplicates."""

import os
import signal
import subprocess
import sys
import time

from curation.executors import run_stage
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset


def _segments(ds):
    return sorted((r["segment_id"], r["video_id"], r["start_frame"], r["end_frame"]) for r in ds.rows("segments"))


def test_kill_and_rerun_gives_the_uninterrupted_tables(corpus, tmp_path):
    clean = Dataset(tmp_path / "clean")
    run_stage(IngestStage(videos=corpus), clean, progress=False)
    run_stage(SplitStage(), clean, progress=False)

    killed = Dataset(tmp_path / "killed")
    run_stage(IngestStage(videos=corpus), killed, progress=False)
    cmd = [sys.executable, "-m", "densevid.cli", "-q", "split", "--data", str(killed.root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not [p for p in (killed.root / "segments").glob("part-*.parquet") if "empty" not in p.name]:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(_segments(killed))
    assert 0 < partial < len(_segments(clean)), "the kill must land mid-run"

    assert subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode == 0
    assert _segments(killed) == _segments(clean)
    n = killed.sql("SELECT count(*) AS n, count(DISTINCT segment_id) AS d FROM segments").to_pylist()[0]
    assert n["n"] == n["d"]
