"""Split speed and accuracy against baselines measured in the same run.

Generates a long 720p video with known cuts, then times:
  1. decode-only: every frame decoded with decord (RGB frames, as a loader would), and with PyAV
     (no colour conversion: the floor for any detector that looks at every frame),
  2. the `scenedetect` command line with `detect-content`,
  3. densevid's split stage (PySceneDetect content + threshold detectors in one pass),
and prints the ratios and the cut F1 of each detector against the known cuts.
With --memory it also compares peak memory of `densevid split` on a 5- and a 30-minute video.

    python benchmarks/split.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cut_f1(found: list[int], truth: list[int], tol: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with one-to-one matching within ``tol`` frames."""
    unmatched = sorted(truth)
    tp = 0
    for f in sorted(found):
        best = min(unmatched, key=lambda t: abs(t - f), default=None)
        if best is not None and abs(best - f) <= tol:
            unmatched.remove(best)
            tp += 1
    p = tp / len(found) if found else 0.0
    r = tp / len(truth) if truth else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def make_video(path: Path, minutes: float, size=(1280, 720)) -> dict:
    from synth.videos import render_video, write_truth

    n_scenes = max(2, int(minutes * 60 / 9))
    truth = render_video(path, "bench", minutes * 60, seed=7, size=size, n_scenes=n_scenes, n_fades=n_scenes // 8)
    write_truth(path, truth)
    return json.loads(path.with_suffix(".json").read_text())


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def decode_only(path: Path) -> int:
    import decord

    vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
    n = 0
    for i in range(len(vr)):
        vr.next()
        n += 1
    return n


def pyav_decode_only(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def scenedetect_cli(path: Path, out_dir: Path) -> list[int]:
    subprocess.run([sys.executable, "-m", "scenedetect", "-i", str(path), "-o", str(out_dir), "-q",
                    "detect-content", "list-scenes", "-f", "scenes.csv"], check=True)
    import csv

    rows = list(csv.reader(open(out_dir / "scenes.csv")))
    header = next(i for i, r in enumerate(rows) if r and r[0] == "Scene Number")
    col = rows[header].index("Start Frame")
    # the CLI numbers frames from 1
    return [int(r[col]) - 1 for r in rows[header + 2 :] if r]


def densevid_split(path: Path) -> list[int]:
    from curation.scenes import DetectorConfig, detect_cuts

    return detect_cuts(path, DetectorConfig()).cuts


def densevid_split_stage(path: Path, data: Path, workers: int) -> float:
    """The real split stage (ingest first, untimed); returns seconds for split alone."""
    from curation.executors import run_stage
    from curation.stages import IngestStage, SplitStage
    from curation.store import Dataset

    ds = Dataset(data)
    run_stage(IngestStage(videos=path), ds, progress=False)
    t = time.perf_counter()
    run_stage(SplitStage(), ds, progress=False, workers=workers)
    return time.perf_counter() - t


def peak_rss_mb(path: Path) -> float:
    """Peak resident memory of a fresh process that splits ``path``."""
    code = ("import sys, resource; sys.path.insert(0, %r); from curation.scenes import detect_cuts; "
            "detect_cuts(%r); print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)" % (str(ROOT), str(path)))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--memory", action="store_true", help="also compare peak memory, 5 vs 30 minutes (slow)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "bench.mp4"
        t_make, truth = timed(lambda: make_video(video, args.minutes))
        tol = 2
        t_decode, n = timed(lambda: decode_only(video))
        t_pyav, _ = timed(lambda: pyav_decode_only(video))
        t_cli, cli_cuts = timed(lambda: scenedetect_cli(video, tmp))
        t_ours, our_cuts = timed(lambda: densevid_split(video))
        t_stage1 = densevid_split_stage(video, tmp / "ds1", 1)
        t_stage2 = densevid_split_stage(video, tmp / "ds2", 2)
        _, _, f1_cli = cut_f1(cli_cuts, truth["cuts"], tol)
        p, r, f1 = cut_f1(our_cuts, truth["cuts"], tol)
        hard = [c for c in truth["cuts"] if c not in truth["fades"]]
        report = {
            "video": f"{args.minutes:g} min 1280x720 @ {truth['fps']:g} fps, {n} frames, {len(truth['cuts'])} cuts "
                     f"({len(truth['fades'])} fades); generated in {t_make:.0f} s",
            "decode_only_s": round(t_decode, 1),
            "pyav_decode_only_s": round(t_pyav, 1),
            "scenedetect_cli_s": round(t_cli, 1),
            "densevid_split_s": round(t_ours, 1),
            "densevid_split_stage_1_worker_s": round(t_stage1, 1),
            "densevid_split_stage_2_workers_s": round(t_stage2, 1),
            "densevid_vs_decode_only": round(t_ours / t_decode, 2),
            "densevid_vs_pyav_decode_only": round(t_ours / t_pyav, 2),
            "densevid_vs_cli": round(t_ours / t_cli, 2),
            "cut_f1_densevid": round(f1, 3),
            "cut_precision_recall_densevid": [round(p, 3), round(r, 3)],
            "cut_f1_cli": round(f1_cli, 3),
            "cut_f1_cli_hard_cuts_only": round(cut_f1(cli_cuts, hard, tol)[2], 3),
        }
        if args.memory:
            mems = {}
            for minutes in (5, 30):
                v = tmp / f"mem{minutes}.mp4"
                make_video(v, minutes, size=(640, 360))
                mems[minutes] = peak_rss_mb(v)
            report["peak_rss_mb_5min_30min"] = [round(mems[5]), round(mems[30])]
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
