"""The gate between the model's grounding records and training samples.

Every model record (a ``grounding`` row with ``source = 'model'``) gets a verdict in ``verdicts``, keyed by
(record_id, model that verified): one boolean per check, the measured values, the reason for each failed
check, and ``passed`` when all checks hold. Only records that passed become samples (``synth.tasks``); a
rejected record stays in ``grounding`` and its verdict says why. Ground-truth rows skip the gate.

The checks, each a pure function on values:

- form: the span lies inside its segment and lasts at least ``min_span_frames`` frames and ``min_span_s``
  seconds; the boxes are on the 0..1000 grid, strictly in time order and inside the span; consecutive boxes
  overlap, or their centre moves at most ``max_jump_per_s`` grid units per second.
- caption: every content word of the phrase occurs in the same model's caption of the segment. Words are runs
  of letters and digits in lower case; content words are those not in ``STOP_WORDS``; a word loses one
  trailing "s" when longer than three letters, on both sides, so "squares" meets "square". The caption is its
  summary and details, without the detail labels ("people:", "objects:", ...).
- cycle: the model is asked the samples' own temporal-grounding question (``synth.tasks.GROUNDING_PROMPT``)
  over the segment's frames, its answer constrained to ``<a - b seconds>`` with times up to the segment's end
  (``curation.times.span_pattern``); the answered span must reach ``min_cycle_tiou`` temporal IoU with the
  record's.
- unique: the same question over frames of the whole video (``unique_frames`` of them), the answer constrained
  to ``<a - b seconds>`` inside the video's duration; ``unique_overlap`` is the share of the answered span
  that lies inside the record's span, |answer ∩ record| / |answer| (0 for an empty or reversed answer), and
  must reach ``min_unique_overlap``. A phrase that also fits another moment of the video draws the answer
  there, or over both, and fails.

Verdicts written before the uniqueness check have null ``unique_ok``, ``unique_overlap`` and ``unique_answer``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace

from curation import CODE_VERSION
from curation.frames import FramePolicy
from curation.stage import Stats
from curation.store import Dataset
from curation.times import answer_tokens, parse_span, span_pattern
from synth.captions import DETAIL_FIELDS
from synth.metrics import box_iou, temporal_iou
from synth.segment_model import SegmentModelStage
from synth.tasks import GROUNDING_PROMPT

CHECKS = ("form", "caption", "cycle", "unique")
EPS = 1e-6  # seconds; spans and box times at the boundary count as inside
WHOLE_VIDEO = "video"  # the scope of the uniqueness question

STOP_WORDS = frozenset("""
a an the this that these those some any each every other another one two both all
of in on at to from with without by for into onto over under near behind above below between through
and or but
it its he she they his her their him them who which what
is are was were be being been
""".split())


@dataclass
class GateConfig:
    """Thresholds of the gate and the uniqueness question's frame budget; each field's ``help`` is its meaning."""

    min_span_s: float = field(default=0.5, metadata={"help": "gate: shortest record span, in seconds"})
    min_span_frames: int = field(default=2, metadata={"help": "gate: shortest record span, in frames"})
    max_jump_per_s: float = field(default=500.0, metadata={
        "help": "gate: fastest a box centre may move between consecutive boxes that do not overlap, "
                "in 0..1000 grid units per second"})
    min_cycle_tiou: float = field(default=0.5, metadata={
        "help": "gate: temporal IoU the model's own answer to the record's question must reach"})
    unique_frames: int = field(default=32, metadata={
        "help": "gate: frames of the whole video the uniqueness question is asked over (even)"})
    min_unique_overlap: float = field(default=0.5, metadata={
        "help": "gate: share of the model's answer over the whole video that must lie inside the record's span"})
    checks: tuple[str, ...] = field(default=CHECKS, metadata={
        "help": "gate: the checks that decide `passed` (every check is still measured and written)"})

    def problems(self) -> list[str]:
        out = []
        if self.min_span_s < 0:
            out.append(f"--min-span-s {self.min_span_s} must be >= 0")
        if self.min_span_frames < 0:
            out.append(f"--min-span-frames {self.min_span_frames} must be >= 0")
        if self.max_jump_per_s <= 0:
            out.append(f"--max-jump-per-s {self.max_jump_per_s} must be > 0")
        if not 0 <= self.min_cycle_tiou <= 1:
            out.append(f"--min-cycle-tiou {self.min_cycle_tiou} must be in [0, 1]")
        if self.unique_frames < 2 or self.unique_frames % 2:
            out.append(f"--unique-frames {self.unique_frames} must be even and >= 2")
        if not 0 <= self.min_unique_overlap <= 1:
            out.append(f"--min-unique-overlap {self.min_unique_overlap} must be in [0, 1]")
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown or not self.checks:
            out.append(f"--checks {','.join(self.checks)}: name one or more of {', '.join(CHECKS)}")
        return out

    def as_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


# --- form ---------------------------------------------------------------------------------------------------


def span_problems(start_s: float, end_s: float, segment: tuple[float, float], fps: float,
                  gate: GateConfig) -> list[str]:
    """The span lies inside its segment and is long enough in seconds and in frames."""
    out = []
    if not (segment[0] - EPS <= start_s < end_s <= segment[1] + EPS):
        out.append(f"form: span [{start_s:.3f}, {end_s:.3f}] is not an ordered span inside its segment "
                   f"[{segment[0]:.3f}, {segment[1]:.3f}]")
    length = end_s - start_s
    if length < gate.min_span_s - EPS or length * fps < gate.min_span_frames - EPS:
        out.append(f"form: span lasts {length:.3f} s ({length * fps:.1f} frames at {fps:g} fps), shorter than "
                   f"{gate.min_span_s:g} s or {gate.min_span_frames} frames")
    return out


def box_problems(boxes: list[dict], start_s: float, end_s: float) -> list[str]:
    """Boxes on the 0..1000 grid, strictly in time order, at times inside the span."""
    out = []
    for k, b in enumerate(boxes):
        xyxy = [b["x1"], b["y1"], b["x2"], b["y2"]]
        if not (0 <= b["x1"] < b["x2"] <= 1000 and 0 <= b["y1"] < b["y2"] <= 1000):
            out.append(f"form: box {k} {xyxy} is not 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000")
        if not start_s - EPS <= b["t_s"] <= end_s + EPS:
            out.append(f"form: box {k} at {b['t_s']:.3f} s is outside the span [{start_s:.3f}, {end_s:.3f}]")
        if k and b["t_s"] <= boxes[k - 1]["t_s"]:
            out.append(f"form: box {k} at {b['t_s']:.3f} s does not come after box {k - 1} at "
                       f"{boxes[k - 1]['t_s']:.3f} s")
    return out


def jumps_per_s(boxes: list[dict]) -> list[float]:
    """Centre speed (grid units per second) between consecutive boxes that do not overlap; pairs out of time
    order are left to ``box_problems``."""
    out = []
    for a, b in zip(boxes, boxes[1:]):
        dt = b["t_s"] - a["t_s"]
        if dt > 0 and box_iou(a, b) == 0:
            dx = (b["x1"] + b["x2"] - a["x1"] - a["x2"]) / 2
            dy = (b["y1"] + b["y2"] - a["y1"] - a["y2"]) / 2
            out.append((dx * dx + dy * dy) ** 0.5 / dt)
    return out


def track_problems(boxes: list[dict], gate: GateConfig) -> list[str]:
    """An object does not teleport: boxes that do not overlap moved at most ``max_jump_per_s``."""
    fastest = max(jumps_per_s(boxes), default=0.0)
    if fastest > gate.max_jump_per_s:
        return [f"form: a box centre jumps {fastest:.0f} grid units per second without overlap "
                f"(more than {gate.max_jump_per_s:g})"]
    return []


def form_problems(rec: dict, segment: tuple[float, float], fps: float, gate: GateConfig) -> list[str]:
    return (span_problems(rec["start_s"], rec["end_s"], segment, fps, gate)
            + box_problems(rec["boxes"], rec["start_s"], rec["end_s"]) + track_problems(rec["boxes"], gate))


# --- agreement with the caption ------------------------------------------------------------------------------

_LABELS = re.compile(r"\b(?:" + "|".join(DETAIL_FIELDS) + r"):")


def _word(w: str) -> str:
    return w[:-1] if len(w) > 3 and w.endswith("s") else w


def content_words(text: str) -> list[str]:
    """Lower-case words of letters and digits, stop words left out, one trailing "s" dropped (see module doc)."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [_word(w) for w in words if w not in STOP_WORDS]


def caption_text(summary: str, details: str) -> str:
    """What a caption says: its summary and details without the detail labels."""
    return f"{summary} {_LABELS.sub(' ', details)}"


def missing_words(phrase: str, caption: str) -> list[str]:
    """Content words of the phrase the caption does not contain, in phrase order."""
    said = set(content_words(caption))
    return [w for w in dict.fromkeys(content_words(phrase)) if w not in said]


def caption_problems(phrase: str, caption: str | None) -> list[str]:
    if caption is None:
        return ["caption: the model has no caption of this segment"]
    if not content_words(phrase):
        return [f"caption: phrase {phrase!r} has no content word"]
    missing = missing_words(phrase, caption)
    return [f"caption: {', '.join(missing)} of {phrase!r} not in the caption"] if missing else []


# --- cycle consistency ----------------------------------------------------------------------------------------


def cycle_question(phrase: str, action: str) -> str:
    """Exactly the question a temporal-grounding sample asks."""
    return GROUNDING_PROMPT.format(phrase=phrase, action=action)


def cycle_problems(tiou: float, gate: GateConfig) -> list[str]:
    if tiou < gate.min_cycle_tiou:
        return [f"cycle: the model's own answer overlaps the span with tIoU {tiou:.2f} < {gate.min_cycle_tiou:g}"]
    return []


# --- uniqueness -------------------------------------------------------------------------------------------------


def share_inside(answer: tuple[float, float] | None, span: tuple[float, float]) -> float:
    """The share of the answered span that lies inside ``span``; 0 for no answer or an empty one."""
    if answer is None or answer[1] <= answer[0]:
        return 0.0
    inside = max(0.0, min(answer[1], span[1]) - max(answer[0], span[0]))
    return inside / (answer[1] - answer[0])


def unique_problems(overlap: float, gate: GateConfig) -> list[str]:
    if overlap < gate.min_unique_overlap:
        return [f"unique: asked over the whole video, the model answers a span only {overlap:.2f} of which lies "
                f"inside the record's (< {gate.min_unique_overlap:g})"]
    return []


# --- the verdict ---------------------------------------------------------------------------------------------


def judge(rec: dict, segment: tuple[float, float], fps: float, caption: str | None,
          answer: tuple[float, float] | None, video_answer: tuple[float, float] | None, gate: GateConfig) -> dict:
    """All checks on one record: a boolean per check, the measured values and every reason, in one dict.
    ``answer`` is the model's answer over the segment, ``video_answer`` over the whole video."""
    span = (rec["start_s"], rec["end_s"])
    tiou, overlap = temporal_iou(answer, span), share_inside(video_answer, span)
    found = {"form": form_problems(rec, segment, fps, gate), "caption": caption_problems(rec["phrase"], caption),
             "cycle": cycle_problems(tiou, gate), "unique": unique_problems(overlap, gate)}
    return dict(
        {f"{c}_ok": not found[c] for c in CHECKS}, passed=not any(found[c] for c in gate.checks),
        reasons=[r for c in CHECKS for r in found[c]], span_s=rec["end_s"] - rec["start_s"],
        max_jump_per_s=max(jumps_per_s(rec["boxes"]), default=0.0),
        missing_words=missing_words(rec["phrase"], caption or ""), cycle_tiou=tiou, unique_overlap=overlap,
    )


def count_verdicts(rows: list[dict], stats: Stats) -> None:
    """``passed`` and ``failed_<check>`` per verdict, as the stage summary shows them."""
    for r in rows:
        stats.add("passed", int(r["passed"]))
        for c in CHECKS:
            stats.add(f"failed_{c}", int(not r[f"{c}_ok"]))


@dataclass
class VerifyStage(SegmentModelStage):
    """A verdict for each of the model's grounding records (``source = 'model'``, made by ``model_id``).

    Fields: ``gate`` the thresholds and the uniqueness question's frame budget; ``model_id`` the model whose
    records are checked and that answers the questions; ``frames`` the frame budget of the segment the cycle
    question is asked over; ``decoding``, ``max_retries``, ``batch_size``, ``max_batch_visual_tokens`` and
    ``backend`` as in SegmentModelStage. One item per record (item_id = record_id), asked twice: over its
    segment (cycle) and over the whole video (unique), one generate call each per batch; every item writes
    one verdict.
    """

    gate: GateConfig = field(default_factory=GateConfig)
    name = "verify"
    inputs = ("videos", "segments", "captions", "grounding")
    output = "verdicts"
    item_column = "record_id"

    @property
    def variant(self) -> str:
        """Verdicts are kept per verifying model."""
        return self.model_name

    def schema_budget(self, schemas: list[dict]) -> int:
        return answer_tokens()  # a pattern-bounded string the generic bound cannot measure

    def items(self, ds: Dataset) -> list[dict]:
        """The model's records with their segment's frames and the same model's caption of it (one query)."""
        rows = ds.sql(
            "SELECT g.record_id, g.video_id, g.segment_id, g.phrase, g.action, g.start_s, g.end_s, g.boxes, "
            "s.start_s AS segment_start_s, s.end_s AS segment_end_s, s.start_frame, s.end_frame, "
            "v.uri, v.fps, v.n_frames, v.duration_s, v.width, v.height, c.summaries, c.detail_texts "
            "FROM grounding g JOIN segments s ON s.segment_id = g.segment_id "
            "JOIN videos v ON v.video_id = g.video_id "
            "LEFT JOIN (SELECT segment_id, model, list(summary) AS summaries, list(details) AS detail_texts "
            "           FROM captions GROUP BY ALL) c ON c.segment_id = g.segment_id AND c.model = g.model "
            "WHERE g.source = 'model' AND g.model = ? ORDER BY g.video_id, g.start_s, g.record_id",
            [self.model_name]).to_pylist()
        return [dict(r, item_id=r["record_id"], caption=_caption(r)) for r in rows]

    def done_ids(self, ds: Dataset) -> set[str]:
        return {k[0] for k in ds.keys("verdicts") if k[1] == self.model_name}

    def whole_video(self, item: dict) -> dict:
        """The record's question asked over the whole video (the uniqueness check)."""
        return dict(item, scope=WHOLE_VIDEO, start_frame=0, end_frame=item["n_frames"])

    def frame_policy(self, item: dict) -> FramePolicy:
        if item.get("scope") == WHOLE_VIDEO:
            return replace(self.frames, max_frames=self.gate.unique_frames)
        return self.frames

    def visual_tokens(self, item: dict) -> int:
        """A record's batch cost counts both of its questions."""
        if item.get("scope") == WHOLE_VIDEO:
            return super().visual_tokens(item)
        return super().visual_tokens(item) + super().visual_tokens(self.whole_video(item))

    def schema(self, item: dict) -> dict:
        end_s = item["duration_s"] if item.get("scope") == WHOLE_VIDEO else item["segment_end_s"]
        return {"type": "string", "pattern": span_pattern(end_s)}

    def question(self, item: dict) -> str:
        return cycle_question(item["phrase"], item["action"])

    def to_rows(self, item: dict, parsed, raw: str, frames_used: list[int]) -> list[dict]:
        """One answer (not yet a verdict): ``process`` joins a record's two answers."""
        answer = parse_span(parsed) if isinstance(parsed, str) else None
        if answer is None:
            raise ValueError(f"record {item['record_id']}: answer {raw!r} is not a span <a - b seconds>")
        return [dict(record_id=item["record_id"], answer=parsed, span=answer)]

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        cycle = self._answers(batch, ds, stats)
        again = Stats(self.name)
        unique = self._answers([self.whole_video(i) for i in batch if i["record_id"] in cycle], ds, again)
        again.counts.pop("items", None)  # the same records, asked a second question
        stats.merge(again)
        rows = [self.verdict(i, cycle[i["record_id"]], unique[i["record_id"]]) for i in batch
                if i["record_id"] in unique]
        count_verdicts(rows, stats)
        return rows

    def _answers(self, asks: list[dict], ds: Dataset, stats: Stats) -> dict[str, dict]:
        """Each record's answer; a record whose question failed is a failures row and has none."""
        return {r["record_id"]: r for r in super().process(asks, ds, stats)}

    def verdict(self, item: dict, cycle: dict, unique: dict) -> dict:
        segment = (item["segment_start_s"], item["segment_end_s"])
        verdict = judge(item, segment, item["fps"], item["caption"], cycle["span"], unique["span"], self.gate)
        return dict(verdict, record_id=item["record_id"], model=self.model_name, video_id=item["video_id"],
                    segment_id=item["segment_id"], cycle_answer=cycle["answer"], unique_answer=unique["answer"],
                    thresholds=self.gate.as_json(), model_revision=self.lm.revision,
                    decoding=self.decoding.as_json(), code_version=CODE_VERSION)


def _caption(row: dict) -> str | None:
    """Every caption the record's model wrote of the segment (one per prompt version), as one text."""
    if not row["summaries"]:
        return None
    return " ".join(caption_text(s, d) for s, d in zip(row["summaries"], row["detail_texts"]))
