"""Dense captions: a video's segment captions merged into one timestamped story.

Times always come from segment boundaries, never from model text.
"""

from __future__ import annotations

from dataclasses import dataclass

from curation import CODE_VERSION
from curation.stage import Resources, Stage, Stats, log
from curation.store import Dataset
from curation.times import render_span
from model.loader import model_key
from model.structured import text_field


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
    """One line per entry: ``<12.0 - 17.5 seconds> summary. details`` (``renderer``: a time style)."""
    lines = []
    for e in entries:
        text = e["summary"].strip().rstrip(".") + "."
        if details and e.get("details"):
            text += " " + e["details"].strip()
        lines.append(f"{render_span(e['start_s'], e['end_s'], renderer)} {text}")
    return "\n".join(lines)


STORYLINE_PROMPT = (
    "Here are the events of one video with their time spans:\n{events}\n"
    "Rewrite them as one coherent story, one entry per event, in the same order. Keep every start_s and end_s "
    "exactly as given; only the summaries change. Answer in JSON."
)


def storyline_schema(n_entries: int, duration_s: float) -> dict:
    t = {"type": "number", "minimum": 0, "maximum": round(duration_s + 1, 1)}
    entry = {"type": "object", "properties": {"start_s": t, "end_s": t, "summary": text_field(120)},
             "required": ["start_s", "end_s", "summary"], "additionalProperties": False}
    return {"type": "object", "properties": {"entries": {"type": "array", "items": entry, "minItems": n_entries,
                                                         "maxItems": n_entries}},
            "required": ["entries"], "additionalProperties": False}


def check_storyline(entries: list[dict], rewritten: list[dict], tol_s: float = 0.05) -> list[dict]:
    """The rewrite keeps every entry's span; returns the entries with new summaries or raises naming the move."""
    if len(rewritten) != len(entries):
        raise ValueError(f"storyline has {len(rewritten)} entries, the video has {len(entries)}")
    out = []
    for i, (e, r) in enumerate(zip(entries, rewritten)):
        if abs(r["start_s"] - e["start_s"]) > tol_s or abs(r["end_s"] - e["end_s"]) > tol_s:
            raise ValueError(f"entry {i}: time moved from [{e['start_s']:.2f}, {e['end_s']:.2f}] "
                             f"to [{r['start_s']:.2f}, {r['end_s']:.2f}]")
        out.append(dict(e, summary=r["summary"].strip()))
    return out


@dataclass
class DenseStage(Stage):
    """Merges each video's segment captions into one timestamped dense caption.

    Fields: ``model_id`` whose captions are merged (and, with ``storyline``, the model that rewrites them);
    ``prompt_version`` of those captions; ``renderer`` the time style of the text (curation.times.STYLES);
    ``storyline`` a text-only model pass that rewrites the entries as one story, spans checked.
    """

    model_id: str = ""
    prompt_version: str = "caption_v1"
    renderer: str = "seconds"
    storyline: bool = False  # a model pass that rewrites the entries as one story, spans checked
    name = "dense"
    inputs = ("captions",)
    output = "dense_captions"
    item_column = "video_id"

    @property
    def variant(self) -> str:
        return f"{model_key(self.model_id)}|{self.prompt_version}"

    @property
    def resources(self) -> Resources:
        """The storyline pass runs the model; merging alone is CPU work."""
        return Resources(cpus=1, gpus=1) if self.storyline else Resources()

    def setup(self, ds: Dataset) -> None:
        if self.storyline:
            from model.loader import shared_model
            from model.structured import GrammarCache

            self.lm = shared_model(self.model_id)
            self.grammars = GrammarCache(self.lm.processor.tokenizer, self.lm.model.config.get_text_config().vocab_size)

    def items(self, ds: Dataset) -> list[dict]:
        """Videos whose every segment has a caption from this model and prompt; the rest wait, so a dense
        caption is never written with a gap that a later caption rerun would fill."""
        rows = ds.sql(
            "SELECT c.video_id, list(struct_pack(c.start_s, c.end_s, c.summary, c.details)) AS captions, "
            "count(*) AS n, any_value(s.n) AS n_segments FROM captions c "
            "JOIN (SELECT video_id, count(*) AS n FROM segments GROUP BY video_id) s USING (video_id) "
            "WHERE c.model = ? AND c.prompt_version = ? GROUP BY c.video_id ORDER BY c.video_id",
            [model_key(self.model_id), self.prompt_version]).to_pylist()
        ready = [dict(r, item_id=r["video_id"]) for r in rows if r["n"] == r["n_segments"]]
        if len(ready) < len(rows):
            log.warning("dense: %d videos wait for captions of some segments (see failures)", len(rows) - len(ready))
        return ready

    def done_ids(self, ds: Dataset) -> set[str]:
        return {k[0] for k in ds.keys("dense_captions") if k[1] == model_key(self.model_id)}

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        rows = []
        for v in batch:
            entries = merge_entries(v["captions"])
            story = self._storyline(entries, stats) if self.storyline else None
            rows.append(dict(video_id=v["video_id"], model=model_key(self.model_id), prompt_version=self.prompt_version,
                             entries=entries, rendered=render_dense(entries, self.renderer), renderer=self.renderer,
                             storyline=render_dense(story, self.renderer, details=False) if story else None,
                             code_version=CODE_VERSION))
            stats.add("entries", len(entries))
        return rows

    def _storyline(self, entries: list[dict], stats: Stats) -> list[dict] | None:
        """One text-only generation; a rewrite that moves any time is rejected and counted."""
        import json as _json

        from model.structured import Decoding, generate_json

        events = render_dense(entries, "seconds", details=False)
        msgs = [{"role": "user", "content": [{"type": "text", "text": STORYLINE_PROMPT.format(events=events)}]}]
        text = self.lm.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        inputs = self.lm.processor(text=[text], return_tensors="pt")
        schema = storyline_schema(len(entries), entries[-1]["end_s"])
        raw = generate_json(self.lm.model, self.lm.processor, inputs, schema, self.grammars, Decoding())[0].text
        try:
            story = check_storyline(entries, _json.loads(raw)["entries"])
        except (ValueError, KeyError) as e:
            stats.add("storyline_rejected")
            log.info("storyline rejected: %s", e)
            return None
        stats.add("storyline_kept")
        return story
