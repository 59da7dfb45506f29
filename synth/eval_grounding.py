"""Score model grounding records against ground truth: temporal IoU, mean box IoU, recall at IoU thresholds.

Each ground-truth record is matched to the model record of the same video with the highest temporal IoU
(a model record is used once). Unmatched truth scores 0, so missing records lower every number.
"""

from __future__ import annotations

from dataclasses import dataclass

THRESHOLDS = (0.3, 0.5, 0.7)


def temporal_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def box_iou(a: dict, b: dict) -> float:
    ix = max(0, min(a["x2"], b["x2"]) - max(a["x1"], b["x1"]))
    iy = max(0, min(a["y2"], b["y2"]) - max(a["y1"], b["y1"]))
    inter = ix * iy
    area = lambda r: (r["x2"] - r["x1"]) * (r["y2"] - r["y1"])  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def mean_box_iou(truth_boxes: list[dict], model_boxes: list[dict]) -> float:
    """For each truth box, the model box nearest in time; 0 when the model gave none."""
    if not truth_boxes:
        return 0.0
    if not model_boxes:
        return 0.0
    total = 0.0
    for t in truth_boxes:
        nearest = min(model_boxes, key=lambda m: abs(m["t_s"] - t["t_s"]))
        total += box_iou(t, nearest)
    return total / len(truth_boxes)


@dataclass
class GroundingScore:
    n_truth: int
    n_model: int
    mean_tiou: float
    mean_box_iou: float
    recall: dict[float, float]

    def as_dict(self) -> dict:
        return {"n_truth": self.n_truth, "n_model": self.n_model, "mean_tiou": round(self.mean_tiou, 4),
                "mean_box_iou": round(self.mean_box_iou, 4),
                **{f"recall@{t}": round(v, 4) for t, v in self.recall.items()}}


def score_grounding(truth: list[dict], model: list[dict], thresholds=THRESHOLDS) -> GroundingScore:
    """``truth`` and ``model``: grounding rows (video_id, start_s, end_s, boxes)."""
    by_video: dict[str, list[dict]] = {}
    for m in model:
        if m["end_s"] > m["start_s"]:
            by_video.setdefault(m["video_id"], []).append(m)
    tious, bious = [], []
    for t in truth:
        candidates = by_video.get(t["video_id"], [])
        if not candidates:
            tious.append(0.0)
            bious.append(0.0)
            continue
        best = max(candidates, key=lambda m: temporal_iou((t["start_s"], t["end_s"]), (m["start_s"], m["end_s"])))
        candidates.remove(best)
        tious.append(temporal_iou((t["start_s"], t["end_s"]), (best["start_s"], best["end_s"])))
        bious.append(mean_box_iou(t["boxes"] or [], best["boxes"] or []))
    n = len(truth)
    return GroundingScore(
        n_truth=n, n_model=len(model), mean_tiou=sum(tious) / n if n else 0.0,
        mean_box_iou=sum(bious) / n if n else 0.0,
        recall={th: (sum(v >= th for v in tious) / n if n else 0.0) for th in thresholds},
    )


def evaluate_dataset(ds, model: str | None = None) -> dict[str, GroundingScore]:
    """Scores per model found in the grounding table (or just ``model``)."""
    truth = ds.sql("SELECT video_id, start_s, end_s, boxes FROM grounding WHERE source = 'ground_truth'").to_pylist()
    models = ds.sql("SELECT DISTINCT model FROM grounding WHERE source = 'model'").column("model").to_pylist()
    out = {}
    for m in [model] if model else sorted(models):
        rows = ds.sql("SELECT video_id, start_s, end_s, boxes FROM grounding WHERE source = 'model' AND model = ? "
                      "AND phrase <> ''", [m]).to_pylist()
        out[m] = score_grounding(truth, rows)
    return out
