"""Near-duplicate detection and the quality pass, measured on generated videos.

From ``--sources`` generated source videos (seeds with distinct palettes), seven copies each: re-encoded
at a lower quality (crf 36), resized to half, cropped by 10% (and scaled back), trimmed by 2 s at both ends
(and by 2.3 s, off the signature's 0.5 s grid), brightened by 10%, and with a small logo overlaid.
Everything goes through ingest, split, quality and dedup; a pair of videos is called duplicate when any of
their segments share a group. Prints recall and precision of duplicate pairs
per transform, the time of the quality pass against decoding every frame of every video (decord), and what
the signature adds to the split's own pass.

    python benchmarks/dedup.py --sources 30
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def crop10(img):
    h, w = img.shape[:2]
    dh, dw = h // 20, w // 20  # 5% off each side: 10% of each dimension
    small = img[dh:h - dh, dw:w - dw]
    ys = np.linspace(0, small.shape[0] - 1, h).astype(int)
    xs = np.linspace(0, small.shape[1] - 1, w).astype(int)
    return small[ys][:, xs]


def logo(img):
    out = img.copy()
    h, w = img.shape[:2]
    out[h // 20: h // 20 + h // 8, w - w // 20 - w // 6: w - w // 20] = (255, 255, 255)
    out[h // 20 + 4: h // 20 + h // 8 - 4, w - w // 20 - w // 6 + 4: w - w // 20 - 4] = (200, 30, 30)
    return out


TRANSFORMS = {
    "reencoded": dict(crf=36),
    "half_size": dict(frame_fn=lambda img: img[::2, ::2]),
    "cropped_10pct": dict(frame_fn=crop10),
    "trimmed_2s": dict(trim_s=2.0),
    "trimmed_2.3s": dict(trim_s=2.3),  # off the signature's 0.5 s sampling grid
    "brightened_10pct": dict(frame_fn=lambda img: np.clip(img.astype(np.int16) * 11 // 10, 0, 255).astype(np.uint8)),
    "logo": dict(frame_fn=logo),
}


def distinct_seeds(n: int, min_hue_gap: float = 0.02) -> list[int]:
    """Seeds whose first scene's hue differs by at least ``min_hue_gap``: the generator's palette repeats
    (seeds 23 apart share it, with the same stripes), and two such videos differ only by a small moving
    shape, which is not what different sources look like."""
    seeds, seed = [], 100
    while len(seeds) < n:
        if seed >= 1000:  # hues repeat every 100 seeds (up to float rounding): no more palettes to find
            raise SystemExit(f"the generator has only {len(seeds)} palettes {min_hue_gap} apart; "
                             f"use --sources <= {len(seeds)}")
        hue = (seed * 0.13) % 1.0
        if all(min(abs(hue - h), 1 - abs(hue - h)) >= min_hue_gap for h in ((s * 0.13) % 1.0 for s in seeds)):
            seeds.append(seed)
        seed += 1
    return seeds


def make_videos(root: Path, n: int, seconds: float, fps: float = 24.0) -> dict[str, tuple[str, str]]:
    """file name -> (source, transform)"""
    from synth.videos import render_video, rewrite_video

    truth = {}
    folder = root / "videos" / "bench"
    for k, seed in enumerate(distinct_seeds(n)):
        src = folder / f"s{k:03d}.mp4"
        render_video(src, "bench", seconds, seed=seed, fps=fps, size=(192, 144), n_scenes=2, n_fades=0)
        truth[src.name] = (src.stem, "original")
        for name, t in TRANSFORMS.items():
            trim = int(t.get("trim_s", 0) * fps)
            end = int(seconds * fps) - trim if trim else None
            rewrite_video(src, folder / f"s{k:03d}_{name}.mp4", t.get("frame_fn"), trim, end, crf=t.get("crf", 23))
            truth[f"s{k:03d}_{name}.mp4"] = (src.stem, name)
    return truth


def decode_all(paths) -> float:
    import decord

    t = time.perf_counter()
    for p in paths:
        vr = decord.VideoReader(str(p), ctx=decord.cpu(0))
        for _ in range(len(vr)):
            vr.next()
    return time.perf_counter() - t


def split_pass_cost(paths) -> tuple[float, float]:
    """Seconds of the split's detection pass over ``paths`` as it is, and with the signature's colour layout
    replaced by a constant (what the signature adds to the pass)."""
    import curation.scenes as scenes

    def timed() -> float:
        t = time.perf_counter()
        for p in paths:
            scenes.detect_cuts(p, scenes.DetectorConfig())
        return time.perf_counter() - t

    real, blank = scenes.colour_layout, np.zeros((scenes.LAYOUT_GRID, scenes.LAYOUT_GRID, 3), np.uint8)
    times = {True: [], False: []}
    for _ in range(2):  # alternated, best of two: the page cache and other load favour neither
        for with_layouts in (True, False):
            scenes.colour_layout = real if with_layouts else (lambda img, bgr=False: blank)
            try:
                times[with_layouts].append(timed())
            finally:
                scenes.colour_layout = real
    return min(times[True]), min(times[False])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sources", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()

    from curation.executors import RunOptions, run_stage
    from curation.quality import DedupStage, QualityStage
    from curation.stages import IngestStage, SplitStage
    from curation.store import Dataset

    tmp = Path(tempfile.mkdtemp())
    try:
        truth = make_videos(tmp, args.sources, args.seconds)
        ds = Dataset(tmp / "d")
        opts = RunOptions(workers=2)
        run_stage(IngestStage(videos=tmp / "videos"), ds, progress=False, options=opts)
        run_stage(SplitStage(), ds, progress=False, options=opts)
        t_quality = run_stage(QualityStage(), ds, progress=False, options=RunOptions(workers=1)).seconds
        dedup = run_stage(DedupStage(), ds, progress=False)
        t_decode = decode_all(sorted((tmp / "videos").rglob("*.mp4")))
        t_split, t_split_bare = split_pass_cost(sorted((tmp / "videos").rglob("*.mp4")))

        name_of = {r["video_id"]: r["uri"].rsplit("/", 1)[-1] for r in ds.rows("videos")}
        groups: dict[str, set] = {}
        for r in ds.rows("duplicates"):
            groups.setdefault(r["dup_group"], set()).add(name_of[r["video_id"]])
        found = {tuple(sorted(p)) for g in groups.values() for p in itertools.combinations(sorted(g), 2)}
        print(f"{len(truth)} videos, {len(ds.rows('segments'))} segments; dedup compared "
              f"{dedup.counts['pairs_compared']} candidate pairs of "
              f"{len(ds.rows('segments')) * (len(ds.rows('segments')) - 1) // 2}")
        print("| transform | recall (copy found with its source) | precision (pairs with a copy that are true) |")
        print("|---|---|---|")
        for name in TRANSFORMS:
            copies = [f for f, (_, t) in truth.items() if t == name]
            hit = sum(tuple(sorted((f"{truth[c][0]}.mp4", c))) in found for c in copies)
            with_copy = [p for p in found if any(truth[x][1] == name for x in p)]
            true = sum(truth[p[0]][0] == truth[p[1]][0] for p in with_copy)
            print(f"| {name} | {hit / len(copies):.3f} ({hit}/{len(copies)}) | "
                  f"{true / len(with_copy) if with_copy else 1:.3f} ({true}/{len(with_copy)}) |")
        wrong = [p for p in found if truth[p[0]][0] != truth[p[1]][0]]
        print(f"all pairs: {len(found)} found, {len(wrong)} between different sources")
        print(f"quality pass {t_quality:.1f} s (one process) vs decoding every frame {t_decode:.1f} s: "
              f"{t_quality / t_decode:.2f}x; dedup {dedup.seconds:.2f} s")
        print(f"split pass {t_split:.1f} s with the signature, {t_split_bare:.1f} s without: "
              f"{t_split / t_split_bare:.3f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
