"""Spatio-temporal grounding: who/what, when [start_s, end_s], where (boxes on the 0..1000 grid)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from curation import CODE_VERSION
from curation.domains import EVAL_ONLY_DOMAINS
from curation.stage import Stage, Stats
from curation.store import Dataset, stable_id
from model.structured import text_field
from synth.segment_model import SegmentModelStage
from synth.videos import read_truth


def grounding_schema(start_s: float, end_s: float, max_entities: int = 3, max_boxes: int = 4) -> dict:
    """Times bounded to the segment and boxes to the grid, so outputs stay short; order is checked later."""
    # bounds rounded inwards, so anything the grammar allows also passes validation
    t = {"type": "number", "minimum": math.ceil(start_s * 100) / 100, "maximum": math.floor(end_s * 100) / 100}
    coord = {"type": "integer", "minimum": 0, "maximum": 1000}
    box = {
        "type": "object",
        "properties": {"t_s": t, "bbox_2d": {"type": "array", "items": coord, "minItems": 4, "maxItems": 4}},
        "required": ["t_s", "bbox_2d"],
        "additionalProperties": False,
    }
    entity = {
        "type": "object",
        "properties": {"phrase": text_field(60), "action": text_field(60), "start_s": t, "end_s": t,
                       "boxes": {"type": "array", "items": box, "minItems": 1, "maxItems": max_boxes}},
        "required": ["phrase", "action", "start_s", "end_s", "boxes"],
        "additionalProperties": False,
    }
    return {"type": "object",
            "properties": {"entities": {"type": "array", "items": entity, "minItems": 0, "maxItems": max_entities}},
            "required": ["entities"], "additionalProperties": False}


def validate_record(rec: dict, start_s: float, end_s: float, eps: float = 1e-6) -> list[dict]:
    """Check one grounding record; returns its boxes as rows. Raises ValueError naming the bad value."""
    phrase = str(rec.get("phrase", "")).strip()
    if not phrase:
        raise ValueError("grounding record has an empty phrase")
    s, e = float(rec["start_s"]), float(rec["end_s"])
    if not (start_s - eps <= s < e <= end_s + eps):
        raise ValueError(f"{phrase!r}: span [{s:.3f}, {e:.3f}] is not an ordered span inside the segment "
                         f"[{start_s:.3f}, {end_s:.3f}]")
    boxes = []
    for b in rec.get("boxes", []):
        t = float(b["t_s"])
        x1, y1, x2, y2 = (int(v) for v in (b["bbox_2d"] if "bbox_2d" in b else (b["x1"], b["y1"], b["x2"], b["y2"])))
        if not (0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000):
            raise ValueError(f"{phrase!r}: box {[x1, y1, x2, y2]} must have 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000")
        if not (start_s - eps <= t <= end_s + eps):
            raise ValueError(f"{phrase!r}: box time {t} is outside the segment [{start_s:.2f}, {end_s:.2f}]")
        boxes.append(dict(t_s=t, x1=x1, y1=y1, x2=x2, y2=y2))
    return sorted(boxes, key=lambda b: b["t_s"])


@dataclass
class GroundStage(SegmentModelStage):
    """The model's grounding records per segment: phrase, action, span and boxes (``source = 'model'``).

    Fields: ``prompt_name`` the prompt file under synth/prompts; the others as in SegmentModelStage. A
    segment where the model finds nothing writes no row; the executor records it as finished. A record
    becomes samples only once the verify stage passes it (``synth.verify``).
    """

    prompt_name: str = "grounding_v1"
    name = "ground"
    inputs = ("videos", "segments")
    output = "grounding"

    @property
    def variant(self) -> str:
        """The model alone: grounding rows name their model, not their prompt, so done means the same in both."""
        return self.model_name

    def done_ids(self, ds: Dataset) -> set[str]:
        rows = ds.sql("SELECT DISTINCT segment_id FROM grounding WHERE source = 'model' AND model = ?",
                      [self.model_name])
        return set(rows.column("segment_id").to_pylist())

    def schema(self, seg: dict) -> dict:
        return grounding_schema(seg["start_s"], seg["end_s"])

    def to_rows(self, seg: dict, parsed: dict, raw: str, frames_used: list[int]) -> list[dict]:
        """Each record as the model wrote it: a span or box out of order is the gate's to reject, with its
        reason (``synth.verify.form_problems``), never a reason to lose the segment's other records."""
        return [dict(
            record_id=stable_id("model", self.model_name, seg["segment_id"], k, rec["phrase"], rec["start_s"]),
            video_id=seg["video_id"], segment_id=seg["segment_id"], phrase=rec["phrase"].strip(),
            action=rec["action"].strip(), start_s=float(rec["start_s"]), end_s=float(rec["end_s"]),
            boxes=model_boxes(rec["boxes"]), source="model", model=self.model_name, code_version=CODE_VERSION,
        ) for k, rec in enumerate(parsed["entities"])]

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        """A record without a phrase names nothing to check: it is counted, not written."""
        rows = super().process(batch, ds, stats)
        kept = [r for r in rows if r["phrase"]]
        stats.add("records", len(kept))
        stats.add("records_without_phrase", len(rows) - len(kept))
        return kept


def model_boxes(boxes: list[dict]) -> list[dict]:
    """The schema's ``{t_s, bbox_2d}`` as table rows, in the model's order and unchecked (the gate checks)."""
    return [dict(t_s=float(b["t_s"]), x1=int(b["bbox_2d"][0]), y1=int(b["bbox_2d"][1]), x2=int(b["bbox_2d"][2]),
                 y2=int(b["bbox_2d"][3])) for b in boxes]


class GroundTruthStage(Stage):
    """Ground truth from the JSON written beside generated videos (``source = 'ground_truth'``).

    No fields: one item per video with a truth file; each truth shape becomes a record in the segment
    that holds its midpoint.
    """

    name = "ground_truth"
    inputs = ("videos", "segments")
    output = "grounding"
    item_column = "video_id"

    def items(self, ds: Dataset) -> list[dict]:
        return [dict(v, item_id=v["video_id"]) for v in ds.rows("videos")
                if v["domain"] not in EVAL_ONLY_DOMAINS and read_truth(v["uri"]) is not None]

    def done_ids(self, ds: Dataset) -> set[str]:
        rows = ds.sql("SELECT DISTINCT video_id FROM grounding WHERE source = 'ground_truth'")
        return set(rows.column("video_id").to_pylist())

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        segments = segments_by_video(ds, [v["video_id"] for v in batch])
        rows = []
        for v in batch:
            truth = read_truth(v["uri"])
            for shape in truth["shapes"]:
                seg = segment_at(segments.get(v["video_id"], []), (shape["start_s"] + shape["end_s"]) / 2)
                validate_record(shape, 0.0, v["duration_s"])
                rows.append(dict(
                    record_id=stable_id("ground_truth", v["video_id"], shape["phrase"], shape["start_s"]),
                    video_id=v["video_id"], segment_id=seg, phrase=shape["phrase"], action=shape["action"],
                    start_s=shape["start_s"], end_s=shape["end_s"], boxes=shape["boxes"], source="ground_truth",
                    model="", code_version=CODE_VERSION,
                ))
            stats.add("records", len(truth["shapes"]))
        return rows


def segments_by_video(ds: Dataset, video_ids: list[str]) -> dict[str, list[dict]]:
    """The segments of these videos (one query), grouped by video."""
    rows = ds.sql("SELECT video_id, segment_id, start_s, end_s FROM segments WHERE list_contains(?, video_id) "
                  "ORDER BY video_id, start_s", [video_ids]).to_pylist()
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["video_id"], []).append(r)
    return out


def segment_at(segments: list[dict], t: float) -> str:
    """The segment of one video that holds time ``t`` ("" when none does)."""
    for s in segments:
        if s["start_s"] <= t < s["end_s"]:
            return s["segment_id"]
    return ""
