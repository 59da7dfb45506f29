"""Segment captions: an event-level summary and the visual details, as the Qwen3-VL report asks."""

from __future__ import annotations

from dataclasses import dataclass

from curation import CODE_VERSION
from curation.store import Dataset
from model.structured import text_field
from synth.segment_model import SegmentModelStage

DETAIL_FIELDS = ("people", "objects", "background", "actions")

CAPTION_SCHEMA = {
    "type": "object",
    "properties": {
        "summary": text_field(100),
        "details": {
            "type": "object",
            "properties": {k: text_field(80) for k in DETAIL_FIELDS},
            "required": list(DETAIL_FIELDS),
            "additionalProperties": False,
        },
    },
    "required": ["summary", "details"],
    "additionalProperties": False,
}


def render_details(details: dict) -> str:
    return "; ".join(f"{k}: {details[k].strip()}" for k in DETAIL_FIELDS if details.get(k, "").strip())


def validate_caption(parsed: dict) -> tuple[str, str]:
    summary = str(parsed.get("summary", "")).strip()
    if not summary:
        raise ValueError("caption has an empty summary")
    details = parsed.get("details")
    if not isinstance(details, dict):
        raise ValueError("caption details must be an object with people, objects, background, actions")
    return summary, render_details(details)


@dataclass
class CaptionStage(SegmentModelStage):
    """One caption per segment: an event-level summary and the visual details (``prompt_name``: the prompt
    file under synth/prompts; other fields as in SegmentModelStage)."""

    prompt_name: str = "caption_v1"
    name = "caption"
    inputs = ("videos", "segments")
    output = "captions"

    def done_ids(self, ds: Dataset) -> set[str]:
        return {k[0] for k in ds.keys("captions") if k[1] == self.model_name and k[2] == self.prompt_name}

    def schema(self, seg: dict) -> dict:
        return CAPTION_SCHEMA

    def to_rows(self, seg: dict, parsed: dict, raw: str, frames_used: list[int]) -> list[dict]:
        summary, details = validate_caption(parsed)
        return [dict(
            segment_id=seg["segment_id"], model=self.model_name, prompt_version=self.prompt_version,
            video_id=seg["video_id"], start_s=seg["start_s"], end_s=seg["end_s"], summary=summary, details=details,
            raw_output=raw, frames_used=frames_used, model_revision=self.lm.revision,
            decoding=self.decoding.as_json(), code_version=CODE_VERSION,
        )]
