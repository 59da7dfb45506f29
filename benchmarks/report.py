"""`densevid report` time on the demo dataset and on a generated dataset of 2,000 short videos.

The generated dataset has real video files (a few short generated videos, each row of `videos` pointing at one
of them under its own video id, so every video still gets its own thumbnails cut from a real decode) and rows
written directly as Parquet: segments, captions from two models, a dense caption, grounding records with
boxes, samples with their chat messages and frames, failures, and a `balanced` mixture built by the mixture
code. Measured in one run, each against the same baseline: reading the tables the report reads.

    python benchmarks/report.py --videos 2000 --demo demo_out/dataset
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

DOMAINS = ("instructional", "cinematic", "egocentric", "sports")


def make_dataset(root: Path, n_videos: int, n_files: int = 8, seed: int = 0) -> Path:
    import numpy as np

    from curation.frames import FramePolicy, sample_indices
    from curation.store import Dataset, stable_id
    from curation.times import FrameSpan
    from curation.video import probe
    from mixtures.balance import build_mixtures
    from mixtures.recipe import load_mix_recipe
    from synth.tasks import DENSE_PROMPT, GROUNDING_PROMPT, SEGMENT_PROMPT, assign_split, messages_json
    from synth.videos import render_video

    rng = np.random.default_rng(seed)
    files = []
    for k in range(n_files):
        path = root / "videos" / f"clip{k}.mp4"
        truth = render_video(path, DOMAINS[k % len(DOMAINS)], 8.0, seed=k, fps=12.0, size=(160, 120), n_scenes=3, n_fades=0)
        files.append((path, probe(path), truth.scene_starts))
    ds = Dataset(root / "dataset")
    models = ("/models/Qwen3-VL-2B-Instruct", "runs/lora")
    rows = {t: [] for t in ("videos", "segments", "captions", "dense_captions", "grounding", "samples", "failures")}
    for i in range(n_videos):
        path, p, starts = files[i % n_files]
        vid = f"v{i:06d}"
        domain = DOMAINS[int(rng.integers(len(DOMAINS)))]
        rows["videos"].append(dict(video_id=vid, uri=str(path), uris=[str(path)], domain=domain, source="generated",
                                   duration_s=p.duration_s, fps=p.fps, n_frames=p.n_frames, width=p.width,
                                   height=p.height, codec=p.codec, rotation=0, variable_fps=False, bytes=p.bytes))
        bounds = list(zip(starts, starts[1:] + [p.n_frames]))
        segs = []
        for k, (a, b) in enumerate(bounds):
            seg = dict(segment_id=stable_id(vid, a, b), video_id=vid, idx=k, start_s=a / p.fps, end_s=b / p.fps,
                       start_frame=a, end_frame=b, detector="content+threshold", detector_params="{}",
                       cut_score=float(rng.uniform(27, 90)) if k else 0.0, motion=0.2, luma=110.0)
            segs.append(seg)
            for m in models[: 1 + (i % 2)]:
                rows["captions"].append(dict(segment_id=seg["segment_id"], model=m, prompt_version="caption_v1",
                                             video_id=vid, start_s=seg["start_s"], end_s=seg["end_s"],
                                             summary=f"segment {k} of video {i}: a shape moves across the frame",
                                             details="people: none; objects: a square; background: stripes; actions: moves",
                                             raw_output="{}", frames_used=[a]))
        rows["segments"] += segs
        entries = [dict(start_s=s["start_s"], end_s=s["end_s"], summary=f"event {s['idx']}", details="a shape moves")
                   for s in segs]
        rendered = "\n".join(f"<{e['start_s']:.1f} - {e['end_s']:.1f} seconds> {e['summary']}" for e in entries)
        rows["dense_captions"].append(dict(video_id=vid, model=models[0], prompt_version="dense_v1", entries=entries,
                                           rendered=rendered, renderer="seconds"))
        for s in segs[:2]:
            t = np.linspace(s["start_s"], s["end_s"] - 1 / p.fps, 8)
            rows["grounding"].append(dict(record_id=stable_id("g", s["segment_id"]), video_id=vid,
                                          segment_id=s["segment_id"], phrase="the red square", action="move right",
                                          start_s=s["start_s"], end_s=s["end_s"], source="ground_truth", model="",
                                          boxes=[dict(t_s=float(x), x1=100 + 50 * j, y1=200, x2=300 + 50 * j, y2=500)
                                                 for j, x in enumerate(t)]))
        drafts = [("dense_caption", FrameSpan(0, p.n_frames, p.fps), DENSE_PROMPT, rendered, 16)]
        drafts += [("segment_caption", FrameSpan(s["start_frame"], s["end_frame"], p.fps), SEGMENT_PROMPT,
                    f"<{s['start_s']:.1f} - {s['end_s']:.1f} seconds> event", 8) for s in segs]
        drafts += [("temporal_grounding", FrameSpan(0, p.n_frames, p.fps),
                    GROUNDING_PROMPT.format(phrase="the red square", action="move right"),
                    f"<{s['start_s']:.1f} - {s['end_s']:.1f} seconds>", 16) for s in segs[:2]]
        for k, (task, span, prompt, answer, frames) in enumerate(drafts):
            idx = sample_indices(span.start_frame, span.end_frame, p.fps, FramePolicy(max_frames=frames))
            rows["samples"].append(dict(
                sample_id=stable_id(task, vid, k), task=task, video_id=vid, uri=str(path), clip_start_s=span.start_s,
                clip_end_s=span.end_s, clip_start_frame=span.start_frame, clip_end_frame=span.end_frame,
                video_n_frames=p.n_frames, frame_indices=idx, fps=p.fps, messages=messages_json(prompt, answer),
                domain=domain, split=assign_split(vid), n_text_tokens=40 + len(answer) // 4,
                n_visual_tokens=12 * len(idx)))
        if i % 50 == 0:
            rows["failures"].append(dict(stage="caption", item_id=segs[-1]["segment_id"], error_type="InvalidOutput",
                                         message=f"segment {segs[-1]['segment_id']}: span outside the segment",
                                         raw="", created_at=0.0))
    for table, table_rows in rows.items():
        for k in range(0, len(table_rows), 20000):
            ds.write(table, table_rows[k:k + 20000])
    build_mixtures(ds, load_mix_recipe("balanced"))
    return ds.root


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(name: str, data: Path, work: Path) -> list[tuple]:
    from curation.store import Dataset, SCHEMAS
    from report.build import write_report
    from report.data import load_tables

    ds = Dataset(data)
    load_tables(ds)  # warm (imports, file cache), then the baseline
    _, base = timed(lambda: load_tables(ds))
    out = []
    fresh = work / f"{name}-nothumbs"
    r, s = timed(lambda: write_report(data, fresh, progress=False, thumbnails=False))
    out.append((name, "first run, no thumbnails", s, base, r))
    site = work / f"{name}-site"
    r, s = timed(lambda: write_report(data, site, progress=False))
    out.append((name, "first run, thumbnails cut", s, base, r))
    r, s = timed(lambda: write_report(data, site, progress=False))
    out.append((name, "rerun, nothing changed", s, base, r))
    seg = ds.sql("SELECT segment_id, video_id, start_s, end_s FROM segments ORDER BY segment_id LIMIT 1").to_pylist()[0]
    ds.write("captions", [{**{f.name: None for f in SCHEMAS["captions"]}, **seg, "model": "bench-round2",
                           "prompt_version": "caption_v1", "summary": "another round", "details": "-"}])
    r, s = timed(lambda: write_report(data, site, progress=False))
    out.append((name, "rerun, one caption added", s, base, r))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=2000)
    ap.add_argument("--demo", type=Path, default=ROOT / "demo_out" / "dataset",
                    help="the demo's dataset (`make demo` writes demo_out/dataset)")
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if (args.demo / "videos").is_dir():
            demo = tmp / "demo"  # a copy: the benchmark adds a caption row
            shutil.copytree(args.demo, demo, ignore=shutil.ignore_patterns("catalog.duckdb", "clips"))
            results += measure("demo", demo, tmp)
        else:
            print(f"no demo dataset at {args.demo}: run `make demo` first; measuring the generated one only")
        (data, gen_s) = timed(lambda: make_dataset(tmp / "gen", args.videos))
        print(f"generated {args.videos} videos' rows in {gen_s:.1f} s")
        results += measure(f"generated {args.videos}", data, tmp)
    print("| dataset | run | seconds | read tables (baseline) | ratio | pages written / reused | thumbnails cut / cached |")
    print("|---|---|---|---|---|---|---|")
    for name, what, s, base, r in results:
        print(f"| {name} ({r.videos} videos) | {what} | {s:.2f} | {base:.2f} | {s / base:.1f}x | "
              f"{r.pages_written} / {r.pages_reused} | {r.thumbs_cut} / {r.thumbs_cached} |")


if __name__ == "__main__":
    main()
