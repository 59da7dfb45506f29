"""Dense captions: a video's segment captions merged into one timestamped story.

Times always come from segment boundaries, never from model text.
"""

from __future__ import annotations

from dataclasses import dataclass

from curation import CODE_VERSION
from curation.jobs import Stage, Stats
from curation.store import Dataset


def render_seconds(start_s: float, end_s: float) -> str:
    return f"<{start_s:.1f} - {end_s:.1f} seconds>"


def _hms(t: float) -> str:
    t = int(t)
    return f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"


def render_hms(start_s: float, end_s: float) -> str:
    return f"<{_hms(start_s)} - {_hms(end_s)}>"


RENDERERS = {"seconds": render_seconds, "hms": render_hms}


def merge_entries(captions: list[dict]) -> list[dict]:
    """Order captions by time; an entry never overlaps the next one."""
    entries = sorted(
        (dict(start_s=c["start_s"], end_s=c["end_s"], summary=c["summary"], details=c["details"]) for c in captions),
        key=lambda e: (e["start_s"], e["end_s"]),
    )
    for a, b in zip(entries, entries[1:]):
        if b["start_s"] < a["end_s"]:
            raise ValueError(f"segments overlap: [{a['start_s']}, {a['end_s']}] and [{b['start_s']}, {b['end_s']}]")
    return entries


def render_dense(entries: list[dict], renderer: str = "seconds", details: bool = True) -> str:
    """One line per entry: ``<12.0 - 17.5 seconds> summary. details``."""
    fmt = RENDERERS[renderer]
    lines = []
    for e in entries:
        text = e["summary"].strip().rstrip(".") + "."
        if details and e.get("details"):
            text += " " + e["details"].strip()
        lines.append(f"{fmt(e['start_s'], e['end_s'])} {text}")
    return "\n".join(lines)


@dataclass
class DenseStage(Stage):
    model_id: str = ""
    prompt_version: str = "caption_v1"
    renderer: str = "seconds"
    name = "dense"
    output = "dense_captions"

    def items(self, ds: Dataset) -> list[dict]:
        rows = ds.sql(
            "SELECT video_id, list(struct_pack(start_s, end_s, summary, details)) AS captions FROM captions "
            "WHERE model = ? AND prompt_version = ? GROUP BY video_id ORDER BY video_id",
            [str(self.model_id), self.prompt_version]).to_pylist()
        return [dict(r, item_id=r["video_id"]) for r in rows]

    def done_ids(self, ds: Dataset) -> set[str]:
        return {k[0] for k in ds.keys("dense_captions") if k[1] == str(self.model_id)}

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        rows = []
        for v in batch:
            entries = merge_entries(v["captions"])
            rows.append(dict(video_id=v["video_id"], model=str(self.model_id), prompt_version=self.prompt_version,
                             entries=entries, rendered=render_dense(entries, self.renderer), renderer=self.renderer,
                             code_version=CODE_VERSION))
            stats.add("entries", len(entries))
        return rows
