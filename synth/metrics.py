"""Grounding metrics, one implementation for `eval-grounding` and `eval`: temporal IoU, box IoU, R@IoU."""

from __future__ import annotations

THRESHOLDS = (0.3, 0.5, 0.7)


def temporal_iou(pred: tuple[float, float] | None, truth: tuple[float, float]) -> float:
    """IoU of two time spans; a missing or empty predicted span scores 0."""
    if pred is None or pred[1] <= pred[0]:
        return 0.0
    inter = max(0.0, min(pred[1], truth[1]) - max(pred[0], truth[0]))
    union = max(pred[1], truth[1]) - min(pred[0], truth[0])
    return inter / union if union > 0 else 0.0


def box_iou(a: dict, b: dict) -> float:
    """IoU of two boxes given as dicts with x1, y1, x2, y2 (any common grid)."""
    ix = max(0, min(a["x2"], b["x2"]) - max(a["x1"], b["x1"]))
    iy = max(0, min(a["y2"], b["y2"]) - max(a["y1"], b["y1"]))
    inter = ix * iy
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _area(r: dict) -> float:
    return (r["x2"] - r["x1"]) * (r["y2"] - r["y1"])


def mean_box_iou(truth_boxes: list[dict], pred_boxes: list[dict]) -> float:
    """For each truth box, the IoU with the predicted box nearest in time; 0 when there are none."""
    if not truth_boxes or not pred_boxes:
        return 0.0
    total = 0.0
    for t in truth_boxes:
        nearest = min(pred_boxes, key=lambda m: abs(m["t_s"] - t["t_s"]))
        total += box_iou(t, nearest)
    return total / len(truth_boxes)


def recall_at(ious: list[float], thresholds=THRESHOLDS) -> dict[float, float]:
    """R@IoU: the fraction of items whose IoU reaches each threshold (0 for no items)."""
    n = len(ious)
    return {t: (sum(v >= t for v in ious) / n if n else 0.0) for t in thresholds}


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
