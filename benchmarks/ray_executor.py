"""The Ray executor against the local one, in the same run on this machine:

  1. the demo pipeline (7 generated videos, tiny model): local executor vs Ray (a local 2-CPU instance);
  2. the split stage on longer videos: local with 2 workers vs Ray with 2 CPUs (the overhead ratio);
  3. split throughput on one simulated node (1 CPU) against two (1 CPU each), `ray.cluster_utils.Cluster`;
  4. a rerun that only skips finished work, over a table of one file per video against the same table
     compacted (what the end-of-stage compaction buys).

    python benchmarks/ray_executor.py --videos 6 --minutes 1
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def demo_pipeline(tmp: Path, executor: str) -> float:
    from densevid.pipeline import PipelineConfig, run_pipeline

    cfg = PipelineConfig(data=tmp / f"demo-{executor}", videos=tmp / "demo-videos", model=str(tmp / "tiny"),
                         caption_frames=8, sample_frames=16, batch_size=4, max_new_tokens=512, executor=executor)
    seconds, _ = timed(lambda: run_pipeline(cfg, progress=False))  # the random model's rule breaks fail as rows
    return seconds


def split(tmp: Path, videos: Path, name: str, options) -> tuple[float, int]:
    from curation.executors import RunOptions, run_stage
    from curation.stages import IngestStage, SplitStage
    from curation.store import Dataset

    ds = Dataset(tmp / name)
    run_stage(IngestStage(videos=videos), ds, progress=False, options=RunOptions(workers=2))
    seconds, stats = timed(lambda: run_stage(SplitStage(chunk_s=20.0), ds, progress=False, options=options))
    assert stats.n_failed == 0
    return seconds, len(stats.nodes)


def split_on_nodes(tmp: Path, videos: Path, n_nodes: int) -> tuple[float, int]:
    import ray
    from ray.cluster_utils import Cluster

    from curation.executors import RunOptions

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(n_nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        return split(tmp, videos, f"nodes-{n_nodes}", RunOptions(executor="ray"))
    finally:
        ray.shutdown()
        cluster.shutdown()


def rerun_skip(tmp: Path, n_videos: int) -> tuple[float, float]:
    """A split rerun with nothing to do: segments in one file per video, then compacted."""
    from curation.stage import Stats, pending_items
    from curation.stages import SplitStage
    from curation.store import Dataset, stable_id

    ds = Dataset(tmp / "skip")
    for v in range(n_videos):
        vid = stable_id("video", v)
        ds.write("videos", [dict(video_id=vid, uri=f"/v/{v}.mp4", uris=[], domain="cinematic", duration_s=10.0,
                                 fps=24.0, n_frames=240, width=64, height=48)])
        ds.write("segments", [dict(segment_id=stable_id(vid, 0), video_id=vid, idx=0, start_frame=0, end_frame=240,
                                   start_s=0.0, end_s=10.0)])
    fresh = lambda: pending_items(SplitStage(), Dataset(ds.root), Stats("split"))  # a new process: no key cache
    many, left = timed(fresh)
    assert not left
    ds.compact("videos"), ds.compact("segments")
    one, left = timed(fresh)
    assert not left
    return many, one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=6, help="videos for the split measurements")
    ap.add_argument("--minutes", type=float, default=1.0, help="length of each")
    ap.add_argument("--skip-videos", type=int, default=600)
    args = ap.parse_args()

    import ray

    from curation.executors import RunOptions
    from model.tiny import build_tiny_checkpoint
    from synth.videos import make_corpus, render_video

    tmp = Path(tempfile.mkdtemp())
    try:
        make_corpus(tmp / "demo-videos")
        build_tiny_checkpoint(tmp / "tiny")
        for k in range(args.videos):
            render_video(tmp / "long" / "cinematic" / f"v{k}.mp4", "cinematic", args.minutes * 60, seed=k,
                         size=(320, 240), n_scenes=max(2, int(args.minutes * 6)), n_fades=1)

        demo_local = demo_pipeline(tmp, "local")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        demo_ray = demo_pipeline(tmp, "ray")
        split_ray, _ = split(tmp, tmp / "long", "split-ray", RunOptions(executor="ray"))
        ray.shutdown()
        split_local, _ = split(tmp, tmp / "long", "split-local", RunOptions(workers=2))
        one_node, _ = split_on_nodes(tmp, tmp / "long", 1)
        two_nodes, used = split_on_nodes(tmp, tmp / "long", 2)
        many, one = rerun_skip(tmp, args.skip_videos)

        minutes = args.videos * args.minutes
        print(f"demo pipeline: local {demo_local:.1f} s, Ray {demo_ray:.1f} s ({demo_ray / demo_local:.2f}x)")
        print(f"split of {args.videos} x {args.minutes:g} min: local 2 workers {split_local:.1f} s, Ray 2 CPUs "
              f"{split_ray:.1f} s ({split_ray / split_local:.2f}x)")
        print(f"split throughput: 1 node {minutes / one_node * 60:.1f} video-s/s, 2 nodes ({used} used) "
              f"{minutes / two_nodes * 60:.1f} video-s/s ({one_node / two_nodes:.2f}x)")
        print(f"rerun that skips {args.skip_videos} done videos: {many:.2f} s over one file per video, "
              f"{one:.3f} s compacted ({many / one:.0f}x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
