"""Learning check: fine-tuning raises held-out temporal grounding mIoU above the untrained model.

Generates videos with known shape tracks (synth.videos), turns every track into a temporal grounding sample
("When does the red square move to the right?" -> "<3.0 - 7.5 seconds>"), holds out whole videos, trains the
tiny Qwen3-VL with the `full` recipe, and scores held-out mIoU / R@IoU before and after with `densevid eval`'s
scorer. Baselines that answer the mean training span (overall, and per shape word in the question) show
what the text alone gives. A second model is trained and evaluated on the same samples with every frame
blanked (black videos of the same length and fps, so the `<t seconds>` markers and thus the video's length
stay): what it reaches comes from the text and the timestamps, the rest of the gain needs the frames.

    python benchmarks/learn_grounding.py --videos 48 --steps 300
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_samples(root: Path, n_videos: int, processor, seed: int = 0) -> list[dict]:
    """One grounding sample per shape track; each video has 3 scenes, so 3 questions with different spans."""
    import numpy as np

    from curation.frames import FramePolicy
    from synth.tasks import GROUNDING_PROMPT, Draft, clip_sample, count_tokens, grounding_answer
    from synth.videos import render_video

    rng = np.random.default_rng(seed)
    policy = FramePolicy(max_frames=16)
    rows = []
    for v in range(n_videos):
        duration = float(rng.uniform(9, 15))
        path = root / f"v{v:03d}.mp4"
        truth = render_video(path, "synthetic", duration, seed=seed * 1000 + v, fps=12.0, size=(128, 96),
                             n_scenes=3, n_fades=0)
        video = dict(video_id=f"v{v:03d}", uri=str(path), n_frames=truth.n_frames, fps=truth.fps, domain="synthetic",
                     width=truth.width, height=truth.height)
        for k, track in enumerate(truth.shapes):
            draft = Draft("temporal_grounding", str(k), GROUNDING_PROMPT.format(phrase=track.phrase, action=track.action),
                          grounding_answer(track.start_s, track.end_s))
            rows.append(count_tokens(processor, clip_sample(video, draft, policy, split="train"), draft, video))
    return rows


def blank_copies(rows: list[dict], folder: Path) -> list[dict]:
    """The rows pointing at black videos with the frame count, fps and size of their own."""
    import av
    import numpy as np

    from curation.video import probe

    blanks: dict[str, str] = {}
    for uri in sorted({r["uri"] for r in rows}):
        p = probe(uri)
        path = folder / Path(uri).name
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as out:
            stream = out.add_stream("libx264", rate=int(p.fps))
            stream.width, stream.height, stream.pix_fmt = p.width, p.height, "yuv420p"
            black = av.VideoFrame.from_ndarray(np.zeros((p.height, p.width, 3), np.uint8), format="rgb24")
            for _ in range(p.n_frames):
                for packet in stream.encode(black):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        blanks[uri] = str(path)
    return [dict(r, uri=blanks[r["uri"]]) for r in rows]


def train_and_score(tiny: Path, train_rows: list[dict], held_out: list[dict], out: Path, args, score) -> tuple:
    """The `full` recipe on ``train_rows``; ``score(model, held_out)`` after training, the summary, the seconds."""
    from finetune.config import load_config
    from finetune.train import train
    from model.loader import load_model

    mixture = write_mixture(train_rows, out / "mixture")
    cfg = load_config("full", [f"model={tiny}", f"mixture={mixture}", f"output_dir={out / 'run'}",
                               f"max_steps={args.steps}", f"llm.lr={args.lr}", f"merger.lr={args.lr}",
                               f"vision.lr={args.lr / 5}", "optim.warmup_steps=20", "log_every=25",
                               "save_every=0", "data.max_length=2048", "data.tokens_per_batch=4096",
                               "data.max_batch_size=16",
                               "data.num_workers=1", "gradient_checkpointing=false", "tensorboard=false"])
    t0 = time.perf_counter()
    summary = train(cfg)
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


def prior_baseline(train_rows: list[dict], held_out: list[dict], key=lambda r: "") -> dict:
    """Answer the mean training span of the questions with the same ``key``: what a model can learn from
    the text alone. Shapes alternate square / circle by scene, so the shape word hints at the scene."""
    from curation.times import parse_span
    from finetune.evaluate import answer_text, grounding_summary
    from synth.metrics import temporal_iou

    spans: dict[str, list] = {}
    for r in train_rows:
        spans.setdefault(key(r), []).append(parse_span(answer_text(r)))
    mean = {k: (sum(s for s, _ in v) / len(v), sum(e for _, e in v) / len(v)) for k, v in spans.items()}
    return grounding_summary([temporal_iou(mean.get(key(r)), parse_span(answer_text(r))) for r in held_out])


def learning_check_args(doc: str) -> argparse.ArgumentParser:
    """The options both learning checks share: corpus size, held-out videos, steps, learning rate, folder."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--videos", type=int, default=48, help="videos generated")
    ap.add_argument("--held-out", type=int, default=8, help="of them, videos kept out of training")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--out", type=Path, default=None)
    return ap


def quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main() -> None:
    args = learning_check_args(__doc__).parse_args()
    quiet_libraries()

    from finetune.evaluate import EvalConfig, eval_grounding
    from model.loader import load_model, load_processor
    from model.tiny import build_tiny_checkpoint

    root = args.out or Path(tempfile.mkdtemp(prefix="learn-grounding-"))
    tiny = build_tiny_checkpoint(root / "tiny")
    t0 = time.perf_counter()
    rows = make_samples(root / "videos", args.videos, load_processor(tiny))
    held_ids = {f"v{v:03d}" for v in range(args.videos - args.held_out, args.videos)}
    train_rows = [r for r in rows if r["video_id"] not in held_ids]
    held_out = [r for r in rows if r["video_id"] in held_ids]
    print(f"{len(train_rows)} training / {len(held_out)} held-out questions from {args.videos} videos "
          f"({time.perf_counter() - t0:.0f} s to render)")

    ecfg = EvalConfig(model=str(tiny), batch_size=8, max_new_tokens=16)

    def score(lm, rows):
        return eval_grounding(lm, rows, ecfg)

    before = score(load_model(tiny, device="cpu"), held_out)
    after, summary, train_s = train_and_score(tiny, train_rows, held_out, root / "frames", args, score)
    blank, blank_summary, _ = train_and_score(tiny, blank_copies(train_rows, root / "blank"),
                                              blank_copies(held_out, root / "blank"), root / "blank", args, score)
    prior = prior_baseline(train_rows, held_out)
    by_shape = prior_baseline(train_rows, held_out, key=lambda r: "circle" if "circle" in question(r) else "square")

    print(f"\ntrained {args.steps} steps in {train_s:.0f} s; loss {summary['losses'][0]:.3f} -> "
          f"{summary['losses'][-1]:.3f} (blank frames: -> {blank_summary['losses'][-1]:.3f}); "
          f"padding {100 * summary['padding_fraction']:.1f}%")
    print("| model | mIoU | R@0.3 | R@0.5 | R@0.7 | answers with a span |")
    print("|---|---|---|---|---|---|")
    for name, r in (("untrained tiny model", before), (f"after {args.steps} steps (full)", after),
                    (f"after {args.steps} steps on blank frames (timestamps kept)", blank),
                    ("mean training span (text only)", prior),
                    ("mean training span per shape word (text only)", by_shape)):
        parsed = sum(i["pred"] is not None for i in r["items"]) if "items" in r else r["n"]
        print(f"| {name} | {r['miou']:.3f} | {r['r@0.3']:.3f} | {r['r@0.5']:.3f} | {r['r@0.7']:.3f} | "
              f"{parsed}/{r['n']} |")
    for item in after["items"][:3]:
        print(f"  e.g. truth {item['truth']} answer {item['answer']!r} IoU {item['iou']}")


if __name__ == "__main__":
    main()
