"""Dense-caption learning check: held-out event F1@0.5 on synth.world videos, against what the text gives.

Each world video (8 s, one shot, 3-4 shapes at random times) is one `dense_caption` sample whose answer lists
its true events in time order (`<2.0 - 4.0 seconds> the red square move up.` per line). Training and held-out
videos come from corpora of different seeds. The tiny Qwen3-VL (`--sizes world`: `model.tiny.WORLD_SIZES`) is fine-tuned
with the `world` recipe; the held-out answers are parsed into events and scored with `densevid eval`'s event
detection (ActivityNet Captions' precision and recall at tIoU 0.5, averaged over videos). Beside it: the
untrained model, the same training on blank frames (timestamps kept), and the text-only layout (each
held-out video gets the mean event spans of the training videos with as many events: it is told the count).

    python benchmarks/learn_dense.py --videos 120 --held-out 20
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TIOU = 0.5


def make_samples(root: Path, n_videos: int, processor, seed: int, args) -> list[dict]:
    """One dense-caption sample per video; the answer lists the video's true events in time order."""
    from learn_grounding import recipe_frames, sample_row, world_settings, world_videos

    from synth.dense import render_dense
    from synth.tasks import DENSE_PROMPT

    rows, policy = [], recipe_frames(args.set)
    for video, truth in world_videos(root, n_videos, seed, world_settings(args)):
        entries = [dict(start_s=s["start_s"], end_s=s["end_s"], summary=f"{s['phrase']} {s['action']}", details="")
                   for s in sorted(truth["shapes"], key=lambda s: (s["start_s"], s["end_s"]))]
        rows.append(sample_row(processor, video, policy, "dense_caption", "all", DENSE_PROMPT,
                               render_dense(entries, details=False)))
    return rows


def events_of(row: dict):
    from finetune.evaluate import answer_text
    from synth.dense_eval import parse_events

    return parse_events(answer_text(row))


def detection_summary(preds: list[list], refs: list[list]) -> dict:
    """Precision and recall at tIoU 0.5 averaged over videos, their F1, and how many answers had any event."""
    from synth.dense_eval import detection, f_measure
    from synth.metrics import mean

    pr = [detection(p, r, TIOU) for p, r in zip(preds, refs)]
    precision, recall = mean([p for p, _ in pr]), mean([r for _, r in pr])
    return dict(n=len(refs), precision=precision, recall=recall, f1=f_measure(precision, recall),
                with_events=sum(bool(p) for p in preds))


def model_scores(lm, rows: list[dict], max_new_tokens: int) -> dict:
    from finetune.evaluate import generate_answers
    from synth.dense_eval import parse_events

    answers = generate_answers(lm, rows, 4, max_new_tokens)
    return dict(detection_summary([parse_events(a) for a in answers], [events_of(r) for r in rows]),
                example=answers[0])


def layout_baseline(train_rows: list[dict], held_out: list[dict]) -> dict:
    """Text only: for a video with k events, the mean spans of the training videos' events 1..k (videos with k
    events first, any video with more when none has k)."""
    from synth.dense_eval import Event

    layouts = [[e.span for e in events_of(r)] for r in train_rows]
    preds = []
    for r in held_out:
        k = len(events_of(r))
        same = [lay for lay in layouts if len(lay) == k] or [lay for lay in layouts if len(lay) >= k]
        preds.append([Event(sum(lay[i][0] for lay in same) / len(same), sum(lay[i][1] for lay in same) / len(same), "")
                      for i in range(k)])
    return detection_summary(preds, [events_of(r) for r in held_out])


def main() -> None:
    from learn_grounding import build_world_model, corpora, learning_check_args, quiet_libraries, trained_pair

    ap = learning_check_args(__doc__)
    ap.add_argument("--max-new-tokens", type=int, default=100)
    args = ap.parse_args()
    quiet_libraries(args.threads)

    from model.loader import load_model, load_processor

    root = args.out or Path(tempfile.mkdtemp(prefix="learn-dense-"))
    tiny = build_world_model(root, args.sizes)
    train_rows, held_out = corpora(root, args, make_samples, load_processor(tiny))

    score = functools.partial(model_scores, max_new_tokens=args.max_new_tokens)

    table = [("untrained tiny model", score(load_model(tiny, device="cpu"), held_out))]
    runs = trained_pair(tiny, root, train_rows, held_out, args, score)
    table.append(("trained on frames (`world` recipe)", runs["frames"][0]))
    if "blank" in runs:
        table.append(("trained on blank frames (timestamps kept)", runs["blank"][0]))
    table.append(("mean event layout of training videos (text only, told the count)",
                  layout_baseline(train_rows, held_out)))
    print(f"\n| model | precision@{TIOU} | recall@{TIOU} | F1@{TIOU} | answers with events |")
    print("|---|---|---|---|---|")
    for name, r in table:
        print(f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['with_events']}/{r['n']} |")
    print(f"  e.g. {runs['frames'][0]['example'][:200]!r}")


if __name__ == "__main__":
    main()
