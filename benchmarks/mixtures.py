"""Mixture recipes at scale: a generated `samples` table of 1,000,000 rows (and its videos), three recipes
(equal samples per domain; hours at temperature 2 with a per-video cap and upsampling; token targets over
domain and task), timed against a plain copy of the split in the same run (the cost floor of any selection).

Prints, per recipe: the balance query's time, the whole build (balance query, shares, selection, manifest,
report, chart) and the largest |achieved - target| share.

    python benchmarks/mixtures.py --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOMAINS = {"instructional": 0.40, "cinematic": 0.25, "egocentric": 0.15, "sports": 0.10, "news": 0.07,
           "unlabeled": 0.03}
TASKS = ("dense_caption", "segment_caption", "temporal_grounding", "spatio_temporal_grounding")
SOURCES = ("youtube", "archive", "camera")

RECIPES = {
    "balanced (samples, equal domains)": ("balanced", {}),
    "hours, T=2, cap 40/video, upsample x3": ("hours-t2", {"budget": 20000.0, "max_per_video": 40}),
    "tokens, domain + task targets": ("targets", {"targets": {
        "domain": {"instructional": 0.3, "cinematic": 0.2, "egocentric": 0.2, "sports": 0.1, "news": 0.1,
                   "unlabeled": 0.1},
        "task": {"dense_caption": 0.25, "segment_caption": 0.35, "temporal_grounding": 0.2,
                 "spatio_temporal_grounding": 0.2}}}),
}


def write_tables(root: Path, n_rows: int, seed: int = 0) -> None:
    """Samples in 10 Parquet files and their videos (50 samples per video on average), written directly."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.store import SCHEMAS

    rng = np.random.default_rng(seed)
    n_videos = max(1, n_rows // 50)
    video_domain = rng.choice(list(DOMAINS), size=n_videos, p=list(DOMAINS.values()))
    video_source = rng.choice(SOURCES, size=n_videos, p=[0.6, 0.3, 0.1])
    duration = rng.uniform(60, 1800, n_videos)
    vids = np.array([f"v{i:07d}" for i in range(n_videos)])
    (root / "videos").mkdir(parents=True)
    (root / "samples").mkdir()
    videos = pa.table({"video_id": vids, "uri": [f"/videos/{v}.mp4" for v in vids], "domain": video_domain,
                       "source": video_source, "duration_s": duration, "fps": np.full(n_videos, 30.0),
                       "n_frames": (duration * 30).astype(np.int64)})
    pq.write_table(_full(videos, SCHEMAS["videos"]), root / "videos" / "part-0.parquet")
    owner = rng.integers(0, n_videos, n_rows)
    task = rng.choice(TASKS, size=n_rows, p=[0.1, 0.5, 0.25, 0.15])
    start = rng.uniform(0, 0.8, n_rows) * duration[owner]
    length = np.where(task == "dense_caption", duration[owner] - start, rng.uniform(2, 60, n_rows))
    split = rng.choice(["train", "val", "test"], size=n_rows, p=[0.9, 0.05, 0.05])
    table = pa.table({
        "sample_id": [f"s{i:08d}" for i in range(n_rows)], "task": task, "video_id": vids[owner],
        "uri": [f"/videos/{v}.mp4" for v in vids[owner]], "clip_start_s": start, "clip_end_s": start + length,
        "clip_start_frame": (start * 30).astype(np.int64), "clip_end_frame": ((start + length) * 30).astype(np.int64),
        "video_n_frames": (duration[owner] * 30).astype(np.int64), "fps": np.full(n_rows, 30.0),
        "messages": np.full(n_rows, "[]"), "domain": video_domain[owner], "split": split,
        "n_text_tokens": rng.integers(20, 400, n_rows), "n_visual_tokens": rng.integers(200, 8000, n_rows),
    })
    full = _full(table, SCHEMAS["samples"])
    for k, part in enumerate(range(0, n_rows, -(-n_rows // 10))):
        pq.write_table(full.slice(part, -(-n_rows // 10)), root / "samples" / f"part-{k}.parquet")


def _full(table, schema):
    """Every column of the table's schema; those not generated are nulls."""
    import pyarrow as pa

    n = table.num_rows
    return pa.table({f.name: table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(n, f.type)
                     for f in schema}, schema=schema)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()

    from curation.store import Dataset
    from mixtures.balance import build_mixtures, max_error, stats_sql
    from mixtures.recipe import load_mix_recipe

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "d"
        _, t_gen = timed(lambda: write_tables(root, args.rows))
        ds = Dataset(root)
        ds.refresh_catalog()
        print(f"{args.rows} samples generated in {t_gen:.1f} s")
        con = ds.connect(read_only=True)
        _, t_copy = timed(lambda: con.sql(f"COPY (SELECT * FROM samples WHERE split = 'train') TO "
                                          f"'{tmp}/copy.parquet' (FORMAT parquet)"))
        print(f"baseline: copy of the train split to Parquet {t_copy:.2f} s")
        print("| recipe | balance query | build (written) | build / copy | rows | repeated rows | max share error |")
        print("|---|---|---|---|---|---|---|")
        for label, (preset, overrides) in RECIPES.items():
            recipe = load_mix_recipe(preset, {**overrides, "holdout": []})
            _, t_stats = timed(lambda: con.sql(stats_sql(recipe)).fetchall())
            built, t_build = timed(lambda: build_mixtures(ds, recipe))
            report = built[0].report
            print(f"| {label} | {t_stats:.2f} s | {t_build:.2f} s | {t_build / t_copy:.1f}x | {report['rows']} | {report['repeated_rows']} | "
                  f"{max_error(report):.5f} |")
        con.close()


if __name__ == "__main__":
    main()
