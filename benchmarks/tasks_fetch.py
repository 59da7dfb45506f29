"""How the tasks stage reads its inputs: three catalog queries per video (the earlier way) against one query
per table for a batch of videos (`synth.tasks.fetch_video_rows`), on the same dataset in the same run.

The dataset is written the way the pipeline writes it, one Parquet file per video and stage, so each query
pays for a catalog that lists many files. Rows are generated (no model run): the query cost does not depend
on what the captions say. Both ways must return the same rows.

    python benchmarks/tasks_fetch.py --videos 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "bench-model"
SEGMENTS_PER_VIDEO = 5


def write_dataset(ds, n_videos: int) -> list[dict]:
    """Per video, like the stages do: one file each in videos, segments, captions, dense_captions, grounding."""
    from curation.store import stable_id

    videos = []
    for v in range(n_videos):
        vid = stable_id("video", v)
        video = dict(video_id=vid, uri=f"/videos/{v}.mp4", uris=[f"/videos/{v}.mp4"], domain="cinematic",
                     duration_s=50.0, fps=24.0, n_frames=1200, width=320, height=240)
        ds.write("videos", [video])
        segs = [dict(segment_id=stable_id(vid, k), video_id=vid, idx=k, start_frame=240 * k, end_frame=240 * (k + 1),
                     start_s=10.0 * k, end_s=10.0 * (k + 1)) for k in range(SEGMENTS_PER_VIDEO)]
        ds.write("segments", segs)
        ds.write("captions", [dict(s, model=MODEL, prompt_version="caption_v1", summary=f"event {s['idx']}",
                                   details="objects: a box") for s in segs])
        ds.write("dense_captions", [dict(video_id=vid, model=MODEL, rendered=f"dense caption of {v}")])
        ds.write("grounding", [dict(record_id=stable_id(vid, "g", k), video_id=vid, segment_id=segs[k]["segment_id"],
                                    phrase=f"the box {k}", action="moves", start_s=10.0 * k + 1, end_s=10.0 * k + 5,
                                    boxes=[], source="ground_truth", model="") for k in range(2)])
        videos.append(video)
    ds.refresh_catalog()
    return videos


def per_video(ds, video: dict) -> tuple:
    """The earlier way: three queries for one video."""
    vid = [video["video_id"]]
    dense = ds.sql("SELECT rendered FROM dense_captions WHERE video_id = ? AND model = ?", vid + [MODEL])
    segs = ds.sql("SELECT s.start_frame, s.end_frame, s.segment_id, c.start_s, c.end_s, c.summary, c.details "
                  "FROM captions c JOIN segments s USING (segment_id) WHERE c.video_id = ? AND c.model = ? "
                  "ORDER BY s.start_frame", vid + [MODEL])
    truth = ds.sql("SELECT phrase, action, start_s, end_s, boxes FROM grounding WHERE video_id = ? "
                   "AND source = 'ground_truth' ORDER BY start_s", vid)
    return (dense.column("rendered").to_pylist()[0], [r["segment_id"] for r in segs.to_pylist()],
            [r["phrase"] for r in truth.to_pylist()])


def batched(ds, videos: list[dict], batch_size: int) -> list[tuple]:
    from synth.tasks import fetch_video_rows

    out = []
    for i in range(0, len(videos), batch_size):
        for rows in fetch_video_rows(ds, videos[i : i + batch_size], MODEL):
            out.append((rows.dense, [s["segment_id"] for s in rows.segments], [g["phrase"] for g in rows.grounding]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=0, help="videos per batch (default: the tasks stage's)")
    args = ap.parse_args()

    from curation.store import Dataset
    from synth.tasks import TasksStage

    args.batch_size = args.batch_size or TasksStage.batch_size
    ds = Dataset(Path(tempfile.mkdtemp(prefix="tasks-fetch-")) / "ds")
    t0 = time.perf_counter()
    videos = write_dataset(ds, args.videos)
    print(f"{args.videos} videos, {len(ds.files('captions'))} caption files ({time.perf_counter() - t0:.1f} s to write)")

    t0 = time.perf_counter()
    old = [per_video(ds, v) for v in videos]
    old_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    new = batched(ds, videos, args.batch_size)
    new_s = time.perf_counter() - t0
    assert old == new, "both ways must read the same rows"
    print(f"{'three queries per video':<32} {old_s:7.2f} s  {1000 * old_s / len(videos):6.1f} ms/video")
    print(f"{'one query per table per batch':<32} {new_s:7.2f} s  {1000 * new_s / len(videos):6.1f} ms/video")
    print(f"speed-up {old_s / new_s:.1f}x (batches of {args.batch_size} videos)")


if __name__ == "__main__":
    main()
