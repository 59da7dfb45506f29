"""Split and caption-stage I/O with videos and dataset on a local S3 server, against the local disk, in one run.

Starts moto's S3 server on 127.0.0.1, generates a corpus, uploads it, then times on both:
  1. ingest + split (probe, hash, scene detection through PyAV range reads on the bucket),
  2. the caption stage's I/O: every segment's caption frames decoded (`read_frames`; on the bucket through
     each worker's cached copy, first cold, then warm),
and counts the server's requests per video (ingest + split) and per table write.

    python benchmarks/object_store.py --videos 6 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def start_server() -> str:
    from moto.server import ThreadedMotoServer
    from s3server import quiet_server_log

    quiet_server_log()  # counted_requests listens while it counts
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=f"http://{host}:{port}")
    return f"http://{host}:{port}"


def split(videos, data) -> float:
    from curation import storage
    from curation.executors import run_stage
    from curation.stages import IngestStage, SplitStage
    from curation.store import Dataset

    ds = Dataset(data)
    t = time.perf_counter()
    run_stage(IngestStage(videos=storage.location(videos)), ds, progress=False)
    run_stage(SplitStage(), ds, progress=False)
    return time.perf_counter() - t


def caption_io(data) -> float:
    """What the caption stage reads: each segment's frames (at most 16, ~2 fps), decoded."""
    from curation.frames import FramePolicy, sample_indices
    from curation.store import Dataset
    from curation.video import read_frames

    ds = Dataset(data)
    uris = {v["video_id"]: v["uri"] for v in ds.rows("videos")}
    policy = FramePolicy(max_frames=16)
    t = time.perf_counter()
    for seg in ds.rows("segments"):
        idx = sample_indices(seg["start_frame"], seg["end_frame"], _fps(ds, seg["video_id"]), policy)
        read_frames(uris[seg["video_id"]], idx)
    return time.perf_counter() - t


_FPS: dict = {}


def _fps(ds, video_id) -> float:
    if not _FPS:
        _FPS.update({v["video_id"]: v["fps"] for v in ds.rows("videos")})
    return _FPS[video_id]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()

    from curation import storage
    from curation.store import Dataset
    from s3server import counted_requests, upload
    from synth.videos import make_corpus

    start_server()
    tmp = Path(tempfile.mkdtemp(prefix="densevid-bench-s3-"))
    corpus = [("cinematic", f"v{i}", args.seconds, max(2, int(args.seconds // 8)), 1) for i in range(args.videos)]
    make_corpus(tmp / "videos", corpus, fps=24.0, size=(320, 240))
    fs, _ = storage.filesystem("s3://bench")
    fs.mkdir("bench")
    upload(tmp / "videos", "s3://bench/videos")
    mb = sum(p.stat().st_size for p in (tmp / "videos").rglob("*.mp4")) / 1e6

    local_split = split(tmp / "videos", tmp / "ds")
    with counted_requests() as split_requests:
        remote_split = split("s3://bench/videos", "s3://bench/ds")
    local_io = caption_io(tmp / "ds")
    storage.video_cache().clear()
    _FPS.clear()
    cold_io = caption_io("s3://bench/ds")
    warm_io = caption_io("s3://bench/ds")

    ds = Dataset("s3://bench/ds")
    row = dict(stage="bench", variant="", item_id="x", error_type="E", message="m", raw="", created_at=0.0)
    ds.write("failures", [row])  # the listing and key cache are warm, as in a running stage
    with counted_requests() as write_requests:
        ds.write("failures", [dict(row, item_id="y")])
    with counted_requests() as fresh_write_requests:  # a new process reads the keys of each stored file
        Dataset("s3://bench/ds").write("failures", [dict(row, item_id="z")])
    with counted_requests() as sql_requests:
        ds.sql("SELECT count(*) FROM segments")

    n_seg = ds.read("segments", ["segment_id"]).num_rows
    print(f"{args.videos} videos x {args.seconds:g} s (320x240, {mb:.1f} MB), {n_seg} segments")
    print(f"ingest + split   local {local_split:6.2f} s   bucket {remote_split:6.2f} s   ratio {remote_split / local_split:.2f}")
    print(f"caption I/O      local {local_io:6.2f} s   bucket cold {cold_io:6.2f} s (ratio {cold_io / local_io:.2f})"
          f"   warm {warm_io:6.2f} s (ratio {warm_io / local_io:.2f})")
    print(f"requests: {len(split_requests) / args.videos:.1f} per video (ingest + split), {len(write_requests)} per "
          f"table write ({', '.join(write_requests)}), {len(fresh_write_requests)} for the first write of a new "
          f"process to a table of {len(fresh_write_requests) - len(write_requests)} files, "
          f"{len(sql_requests)} per sql over all tables")
    print("ingest + split requests by kind: " + ", ".join(f"{kind} {n}" for kind, n in _kinds(split_requests)))


def _kinds(requests: list[str]) -> list[tuple[str, int]]:
    """Requests by method and the last part of the key (``GET _compaction.epoch``, ``LIST``, ``PUT *.parquet``)."""
    from collections import Counter

    def kind(r: str) -> str:
        method, _, key = r.partition(" ")
        name = key.rstrip("/").rsplit("/", 1)[-1]
        if method == "LIST":
            return "LIST"
        return f"{method} {name if name.startswith('_') else '*' + Path(name).suffix}"

    return Counter(kind(r) for r in requests).most_common()


if __name__ == "__main__":
    main()
