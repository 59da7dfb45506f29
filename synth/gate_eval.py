"""The gate measured against truth: how well each check, and the whole gate, tells the model's correct
grounding records from its wrong ones, on videos whose truth the round did not see.

A model record is correct when a truth record of the same video about the same phrase reaches ``min_tiou``
temporal IoU with it. Phrases are compared as ``phrase_words``: lower case, content words only, as
``synth.verify.content_words`` finds them ("The red squares" is "red square").

For the whole gate (``passed``) and for each check (its boolean alone):

- precision_passed: correct among the passed records; recall_correct: passed among the correct ones;
- precision_rejected: incorrect among the rejected records; recall_incorrect: rejected among the incorrect;

with the counts; a share is None when its denominator is 0. Left out, and counted: records without a verdict
(``n_unverified``), records of videos without any truth (``n_without_truth``), and, for one check, verdicts
made before that check existed (a null boolean).
"""

from __future__ import annotations

from pathlib import Path

from curation.store import Dataset
from model.loader import model_key
from synth.metrics import temporal_iou
from synth.verify import CHECKS, content_words
from synth.videos import read_truth

OVERALL = "overall"
MEASURES = ("precision_passed", "recall_correct", "precision_rejected", "recall_incorrect")


def phrase_words(phrase: str) -> tuple[str, ...]:
    return tuple(content_words(phrase))


def is_correct(rec: dict, truth_spans: dict[tuple, list[tuple[float, float]]], min_tiou: float) -> bool:
    """A same-phrase truth record of the same video overlaps it with tIoU >= ``min_tiou``."""
    spans = truth_spans.get((rec["video_id"], phrase_words(rec["phrase"])), [])
    return any(temporal_iou((rec["start_s"], rec["end_s"]), t) >= min_tiou for t in spans)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def separation(pairs: list[tuple[bool, bool]]) -> dict:
    """Counts and the four shares of (passed, correct) pairs (see the module doc)."""
    tp = sum(p and c for p, c in pairs)
    fp = sum(p and not c for p, c in pairs)
    fn = sum(c and not p for p, c in pairs)
    tn = len(pairs) - tp - fp - fn
    return dict(n=len(pairs), n_passed=tp + fp, n_rejected=fn + tn, n_correct=tp + fn, n_incorrect=fp + tn,
                precision_passed=_share(tp, tp + fp), recall_correct=_share(tp, tp + fn),
                precision_rejected=_share(tn, tn + fn), recall_incorrect=_share(tn, tn + fp))


def gate_scores(records: list[dict], verdicts: list[dict], truth: list[dict], min_tiou: float = 0.5) -> dict:
    """``records``: the model's grounding rows (record_id, video_id, phrase, start_s, end_s); ``verdicts``: its
    verdicts (record_id, passed, <check>_ok); ``truth``: truth rows (video_id, phrase, start_s, end_s)."""
    truth_spans: dict[tuple, list[tuple[float, float]]] = {}
    for t in truth:
        truth_spans.setdefault((t["video_id"], phrase_words(t["phrase"])), []).append((t["start_s"], t["end_s"]))
    with_truth = {t["video_id"] for t in truth}
    by_record = {v["record_id"]: v for v in verdicts}
    verified = [r for r in records if r["record_id"] in by_record]
    scored = [(by_record[r["record_id"]], is_correct(r, truth_spans, min_tiou)) for r in verified
              if r["video_id"] in with_truth]
    checks = {OVERALL: separation([(v["passed"], ok) for v, ok in scored])}
    for c in CHECKS:
        checks[c] = separation([(v[f"{c}_ok"], ok) for v, ok in scored if v.get(f"{c}_ok") is not None])
    return dict(min_tiou=min_tiou, n_records=len(records), n_unverified=len(records) - len(verified),
                n_without_truth=len(verified) - len(scored), n_scored=len(scored),
                n_correct=sum(ok for _, ok in scored), checks=checks)


# --- from a dataset ---------------------------------------------------------------------------------------------


def load_gate_inputs(ds: Dataset, model: str, truth_dir: str | Path | None = None):
    """(records, verdicts, truth) of ``model`` for ``gate_scores``: its grounding records and verdicts, and
    the truth of their videos: ground-truth rows, plus ``<truth_dir>/<video file stem>.json`` files
    (``synth.videos.write_truth``) when ``truth_dir`` is given."""
    key = model_key(model)
    records = ds.sql("SELECT record_id, video_id, phrase, start_s, end_s FROM grounding "
                     "WHERE source = 'model' AND model = ? ORDER BY record_id", [key]).to_pylist()
    # read through the table schema: verdicts made before a check have that check's columns as null
    columns = ["record_id", "model", "passed"] + [f"{c}_ok" for c in CHECKS]
    verdicts = [v for v in ds.rows("verdicts", columns) if v["model"] == key]
    video_ids = sorted({r["video_id"] for r in records})
    truth = ds.sql("SELECT video_id, phrase, start_s, end_s FROM grounding WHERE source = 'ground_truth' "
                   "AND list_contains(?, video_id)", [video_ids]).to_pylist()
    if truth_dir is not None:
        uris = ds.sql("SELECT video_id, uri FROM videos WHERE list_contains(?, video_id)", [video_ids]).to_pylist()
        truth += truth_files(Path(truth_dir), {u["video_id"]: u["uri"] for u in uris})
    return records, verdicts, truth


def truth_files(truth_dir: Path, uris: dict[str, str]) -> list[dict]:
    """Truth rows from ``<truth_dir>/<stem of the video's uri>.json``; a video without a file has none."""
    if not truth_dir.is_dir():
        raise ValueError(f"--truth-dir {truth_dir}: no such folder; give the folder of truth JSON files, one "
                         "<video file stem>.json per video")
    rows = []
    for video_id, uri in sorted(uris.items()):
        path = truth_dir / f"{Path(uri).stem}.json"
        if not path.exists():
            continue
        data = read_truth(path)
        if data is None:
            raise ValueError(f"truth file {path} is not truth JSON as synth.videos.write_truth writes it "
                             "(scene_starts, shapes, fps); fix it or move it out of --truth-dir")
        rows += [dict(video_id=video_id, phrase=s["phrase"], start_s=float(s["start_s"]), end_s=float(s["end_s"]))
                 for s in data["shapes"]]
    return rows
