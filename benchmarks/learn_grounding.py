"""Learning check: on synth.world videos only the frames can answer held-out temporal grounding.

Each world video (8 s, one shot) shows 3-4 shapes of distinct colours at random whole-second times, places
and directions, two of one kind, so "When does the red square move up?" -> "<2.0 - 4.0 seconds>" can only be
answered by looking. Training and held-out videos come from corpora of different seeds. The tiny Qwen3-VL
(random weights; `--sizes world` for `model.tiny.WORLD_SIZES`) is fine-tuned with the `world` recipe and
scored with `densevid eval`'s scorer. Beside it: the untrained model, the same training on blank frames (black videos of
the same length and fps: the `<t seconds>` markers stay), and text-only answers (the mean training span,
overall, per shape word and per phrase).

    python benchmarks/learn_grounding.py --videos 120 --held-out 20
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPE = "world"
TRAIN_SEED, HELD_OUT_SEED = 0, 1  # corpus seeds: held-out videos are never training videos
WORLD = dict(grid_s=1.0, event_s=(1.0, 3.0))  # render settings of synth.world beside its defaults


def recipe_frames(overrides: list[str]):
    """The frame policy of the recipe and overrides (``data.target_fps``, ``data.max_frames``): samples store
    these frames, so training and generation see the same ones."""
    from curation.frames import FramePolicy
    from curation.typed_config import load_raw
    from finetune.config import recipe_path

    data = load_raw(recipe_path(RECIPE), overrides)["data"]
    return FramePolicy(target_fps=float(data["target_fps"]), max_frames=int(data["max_frames"]))


def world_videos(root: Path, n_videos: int, seed: int, world: dict) -> list[tuple[dict, dict]]:
    """(video row, truth) for each video of a world corpus."""
    from synth.videos import read_truth
    from synth.world import make_world_corpus

    out = []
    for path in make_world_corpus(root, n_videos, seed=seed, **world):
        truth = read_truth(path)
        video = dict(video_id=path.stem, uri=str(path), n_frames=truth["n_frames"], fps=truth["fps"],
                     domain="synthetic", width=truth["width"], height=truth["height"])
        out.append((video, truth))
    return out


def sample_row(processor, video: dict, policy, task: str, key: str, prompt: str, answer: str) -> dict:
    from synth.tasks import Draft, clip_sample, count_tokens

    draft = Draft(task, key, prompt, answer)
    return count_tokens(processor, clip_sample(video, draft, policy, split="train"), draft, video)


def make_samples(root: Path, n_videos: int, processor, seed: int, args) -> list[dict]:
    """One temporal grounding sample per event of every video."""
    from synth.tasks import GROUNDING_PROMPT, grounding_answer

    rows, policy = [], recipe_frames(args.set)
    for video, truth in world_videos(root, n_videos, seed, world_settings(args)):
        for k, s in enumerate(truth["shapes"]):
            prompt = GROUNDING_PROMPT.format(phrase=s["phrase"], action=s["action"])
            rows.append(sample_row(processor, video, policy, "temporal_grounding", str(k), prompt,
                                   grounding_answer(s["start_s"], s["end_s"])))
    return rows


def blank_copies(rows: list[dict], folder: Path) -> list[dict]:
    """The rows pointing at black videos with the frame count, fps and size of their own."""
    import numpy as np

    from curation.video import encode_frames, probe

    blanks: dict[str, str] = {}
    for uri in sorted({r["uri"] for r in rows}):
        p = probe(uri)
        path = folder / Path(uri).name
        path.parent.mkdir(parents=True, exist_ok=True)
        black = np.zeros((p.height, p.width, 3), np.uint8)
        encode_frames(path, (black for _ in range(p.n_frames)), round(p.fps), {"preset": "ultrafast"})
        blanks[uri] = str(path)
    return [dict(r, uri=blanks[r["uri"]]) for r in rows]


def train_and_score(tiny: Path, train_rows: list[dict], held_out: list[dict], out: Path, args, score) -> tuple:
    """The `world` recipe on ``train_rows``; ``score(model, held_out)`` after training, the summary, the seconds."""
    from finetune.config import load_config
    from finetune.train import train
    from model.loader import load_model

    mixture = write_mixture(train_rows, out / "mixture")
    overrides = [f"model={tiny}", f"mixture={mixture}", f"output_dir={out / 'run'}", "tensorboard=false"]
    overrides += [f"max_steps={args.steps}"] if args.steps else []
    overrides += list(args.set)
    cfg = load_config(RECIPE, overrides)
    t0 = time.perf_counter()
    summary = train(cfg, log=lambda *a: None)
    seconds = time.perf_counter() - t0
    return score(load_model(cfg.output_dir, device="cpu"), held_out), summary, seconds


def write_mixture(rows: list[dict], folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "manifest.parquet")
    return folder


def question(row: dict) -> str:
    msgs = json.loads(row["messages"])
    return next(p["text"] for p in msgs[0]["content"] if p.get("type") == "text")


def phrase_of(row: dict) -> str:
    """`the red square` of "When does the red square move up? ..."."""
    words = question(row).split()
    return " ".join(words[2:5])


def prior_baseline(train_rows: list[dict], held_out: list[dict], key=lambda r: "") -> dict:
    """Answer the mean training span of the questions with the same ``key``: what the text alone gives."""
    from curation.times import parse_span
    from finetune.evaluate import answer_text, grounding_summary
    from synth.metrics import temporal_iou

    spans: dict[str, list] = {}
    for r in train_rows:
        spans.setdefault(key(r), []).append(parse_span(answer_text(r)))
    overall = [s for v in spans.values() for s in v]
    mean = {k: (sum(s for s, _ in v) / len(v), sum(e for _, e in v) / len(v)) for k, v in spans.items()}
    fallback = (sum(s for s, _ in overall) / len(overall), sum(e for _, e in overall) / len(overall))
    return grounding_summary([temporal_iou(mean.get(key(r), fallback), parse_span(answer_text(r)))
                              for r in held_out])


def world_settings(args) -> dict:
    from curation.typed_config import parse_overrides

    return dict(WORLD, **parse_overrides(args.world))


def learning_check_args(doc: str) -> argparse.ArgumentParser:
    """The options both learning checks share: corpus sizes, steps, recipe overrides, folder."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--videos", type=int, default=120, help="training videos generated")
    ap.add_argument("--held-out", type=int, default=20, help="held-out videos, from a corpus of another seed")
    ap.add_argument("--steps", type=int, default=0, help="optimizer steps (0: the recipe's max_steps)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help=f"overrides of the {RECIPE} recipe, e.g. llm.lr=1e-3")
    ap.add_argument("--world", nargs="*", default=[], metavar="KEY=VALUE",
                    help="render settings of synth.world.render_world_video over the check's own, e.g. grid_s=1.0")
    ap.add_argument("--skip-blank", action="store_true", help="do not train the blank-frame control")
    ap.add_argument("--sizes", choices=("world", "tiny"), default="tiny",
                    help="model.tiny.WORLD_SIZES or the default TINY_SIZES")
    ap.add_argument("--serial", action="store_true", help="train the blank-frame control after, not beside")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; on a shared machine one thread is several times faster than two")
    ap.add_argument("--out", type=Path, default=None)
    return ap


def quiet_libraries(threads: int = 1) -> None:
    import warnings

    import torch

    torch.set_num_threads(threads)

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def build_world_model(root: Path, sizes: str) -> Path:
    from model.tiny import TINY_SIZES, WORLD_SIZES, build_tiny_checkpoint

    return build_tiny_checkpoint(root / "tiny", **(WORLD_SIZES if sizes == "world" else TINY_SIZES))


def corpora(root: Path, args, make, processor) -> tuple[list[dict], list[dict]]:
    t0 = time.perf_counter()
    train_rows = make(root / "train", args.videos, processor, TRAIN_SEED, args)
    held_out = make(root / "held-out", args.held_out, processor, HELD_OUT_SEED, args)
    print(f"{len(train_rows)} training samples from {args.videos} videos, {len(held_out)} held-out from "
          f"{args.held_out} ({time.perf_counter() - t0:.0f} s to render)", flush=True)
    return train_rows, held_out


def trained_pair(tiny: Path, root: Path, train_rows, held_out, args, score) -> dict:
    """The model trained on frames and, unless skipped, the same training on blank frames, the two in
    parallel processes (one torch thread each) unless ``--serial``. ``score`` must pickle (a partial)."""
    import multiprocessing as mp

    jobs = {"frames": (train_rows, held_out)}
    if not args.skip_blank:
        jobs["blank"] = (blank_copies(train_rows, root / "blank-videos"), blank_copies(held_out, root / "blank-videos"))
    procs = []
    for name, (rows, held) in jobs.items():
        call = (tiny, rows, held, root / name, args, score)
        if args.serial or name == "frames":
            continue
        procs.append(mp.get_context("spawn").Process(target=_arm, args=call))
        procs[-1].start()
    _arm(tiny, *jobs["frames"], root / "frames", args, score)
    for p in procs:
        p.join()
    if args.serial and "blank" in jobs:
        _arm(tiny, *jobs["blank"], root / "blank", args, score)
    runs = {name: json.loads((root / name / "result.json").read_text()) for name in jobs}
    for name, (result, summary, seconds) in runs.items():
        print(f"{name}: trained {seconds:.0f} s, loss {summary['losses'][0]:.3f} -> {summary['losses'][-1]:.3f}")
    return runs


def _arm(tiny, rows, held, out: Path, args, score) -> None:
    """One training run and its score, written to ``out/result.json`` (also from a child process)."""
    quiet_libraries(args.threads)
    result = train_and_score(tiny, rows, held, out, args, score)
    (out / "result.json").write_text(json.dumps(result))


def main() -> None:
    args = learning_check_args(__doc__).parse_args()
    quiet_libraries(args.threads)

    from finetune.evaluate import EvalConfig, eval_grounding
    from model.loader import load_model, load_processor

    root = args.out or Path(tempfile.mkdtemp(prefix="learn-grounding-"))
    tiny = build_world_model(root, args.sizes)
    train_rows, held_out = corpora(root, args, make_samples, load_processor(tiny))
    score = functools.partial(eval_grounding, cfg=EvalConfig(model=str(tiny), batch_size=8, max_new_tokens=16))

    table = [("untrained tiny model", score(load_model(tiny, device="cpu"), held_out))]
    runs = trained_pair(tiny, root, train_rows, held_out, args, score)
    table.append(("trained on frames (`world` recipe)", runs["frames"][0]))
    if "blank" in runs:
        table.append(("trained on blank frames (timestamps kept)", runs["blank"][0]))
    table += [("mean training span (text only)", prior_baseline(train_rows, held_out)),
              ("mean training span per shape word (text only)",
               prior_baseline(train_rows, held_out, key=lambda r: phrase_of(r).split()[-1])),
              ("mean training span per phrase (text only)", prior_baseline(train_rows, held_out, key=phrase_of))]
    print("\n| model | mIoU | R@0.3 | R@0.5 | R@0.7 | answers with a span |")
    print("|---|---|---|---|---|---|")
    for name, r in table:
        parsed = sum(i["pred"] is not None for i in r["items"]) if "items" in r else r["n"]
        print(f"| {name} | {r['miou']:.3f} | {r['r@0.3']:.3f} | {r['r@0.5']:.3f} | {r['r@0.7']:.3f} | "
              f"{parsed}/{r['n']} |")
    for item in runs["frames"][0]["items"][:3]:
        print(f"  e.g. truth {item['truth']} answer {item['answer']!r} IoU {item['iou']}")


if __name__ == "__main__":
    main()
