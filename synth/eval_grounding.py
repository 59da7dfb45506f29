"""Score model grounding records against ground truth: temporal IoU, mean box IoU, recall at IoU thresholds.

Each ground-truth record is matched to the model record of the same video about the same phrase (compared
after ``phrase_key``) with the highest temporal IoU; a model record is used once. A record about something
else never matches, however well it overlaps in time. Unmatched truth scores 0, so missing records lower
every number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from synth.grounding import GroundStage
from synth.metrics import THRESHOLDS, mean, mean_box_iou, recall_at, temporal_iou


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


_ARTICLE = re.compile(r"^(the|a|an) ")


def phrase_key(phrase: str) -> str:
    """``"The red  square."`` -> ``"red square"``: case, punctuation, spacing and a leading article ignored."""
    words = " ".join(re.sub(r"[^a-z0-9]+", " ", phrase.lower()).split())
    return _ARTICLE.sub("", words)


def score_grounding(truth: list[dict], model: list[dict], thresholds=THRESHOLDS) -> GroundingScore:
    """``truth`` and ``model``: grounding rows (video_id, phrase, start_s, end_s, boxes)."""
    by_subject: dict[tuple[str, str], list[dict]] = {}
    for m in model:
        if m["end_s"] > m["start_s"]:
            by_subject.setdefault((m["video_id"], phrase_key(m["phrase"])), []).append(m)
    tious, bious = [], []
    for t in truth:
        candidates = by_subject.get((t["video_id"], phrase_key(t["phrase"])), [])
        if not candidates:
            tious.append(0.0)
            bious.append(0.0)
            continue
        span = (t["start_s"], t["end_s"])
        best = max(candidates, key=lambda m: temporal_iou((m["start_s"], m["end_s"]), span))
        candidates.remove(best)
        tious.append(temporal_iou((best["start_s"], best["end_s"]), span))
        bious.append(mean_box_iou(t["boxes"] or [], best["boxes"] or []))
    return GroundingScore(n_truth=len(truth), n_model=len(model), mean_tiou=mean(tious), mean_box_iou=mean(bious),
                          recall=recall_at(tious, thresholds))


# every model that ran the ground stage, also one that found nothing (its segments are finished items,
# whose variant is the model)
_MODELS_SQL = ("SELECT DISTINCT model FROM grounding WHERE source = 'model' UNION "
               f"SELECT DISTINCT variant AS model FROM finished WHERE stage = '{GroundStage.name}'")


def evaluate_dataset(ds, model: str | None = None) -> dict[str, GroundingScore]:
    """Scores per model found in the grounding table (or just ``model``)."""
    truth = ds.sql("SELECT video_id, phrase, start_s, end_s, boxes FROM grounding WHERE source = 'ground_truth'"
                   ).to_pylist()
    models = ds.sql(_MODELS_SQL).column("model").to_pylist()
    out = {}
    for m in [model] if model else sorted(models):
        rows = ds.sql("SELECT video_id, phrase, start_s, end_s, boxes FROM grounding WHERE source = 'model' "
                      "AND model = ?",
                      [m]).to_pylist()
        out[m] = score_grounding(truth, rows)
    return out
