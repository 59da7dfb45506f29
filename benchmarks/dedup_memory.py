"""Peak memory and time of one dedup pass as a dataset grows: N stored segments (already grouped by
earlier passes) plus ``--new`` new ones, synthetic signatures (no video decoding).

Each source has its own colour and drifts slowly over its 10 s (20 signature samples); one new segment in
ten is a noisy copy of a stored one, so the pass also finds duplicates. Each size runs in a fresh process,
which samples its resident memory and reports the peak above what it held before the pass.

    python benchmarks/dedup_memory.py --segments 10000,30000,100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SAMPLES = 20  # 10 s of signature at one sample every 0.5 s
CHUNK = 10_000  # rows per written file


def signatures(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, SAMPLES, 8, 8, 3) uint8: a random base colour per segment, cells around it, a slow drift."""
    base = rng.uniform(20, 235, (n, 1, 1, 1, 3))
    cells = rng.normal(0, 25, (n, 1, 8, 8, 3))
    drift = np.linspace(0, 1, SAMPLES)[None, :, None, None, None] * rng.normal(0, 12, (n, 1, 8, 8, 3))
    return np.clip(base + cells + drift, 0, 255).astype(np.uint8)


def motion_bins(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, SAMPLES * 5) motion per 0.1 s: a level per segment and its own rise and fall."""
    from curation.quality import BINS_PER_SAMPLE

    level = rng.uniform(0.5, 4.0, (n, 1))
    return (level * rng.gamma(4.0, 0.25, (n, SAMPLES * BINS_PER_SAMPLE))).astype(np.float16)


def signature_bytes(layouts: np.ndarray, bins: np.ndarray) -> bytes:
    """Stored signature of synthetic (SAMPLES, 8, 8, 3) layouts (the same at every crop scale) and bins."""
    from curation.quality import _HEADER, SCALES, SIGNATURE_MAGIC

    scaled = np.repeat(layouts[:, None], len(SCALES), axis=1)
    return _HEADER.pack(SIGNATURE_MAGIC, len(layouts), len(bins)) + scaled.tobytes() + bins.tobytes()


def segment(i: int, sig: np.ndarray, bins: np.ndarray) -> dict:
    return dict(segment_id=f"seg{i:08d}", video_id=f"vid{i:08d}", idx=0, start_s=0.0, end_s=10.0, start_frame=0,
                end_frame=240, detector="synthetic", detector_params="{}", cut_score=0.0, motion=1.0, luma=100.0,
                frozen_frac=0.0, black_frac=0.0, signature=signature_bytes(sig, bins), code_version="bench")


def build(root: Path, n_stored: int, n_new: int, seed: int = 0) -> None:
    """Stored segments with their own duplicates rows (one group each), then the new ones without."""
    from curation.store import Dataset

    ds, rng = Dataset(root), np.random.default_rng(seed)
    kept = None
    for start in range(0, n_stored, CHUNK):
        sigs = signatures(rng, min(CHUNK, n_stored - start))
        bins = motion_bins(rng, len(sigs))
        kept = (sigs[:max(1, n_new // 10)], bins[:max(1, n_new // 10)]) if kept is None else kept
        ds.write("segments", [segment(start + k, s, m) for k, (s, m) in enumerate(zip(sigs, bins))])
        ds.write("duplicates", [dict(segment_id=f"seg{start + k:08d}", video_id=f"vid{start + k:08d}",
                                     dup_group=f"seg{start + k:08d}", matched="", similarity=None, other_groups=[],
                                     code_version="bench") for k in range(len(sigs))])
    new, new_bins = signatures(rng, n_new), motion_bins(rng, n_new)
    copies = np.clip(kept[0].astype(np.int16) + rng.integers(-2, 3, kept[0].shape), 0, 255).astype(np.uint8)
    new[: len(copies)] = copies  # noisy copies of stored segments
    new_bins[: len(copies)] = kept[1] * rng.uniform(0.9, 1.1, kept[1].shape)
    ds.write("segments", [segment(n_stored + k, s, m) for k, (s, m) in enumerate(zip(new, new_bins))])


def rss_mb() -> float:
    """Resident memory now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def measure(root: Path) -> dict:
    """One dedup pass in this process: peak RSS above the post-import level, seconds, counts."""
    from curation.executors import run_stage
    from curation.quality import DedupStage
    from curation.store import Dataset

    ds = Dataset(root)
    before, peak = rss_mb(), [0.0]
    done = threading.Event()

    def sample():  # the imports' own peak may exceed the pass's: sample the resident size instead
        while not done.wait(0.01):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    stats = run_stage(DedupStage(), ds, progress=False)
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    return dict(peak_mb=max(peak[0], rss_mb()) - before, seconds=seconds, written=stats.counts["rows_written"],
                duplicates=stats.counts["duplicates"], compared=stats.counts["pairs_compared"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segments", default="10000,30000,100000", help="stored segments, comma-separated sizes")
    ap.add_argument("--new", type=int, default=1000, help="new segments each pass adds")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    raw_mb = SAMPLES * 8 * 8 * 3 / 2**20
    print(f"{'stored':>8} {'new':>6} {'peak MB':>8} {'MB per 1k':>9} {'raw sig MB':>10} {'seconds':>8} "
          f"{'dups':>5} {'compared':>9}")
    for n in (int(x) for x in args.segments.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp) / "d", n, args.new)
            out = subprocess.run([sys.executable, __file__, "--measure", str(Path(tmp) / "d")], check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
        total = n + args.new
        print(f"{n:>8} {args.new:>6} {r['peak_mb']:>8.0f} {r['peak_mb'] / total * 1000:>9.1f} "
              f"{raw_mb * total:>10.0f} {r['seconds']:>8.1f} {r['duplicates']:>5} {r['compared']:>9}")


if __name__ == "__main__":
    main()
