"""The flywheel, measured: does one round of the model's own gated labels make the next model better?

Three corpora of synth.world videos (different seeds, so no video repeats): a small labelled seed, a larger
pool whose truth is kept in a folder the pipeline never reads, and a fixed held-out set. All go into one
dataset; every arm is a `densevid round` (finetune.rounds.run_round) on it, scored on the same held-out set:

- round 0: trained on the seed's ground truth (no labelling);
- round 1: the round-0 model labels the pool (ground, verify, tasks), the gate filters, a student trains from
  the base model on the seed's truth plus the gated records;
- round 2: the same labels without the gate (every record of the round-0 model);
- round 3: the seed's and the pool's truth (the ceiling: what perfect labels would give).

Training samples are temporal grounding (the question the held-out set asks) and segment grounding (the
ground stage's own question, so a trained model can label). The gate's precision and recall come from the
hidden truth. A benchmark, not a test: tens of minutes on 2 cores.

    python benchmarks/flywheel.py --seed-videos 40 --pool-videos 80 --heldout-videos 20 --steps 300
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.learn_grounding import WORLD, quiet_libraries  # noqa: E402
from curation.store import Dataset  # noqa: E402

TASKS = ("temporal_grounding", "segment_grounding")
SEEDS = {"seed": 21, "pool": 22, "heldout": 23}  # corpus seeds (the learning checks use 0 and 1)
CHECKS = ("form", "cycle", "unique")  # the caption check needs captions, which these models never learned


def build_dataset(out: Path, args) -> tuple[Path, Path, Path]:
    """Videos (seed and held-out with their truth beside them, the pool's truth aside), ingested and split,
    the visible truth turned into grounding records and samples."""
    from densevid.pipeline import PipelineConfig, run_pipeline
    from model.tiny import build_tiny_checkpoint
    from synth.world import make_world_corpus

    tiny = build_tiny_checkpoint(out / "tiny")
    videos, truth_dir, data = out / "videos", out / "pool_truth", out / "dataset"
    counts = {"seed": args.seed_videos, "pool": args.pool_videos, "heldout": args.heldout_videos}
    for domain, n in counts.items():
        make_world_corpus(videos, n, seed=SEEDS[domain], domain=domain,
                          truth_dir=truth_dir if domain == "pool" else None, **WORLD)
    run_pipeline(PipelineConfig(data=data, videos=videos, model=str(tiny)), ("ingest", "split"), progress=False)
    truth_samples(data, tiny, args)
    return tiny, truth_dir, data


def truth_samples(data: Path, tiny: Path, args) -> None:
    """Grounding records from the truth beside the videos, and their samples (no model needed)."""
    from curation.executors import run_stage
    from curation.frames import FramePolicy
    from synth.grounding import GroundTruthStage
    from synth.tasks import TasksStage

    frames = FramePolicy(max_frames=args.frames)
    for stage in (GroundTruthStage(), TasksStage(model_id=str(tiny), tasks=TASKS, frames=frames, segment_frames=frames)):
        run_stage(stage, Dataset(data), progress=False)


def round_config(data: Path, teacher, n: int, args, **kw):
    from finetune.rounds import RoundConfig

    train = (f"max_steps={args.steps}", "log_every=50", f"seed={args.seed}", "data.max_length=2048")
    return RoundConfig(data=str(data), teacher=str(teacher), round=n, pool="domain = 'pool'",
                       heldout="domain = 'heldout'", mix=("split=", "holdout=", f"tasks=[{','.join(TASKS)}]"),
                       train_recipe="world", train=train, eval_frames=args.frames, eval_dense_tokens=0,
                       eval_max_samples=1000, **kw)


def labeller(data: Path, args):
    from densevid.pipeline import PipelineConfig
    from densevid.round_cli import labeller as make
    from synth.verify import GateConfig

    return make(PipelineConfig(data=data, caption_frames=args.frames, sample_frames=args.frames, batch_size=8,
                               retries=args.retries, tasks=TASKS, skip=("caption", "dense"),
                               gate=GateConfig(checks=CHECKS, unique_frames=args.frames)), progress=False)


def reveal_pool_truth(data: Path, truth_dir: Path, tiny: Path, args) -> None:
    """The ceiling's labels: the pool's truth put beside its videos, then its records and samples."""
    for f in truth_dir.glob("*.json"):
        shutil.copy(f, data.parent / "videos" / "pool" / f.name)
    truth_samples(data, tiny, args)


def gate_truth_table(row: dict) -> list[str]:
    truth = json.loads(row["gate_truth"]) if row["gate_truth"] else {}
    lines = ["| check | records | passed | precision of passed | recall of correct | precision of rejected | "
             "recall of incorrect |", "|---|---|---|---|---|---|---|"]
    for check, s in truth.get("checks", {}).items():
        lines.append(f"| {check} | {s['n']} (correct {s['n_correct']}) | {s['n_passed']} | " + " | ".join(
            "-" if s.get(k) is None else f"{s[k]:.3f}"
            for k in ("precision_passed", "recall_correct", "precision_rejected", "recall_incorrect")) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed-videos", type=int, default=40)
    ap.add_argument("--pool-videos", type=int, default=80)
    ap.add_argument("--heldout-videos", type=int, default=20)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--frames", type=int, default=16, help="frames per sample (the world recipe's 2 fps x 8 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retries", type=int, default=2, help="sampled retries of a label that breaks a rule")
    ap.add_argument("--out", type=Path, default=Path("flywheel_out"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (one is fastest on a shared 2-core machine)")
    args = ap.parse_args()
    quiet_libraries(args.threads)
    from finetune.rounds import round_dir, run_round

    t0 = time.perf_counter()
    tiny, truth_dir, data = build_dataset(args.out, args)
    print(f"dataset built in {time.perf_counter() - t0:.0f} s", flush=True)
    label = labeller(data, args)
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    r0 = run_round(round_config(data, tiny, 0, args, label=False), label, log=log)
    student0 = round_dir(Dataset(data), 0) / "student"
    r1 = run_round(round_config(data, student0, 1, args, truth_dir=str(truth_dir)), label, log=log)
    r2 = run_round(round_config(data, student0, 2, args, truth_dir=str(truth_dir), gate=False), label, log=log)
    reveal_pool_truth(data, truth_dir, tiny, args)
    r3 = run_round(round_config(data, student0, 3, args, label=False), label, log=log)

    print(f"\nall arms in {time.perf_counter() - t0:.0f} s; held-out questions: "
          f"{json.loads(r0['eval'])['grounding']['n']}")
    print("| arm | training samples (from the teacher) | mIoU | R@0.3 | R@0.5 | R@0.7 | train s |")
    print("|---|---|---|---|---|---|---|")
    names = ("round 0: seed truth", "round 1: seed truth + gated pool labels",
             "round 1 without the gate: seed truth + every pool label", "ceiling: seed truth + pool truth")
    for name, r in zip(names, (r0, r1, r2, r3)):
        g = json.loads(r["eval"])["grounding"]
        print(f"| {name} | {r['mixture_samples']} ({r['model_samples']}) | {g['miou']:.3f} | {g['r@0.3']:.3f} | "
              f"{g['r@0.5']:.3f} | {g['r@0.7']:.3f} | {r['train_s']:.0f} |")
    print(f"\ngate: {r1['records']} records of the round-0 model over {r1['pool_videos']} pool videos, "
          f"pass rate {r1['gate_pass_rate'] or 0:.3f}, per check {r1['gate_check_rates']}")
    print("\n".join(gate_truth_table(r1)))


if __name__ == "__main__":
    main()
