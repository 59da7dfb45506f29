"""`densevid eval`: temporal grounding (mIoU, R@{0.3, 0.5, 0.7}), dense captions (ActivityNet Captions' scores
and SODA_c) and needle-in-a-haystack accuracy.

Every answer is generated greedily from the sample's own prompt. Grounding: the first ``<a - b seconds>`` in the
answer is compared with the target span (an answer without one scores IoU 0). Dense captions: the answer's events
are scored against reference events (imported ``reference:*`` dense captions, else a generated video's truth),
see ``synth.dense_eval``. Needle: the answer's last word is its colour and its first span its time; nothing in
the prompt gives either away. Colour accuracy per (duration, depth) cell is drawn as a heatmap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from curation import storage
from curation.chats import read_messages, turn_text
from curation.times import parse_span
from synth.dense_eval import (TIOUS, dense_summary, entry_events, parse_events, scorer_problems, truth_events,
                              video_scores)
from synth.metrics import THRESHOLDS, mean, recall_at, temporal_iou
from synth.needle import (COLOURS, NEEDLE_DEPTHS, NEEDLE_DURATIONS_S, NEEDLE_TASK, grid_problems, needle_rows,
                          needle_span, needle_truth, parse_needle_answer)
from synth.videos import read_truth

DENSE_TASK = "dense_caption"
NEEDLE_BOTH_TIOU = 0.5  # colour right and span at least this tIoU: the needle was found


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
    dense_captions: bool = True
    dense_max_new_tokens: int = 512
    needle: bool = False
    needle_durations: tuple[float, ...] = NEEDLE_DURATIONS_S
    needle_depths: tuple[float, ...] = NEEDLE_DEPTHS
    needle_trials: int = 2

    def problems(self) -> list[str]:
        out = []
        if not (self.mixture or self.data or self.needle):
            out.append("nothing to evaluate; pass --mixture DIR or --data DIR (held-out samples), or --needle")
        if self.mixture and not storage.exists(storage.location(self.mixture) / "manifest.parquet"):
            out.append(f"--mixture {self.mixture}: no manifest.parquet there")
        if self.data and not Path(self.data).is_dir():
            out.append(f"--data {self.data}: no such dataset folder")
        if self.max_samples < 1:
            out.append(f"--max-samples {self.max_samples} must be >= 1")
        if self.dense_max_new_tokens < 1:
            out.append(f"--dense-max-new-tokens {self.dense_max_new_tokens} must be >= 1")
        if self.needle and (not self.needle_durations or not self.needle_depths):
            out.append("--needle needs at least one duration and one depth")
        out += grid_problems(self.needle_durations, self.needle_depths)
        return out


# --- scoring (pure) ------------------------------------------------------------------------------------


def grounding_summary(ious: list[float], thresholds=THRESHOLDS) -> dict:
    """mIoU and R@IoU; with nothing scored, every metric is None (not a score of 0)."""
    if not ious:
        return {"n": 0, "miou": None, **{f"r@{t}": None for t in thresholds}}
    out = {"n": len(ious), "miou": round(mean(ious), 4)}
    out.update({f"r@{t}": round(v, 4) for t, v in recall_at(ious, thresholds).items()})
    return out


def accuracy_grid(items: list[dict], durations: list[float], depths: list[float],
                  key: str = "correct") -> list[list[float | None]]:
    """Mean of ``key`` (accuracy for a bool) per (duration row, depth column); None where a cell has no items."""
    grid = []
    for d in durations:
        row = []
        for p in depths:
            cell = [i[key] for i in items if i["duration_s"] == d and i["depth"] == p]
            row.append(sum(cell) / len(cell) if cell else None)
        grid.append(row)
    return grid


def needle_item(row: dict, needle: dict, answer: str) -> dict:
    """One needle answer against the truth: colour right, span tIoU, and both (the needle found)."""
    span, colour = parse_needle_answer(answer)
    truth = needle_span(needle)
    tiou = round(temporal_iou(span, truth), 4)
    correct = colour == needle["colour"]
    return dict(sample_id=row["sample_id"], duration_s=needle["duration_s"], depth=needle["depth"],
                colour=needle["colour"], chosen=colour, truth=truth, pred=span, answer=answer, correct=correct,
                tiou=tiou, both=correct and tiou >= NEEDLE_BOTH_TIOU)


def needle_summary(items: list[dict]) -> dict:
    """Colour accuracy, mean span tIoU and both-right overall and per (duration, depth) cell; None overall
    when there are no items."""
    durations = sorted({i["duration_s"] for i in items})
    depths = sorted({i["depth"] for i in items})
    n = len(items)
    overall = {k: round(mean([float(i[k]) for i in items]), 4) if items else None for k in ("correct", "tiou", "both")}
    return dict(n=n, accuracy=overall["correct"], mean_tiou=overall["tiou"],
                **{f"both@{NEEDLE_BOTH_TIOU}": overall["both"]}, durations_s=durations, depths=depths,
                grid=accuracy_grid(items, durations, depths), grid_tiou=accuracy_grid(items, durations, depths, "tiou"),
                grid_both=accuracy_grid(items, durations, depths, "both"), chance=round(1 / len(COLOURS), 4),
                items=items)


# --- model side ----------------------------------------------------------------------------------------


def user_turn(row: dict) -> list[dict]:
    return [m for m in read_messages(row["messages"]) if m["role"] == "user"]


def answer_text(row: dict) -> str:
    msgs = [m for m in read_messages(row["messages"]) if m["role"] == "assistant"]
    return turn_text(msgs[-1]) if msgs else ""


def generate_answers(lm, rows: list[dict], batch_size: int, max_new_tokens: int, max_frames: int = 0) -> list[str]:
    from finetune.data import load_video
    from model.inputs import build_inputs

    if not rows:  # nothing to ask: no model needed
        return []
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
    """Colour, duration, depth and frames of a needle sample, from the truth JSON beside its haystack."""
    needle = needle_truth(row["uri"])
    if needle is None:
        raise ValueError(f"{row['uri']}: no needle truth JSON beside the haystack; needle samples are scored "
                         "against it (rebuild them with `densevid tasks`)")
    return needle


def eval_needle(lm, rows: list[dict], cfg: EvalConfig) -> dict:
    """The model answers each needle question (`<a - b seconds> colour`); colour and span are scored apart."""
    needles = [needle_meta(r) for r in rows]  # every truth found before any generation
    answers = generate_answers(lm, rows, cfg.batch_size, cfg.max_new_tokens, cfg.max_frames)
    return needle_summary([needle_item(r, n, a) for r, n, a in zip(rows, needles, answers)])


def dense_references(rows: list[dict], data: str) -> dict[str, tuple[str, list]]:
    """Reference events per video: an imported ``reference:*`` dense caption of the dataset at ``data`` (the
    first by model name), else the truth JSON beside a generated video; videos with neither are left out."""
    imported = {}
    if data:
        from curation.store import Dataset

        found = Dataset(data).sql(
            "SELECT video_id, model, entries FROM dense_captions WHERE starts_with(model, 'reference:') "
            "AND list_contains(?, video_id) ORDER BY video_id, model", [sorted({r["video_id"] for r in rows})])
        for r in found.to_pylist():
            imported.setdefault(r["video_id"], (r["model"], entry_events(r["entries"])))
    out = {}
    for r in rows:
        if r["video_id"] in imported:
            out[r["video_id"]] = imported[r["video_id"]]
            continue
        truth = read_truth(r["uri"])
        events = truth_events(truth) if truth else []
        if events:
            out[r["video_id"]] = ("truth", events)
    return out


def eval_dense(lm, rows: list[dict], cfg: EvalConfig, references: dict[str, tuple[str, list]], scorer) -> dict:
    """Each held-out dense-caption question answered, parsed into events and scored against its references."""
    scored = [r for r in rows if r["video_id"] in references]
    answers = generate_answers(lm, scored, cfg.batch_size, cfg.dense_max_new_tokens, cfg.max_frames)
    items = []
    for r, a in zip(scored, answers):
        source, refs = references[r["video_id"]]
        items.append(dict(sample_id=r["sample_id"], video_id=r["video_id"], reference=source, answer=a,
                          **video_scores(parse_events(a), refs, scorer, TIOUS)))
    return dict(dense_summary(items, TIOUS), without_reference=len(rows) - len(scored), items=items)


def scorable(result: dict, why_none: str) -> dict:
    """The result with a line saying how many samples were scored (and, for none, why)."""
    n = result["n"]
    result["summary"] = f"{n} scorable sample{'' if n == 1 else 's'}" + ("" if n else f": {why_none}")
    return result


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
    both = result[f"both@{NEEDLE_BOTH_TIOU}"]
    ax.set_title(f"{title}: colour accuracy {result['accuracy']:.0%} (chance {result['chance']:.0%}), "
                 f"colour and tIoU >= {NEEDLE_BOTH_TIOU} {both:.0%}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the command ---------------------------------------------------------------------------------------


def dataset_of(cfg: EvalConfig) -> str:
    """The dataset folder whose tables hold the references: --data, else the one the mixture was built from."""
    if cfg.data or not cfg.mixture:
        return cfg.data
    from mixtures.balance import balance_report

    try:
        built_from = balance_report(cfg.mixture).get("dataset", "")
    except FileNotFoundError:
        return ""
    return built_from if built_from and Path(built_from).is_dir() else ""


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
    out = Path(cfg.out) if cfg.out else None
    rows = held_out_rows(cfg)
    grounding = [r for r in rows if r["task"] == "temporal_grounding"][: cfg.max_samples]
    dense = [r for r in rows if r["task"] == DENSE_TASK][: cfg.max_samples] if cfg.dense_captions else []
    references = dense_references(dense, dataset_of(cfg)) if dense else {}
    scored_dense = [r for r in dense if r["video_id"] in references]
    needles = [r for r in rows if r["task"] == NEEDLE_TASK][: cfg.max_samples]
    if scored_dense and scorer_problems():  # before the model loads: the way out, not a traceback an hour later
        raise ValueError("cannot score the held-out dense captions:\n  " + "\n  ".join(scorer_problems()))
    if grounding or scored_dense or needles or cfg.needle:
        lm = lm or load_model(cfg.model)
        lm.model.eval()
    report: dict = dict(model=cfg.model, config=asdict(cfg))
    if cfg.mixture or cfg.data:  # every held-out task is reported, scored or not
        among = f"among the {len(rows)} held-out samples"
        report["grounding"] = scorable(eval_grounding(lm, grounding, cfg), f"no temporal_grounding samples {among}")
        if cfg.dense_captions:
            from synth.dense_eval import caption_scorer

            why = (f"none of the {len(dense)} dense_caption samples has reference events (an imported reference:* "
                   "dense caption, or the truth JSON beside a generated video)" if dense
                   else f"no dense_caption samples {among}")
            report["dense_caption"] = scorable(eval_dense(lm, dense, cfg, references,
                                                          caption_scorer() if scored_dense else None), why)
        report["needle_dataset"] = scorable(eval_needle(lm, needles, cfg), f"no needle samples {among}")
        if out and needles:
            plot_heatmap(report["needle_dataset"], out / "needle_dataset_heatmap.png", "needle (dataset)")
    if cfg.needle:
        base = out or Path("eval_out")
        generated = needle_rows(base / "needle_videos", cfg.needle_durations, cfg.needle_depths, cfg.needle_trials)
        report["needle"] = eval_needle(lm, generated, cfg)
        plot_heatmap(report["needle"], base / "needle_heatmap.png", "needle")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(report, indent=1, default=str))
    return report
