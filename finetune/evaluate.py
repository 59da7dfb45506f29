"""`densevid eval`: temporal grounding (mIoU, R@{0.3, 0.5, 0.7}) and needle-in-a-haystack accuracy.

Grounding: the model answers each held-out question greedily; the first ``<a - b seconds>`` in its answer is
compared with the target span (an answer without one scores IoU 0). Needle: multiple choice over colours,
the option the model finds most likely (summed log-probability of the answer tokens) is its answer;
accuracy per (duration, depth) cell is drawn as a heatmap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from curation.times import parse_span
from synth.metrics import THRESHOLDS, mean, recall_at, temporal_iou
from synth.needle import (COLOURS, NEEDLE_DEPTHS, NEEDLE_DURATIONS_S, NEEDLE_TASK, grid_problems, needle_options,
                          needle_rows, needle_truth)


@dataclass
class EvalConfig:
    model: str
    mixture: str = ""
    data: str = ""
    split: str = "test"
    out: str = ""
    max_samples: int = 200
    batch_size: int = 4
    max_new_tokens: int = 24
    max_frames: int = 0  # 0: the frames stored with each sample
    needle: bool = False
    needle_durations: tuple[float, ...] = NEEDLE_DURATIONS_S
    needle_depths: tuple[float, ...] = NEEDLE_DEPTHS
    needle_trials: int = 2

    def problems(self) -> list[str]:
        out = []
        if not (self.mixture or self.data or self.needle):
            out.append("nothing to evaluate; pass --mixture DIR or --data DIR (held-out samples), or --needle")
        if self.mixture and not (Path(self.mixture) / "manifest.parquet").exists():
            out.append(f"--mixture {self.mixture}: no manifest.parquet there")
        if self.data and not Path(self.data).is_dir():
            out.append(f"--data {self.data}: no such dataset folder")
        if self.max_samples < 1:
            out.append(f"--max-samples {self.max_samples} must be >= 1")
        if self.needle and (not self.needle_durations or not self.needle_depths):
            out.append("--needle needs at least one duration and one depth")
        out += grid_problems(self.needle_durations, self.needle_depths)
        return out


# --- scoring (pure) ------------------------------------------------------------------------------------


def grounding_summary(ious: list[float], thresholds=THRESHOLDS) -> dict:
    out = {"n": len(ious), "miou": round(mean(ious), 4)}
    out.update({f"r@{t}": round(v, 4) for t, v in recall_at(ious, thresholds).items()})
    return out


def accuracy_grid(items: list[dict], durations: list[float], depths: list[float]) -> list[list[float | None]]:
    """Accuracy per (duration row, depth column); None where a cell has no items."""
    grid = []
    for d in durations:
        row = []
        for p in depths:
            cell = [i["correct"] for i in items if i["duration_s"] == d and i["depth"] == p]
            row.append(sum(cell) / len(cell) if cell else None)
        grid.append(row)
    return grid


# --- model side ----------------------------------------------------------------------------------------


def user_turn(row: dict) -> list[dict]:
    return [m for m in json.loads(row["messages"]) if m["role"] == "user"]


def answer_text(row: dict) -> str:
    msgs = [m for m in json.loads(row["messages"]) if m["role"] == "assistant"]
    return "".join(p["text"] for p in msgs[-1]["content"] if p.get("type") == "text") if msgs else ""


def generate_answers(lm, rows: list[dict], batch_size: int, max_new_tokens: int, max_frames: int = 0) -> list[str]:
    from finetune.data import load_video
    from model.inputs import build_inputs

    device = next(lm.model.parameters()).device
    answers = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        videos = [load_video(r, max_frames) for r in chunk]
        inputs = build_inputs(lm.processor, [user_turn(r) for r in chunk], [v[0] for v in videos],
                              [v[1] for v in videos], add_generation_prompt=True, padding_side="left").to(device)
        out = lm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        answers += lm.processor.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return answers


def option_scores(lm, row: dict, options: list[str], max_frames: int = 0) -> list[float]:
    """Summed log-probability of each option as the assistant's answer to the row's question."""
    import torch

    from finetune.data import IGNORE, load_video, mask_labels
    from model.inputs import assistant_message, build_inputs

    frames, meta = load_video(row, max_frames)
    convs = [user_turn(row) + [assistant_message(o)] for o in options]
    inputs = build_inputs(lm.processor, convs, [frames] * len(options), [meta] * len(options),
                          add_generation_prompt=False, padding_side="right")
    labels = mask_labels(inputs["input_ids"], inputs["attention_mask"], lm.processor.tokenizer)
    device = next(lm.model.parameters()).device
    with torch.no_grad():
        logits = lm.model(**inputs.to(device)).logits.float().cpu()
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    target = labels[:, 1:]
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * (target != IGNORE)).sum(dim=1).tolist()


def eval_grounding(lm, rows: list[dict], cfg: EvalConfig) -> dict:
    answers = generate_answers(lm, rows, cfg.batch_size, cfg.max_new_tokens, cfg.max_frames)
    items = []
    for r, a in zip(rows, answers):
        truth = parse_span(answer_text(r))
        pred = parse_span(a)
        items.append(dict(sample_id=r["sample_id"], truth=truth, pred=pred, answer=a,
                          iou=round(temporal_iou(pred, truth), 4)))
    return dict(grounding_summary([i["iou"] for i in items]), items=items)


def needle_meta(row: dict) -> dict:
    """Colour, duration and depth of a needle sample, from the truth JSON beside its haystack."""
    needle = needle_truth(row["uri"])
    if needle is None:
        raise ValueError(f"{row['uri']}: no needle truth JSON beside the haystack; needle samples are scored "
                         "against it (rebuild them with `densevid tasks`)")
    return dict(needle, options=needle_options(needle))


def eval_needle(lm, rows: list[dict], max_frames: int = 0) -> dict:
    """Multiple choice: the colour whose answer (same span, that colour) the model finds most likely."""
    items = []
    for r in rows:
        meta = needle_meta(r)
        scores = option_scores(lm, r, meta["options"], max_frames)
        chosen = COLOURS[max(range(len(COLOURS)), key=lambda k: scores[k])]
        items.append(dict(sample_id=r["sample_id"], duration_s=meta["duration_s"], depth=meta["depth"],
                          colour=meta["colour"], chosen=chosen, correct=chosen == meta["colour"]))
    durations = sorted({i["duration_s"] for i in items})
    depths = sorted({i["depth"] for i in items})
    n = len(items)
    return dict(n=n, accuracy=round(sum(i["correct"] for i in items) / n, 4) if n else 0.0, durations_s=durations,
                depths=depths, grid=accuracy_grid(items, durations, depths), chance=round(1 / len(COLOURS), 4),
                items=items)


def plot_heatmap(result: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.array([[np.nan if v is None else v for v in row] for row in result["grid"]], dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 * max(3, grid.shape[1]) + 1.5, 0.8 * max(2, grid.shape[0]) + 1.2))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(result["depths"])), [f"{d:.0%}" for d in result["depths"]])
    ax.set_yticks(range(len(result["durations_s"])), [f"{d:g} s" for d in result["durations_s"]])
    ax.set_xlabel("needle depth")
    ax.set_ylabel("video duration")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, "-" if np.isnan(v) else f"{v:.0%}", ha="center", va="center", fontsize=9)
    ax.set_title(f"{title}: accuracy {result['accuracy']:.0%} (chance {result['chance']:.0%})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the command ---------------------------------------------------------------------------------------


def held_out_rows(cfg: EvalConfig) -> list[dict]:
    if cfg.mixture:
        from mixtures.balance import read_manifest

        return read_manifest(cfg.mixture)
    if cfg.data:
        from curation.store import Dataset

        query = "SELECT * FROM samples WHERE split = ? ORDER BY sample_id"
        return Dataset(cfg.data).sql(query, [cfg.split]).to_pylist()
    return []


def run_eval(cfg: EvalConfig, lm=None) -> dict:
    """Scores on held-out samples (and our needle grid with ``needle``); writes eval.json and heatmaps to out."""
    from model.loader import load_model

    problems = cfg.problems()
    if problems:
        raise ValueError("bad eval options:\n  " + "\n  ".join(problems))
    lm = lm or load_model(cfg.model)
    lm.model.eval()
    out = Path(cfg.out) if cfg.out else None
    rows = held_out_rows(cfg)
    report: dict = dict(model=cfg.model, config=asdict(cfg))
    grounding = [r for r in rows if r["task"] == "temporal_grounding"][: cfg.max_samples]
    if grounding:
        report["grounding"] = eval_grounding(lm, grounding, cfg)
    needles = [r for r in rows if r["task"] == NEEDLE_TASK][: cfg.max_samples]
    if needles:
        report["needle_dataset"] = eval_needle(lm, needles, cfg.max_frames)
        if out:
            plot_heatmap(report["needle_dataset"], out / "needle_dataset_heatmap.png", "needle (dataset)")
    if cfg.needle:
        base = out or Path("eval_out")
        generated = needle_rows(base / "needle_videos", cfg.needle_durations, cfg.needle_depths, cfg.needle_trials)
        report["needle"] = eval_needle(lm, generated, cfg.max_frames)
        plot_heatmap(report["needle"], base / "needle_heatmap.png", "needle")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(report, indent=1, default=str))
    return report
