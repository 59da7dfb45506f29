"""Training samples in chat form, one pure builder per task kind.

A builder maps one video and its rows (dense caption, captioned segments, grounding records) to sample
drafts: prompt, answer and the frame span the sample shows. Adding a task kind means adding one builder
with ``@task_builder("name")``.

Every sample stores its clip as frames (``clip_start_frame``, ``clip_end_frame``), the exact source frame
indices it shows, the fps and the source frame count, so the ``<t seconds>`` markers the processor writes
and the times in the target text are on the same clock: the source video's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from curation import CODE_VERSION
from curation.domains import EVAL_ONLY_DOMAINS
from curation.frames import FramePolicy, sample_indices
from curation.stage import Stage, Stats, log
from curation.splits import assign_split, assign_splits
from curation.store import Dataset, stable_id
from curation.times import SPAN_HINT, TIME_HINT, FrameSpan, render_span, render_time
from model.inputs import assistant_message, user_video_message, visual_tokens
from model.loader import model_key
from synth.prompts import load_prompt

DENSE_PROMPT = f"Describe this video in detail. For each event give its time span as {SPAN_HINT}."
SEGMENT_PROMPT = "Describe what happens in this clip: its time span, the main event, then people, objects, background and actions."
GROUNDING_PROMPT = "When does {phrase} {action}? Answer with the time span as " + SPAN_HINT + "."
ST_GROUNDING_PROMPT = ("When and where does {phrase} {action}? Give the time span as " + SPAN_HINT + " and, "
                       "at a few times " + TIME_HINT + ", its box as bbox_2d [x1, y1, x2, y2] on a 0..1000 grid.")
NEEDLE_TASK = "needle"  # built by synth.needle, not from a video's rows
GROUND_TEMPLATE = load_prompt("grounding_v1")[1]  # what the ground stage asks of each segment


@dataclass
class VideoRows:
    """What the builders see of one video: its `videos` row, its dense caption (rendered text), its
    captioned segments (segment frames + caption, in time order) and its grounding records: ground truth and
    the model records that passed the gate (``synth.verify``), each with its ``record_id`` and ``source``."""

    video: dict
    dense: str | None = None
    segments: list[dict] = field(default_factory=list)
    grounding: list[dict] = field(default_factory=list)
    model: str = ""  # the model whose captions and dense caption these are


@dataclass
class Draft:
    """One sample before frames are picked: ``span`` is the clip shown (None: the whole video) and
    ``segment_level`` selects the segment frame budget instead of the video one."""

    task: str
    key: str  # unique per (task, video): part of the sample id
    prompt: str
    answer: str
    span: FrameSpan | None = None
    segment_level: bool = False
    origin: str = "ground_truth"  # where the answer comes from: ground_truth or model
    model: str = ""  # the model that made the answer ("" for ground truth)
    passed_gate: bool | None = None  # a model grounding record's verdict; None where no gate applies


Builder = Callable[[VideoRows], list[Draft]]
BUILDERS: dict[str, Builder] = {}


def task_builder(name: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return register


# --- answers ---------------------------------------------------------------------------------------------


def grounding_answer(start_s: float, end_s: float) -> str:
    return render_span(start_s, end_s)


def st_grounding_answer(phrase: str, start_s: float, end_s: float, boxes: list[dict], max_boxes: int = 4) -> str:
    """``{"phrase": ..., "time": "<a - b seconds>", "boxes": [{"time": "<t seconds>", "bbox_2d": [...]}]}``."""
    step = max(1, -(-len(boxes) // max_boxes))
    picked = boxes[::step][:max_boxes]
    return json.dumps({"phrase": phrase, "time": render_span(start_s, end_s),
                       "boxes": [{"time": render_time(b["t_s"]), "bbox_2d": [b["x1"], b["y1"], b["x2"], b["y2"]]}
                                 for b in picked]})


def segment_answer(seg: dict) -> str:
    return f"{render_span(seg['start_s'], seg['end_s'])} {seg['summary'].strip().rstrip('.')}. {seg['details']}"


def made_by_model(model: str) -> dict:
    """Draft fields of an answer written from a model's captions."""
    return dict(origin="model", model=model) if model else {}


def record_origin(g: dict) -> dict:
    """Draft fields of an answer taken from a grounding record: its source, its model, its verdict."""
    if g.get("source", "ground_truth") == "ground_truth":
        return {}
    return dict(origin=g["source"], model=g.get("model") or "", passed_gate=bool(g.get("passed")))


# --- builders ----------------------------------------------------------------------------------------------


@task_builder("dense_caption")
def dense_caption(rows: VideoRows) -> list[Draft]:
    return [Draft("dense_caption", "all", DENSE_PROMPT, rows.dense, **made_by_model(rows.model))] if rows.dense else []


@task_builder("segment_caption")
def segment_caption(rows: VideoRows) -> list[Draft]:
    fps = rows.video["fps"]
    return [Draft("segment_caption", seg["segment_id"], SEGMENT_PROMPT, segment_answer(seg),
                  FrameSpan(seg["start_frame"], seg["end_frame"], fps), segment_level=True, **made_by_model(rows.model))
            for seg in rows.segments]


def _grounding_key(g: dict) -> str:
    """The truth of generated videos by phrase and start (the keys its samples always had); any other record
    (imported truth, a model's record) by its id, so records with the same phrase and start stay apart."""
    if g.get("source", "ground_truth") == "ground_truth" and not g.get("model"):
        return f"{g['phrase']}@{g['start_s']:.3f}"
    return f"{g['source']}:{g['record_id']}"


@task_builder("temporal_grounding")
def temporal_grounding(rows: VideoRows) -> list[Draft]:
    return [Draft("temporal_grounding", _grounding_key(g), GROUNDING_PROMPT.format(**g),
                  grounding_answer(g["start_s"], g["end_s"]), **record_origin(g)) for g in rows.grounding]


@task_builder("spatio_temporal_grounding")
def spatio_temporal_grounding(rows: VideoRows) -> list[Draft]:
    return [Draft("spatio_temporal_grounding", _grounding_key(g), ST_GROUNDING_PROMPT.format(**g),
                  st_grounding_answer(g["phrase"], g["start_s"], g["end_s"], g["boxes"]), **record_origin(g))
            for g in rows.grounding if g["boxes"]]


@task_builder("segment_grounding")
def segment_grounding(rows: VideoRows) -> list[Draft]:
    """The ground stage's own question over a segment, answered with the segment's records as its schema
    wants them (``synth.grounding``): a model trained on it can label segments as the next round's teacher."""
    by_segment: dict[str, list[dict]] = {}
    for g in rows.grounding:  # records inside their segment only: the stage's schema bounds times to it
        if g.get("segment_start_frame") is not None and \
                g["segment_start_s"] - 1e-6 <= g["start_s"] < g["end_s"] <= g["segment_end_s"] + 1e-6:
            by_segment.setdefault(g["segment_id"], []).append(g)
    fps = rows.video["fps"]
    return [Draft("segment_grounding", seg_id, GROUND_TEMPLATE.format(start_s=gs[0]["segment_start_s"],
                                                                      end_s=gs[0]["segment_end_s"]),
                  entities_answer(gs), FrameSpan(gs[0]["segment_start_frame"], gs[0]["segment_end_frame"], fps),
                  segment_level=True, **records_origin(gs))
            for seg_id, gs in by_segment.items()]


def entities_answer(records: list[dict]) -> str:
    """``{"entities": [{"phrase", "action", "start_s", "end_s", "boxes": [{"t_s", "bbox_2d"}]}]}``, times to
    0.01 s (the schema's grid), at most 4 boxes a record as the ground stage asks for."""
    entities = []
    for g in records:
        step = max(1, -(-len(g["boxes"]) // 4))
        entities.append({"phrase": g["phrase"], "action": g["action"], "start_s": round(g["start_s"], 2),
                         "end_s": round(g["end_s"], 2),
                         "boxes": [{"t_s": round(b["t_s"], 2), "bbox_2d": [b["x1"], b["y1"], b["x2"], b["y2"]]}
                                   for b in g["boxes"][::step][:4]]})
    return json.dumps({"entities": entities})


def records_origin(records: list[dict]) -> dict:
    """One sample from several records: model-made (and gated) if any record is the model's."""
    made = [origin for origin in map(record_origin, records) if origin]
    if not made:
        return {}
    return dict(made[0], passed_gate=all(m["passed_gate"] for m in made))


TASKS = (*BUILDERS, NEEDLE_TASK)


# --- drafts -> sample rows ---------------------------------------------------------------------------------


def messages_json(prompt: str, answer: str) -> str:
    return json.dumps([user_video_message(prompt), assistant_message(answer)])


def sample_id(draft: Draft, video: dict) -> str:
    """Ground truth keyed by task, video and key; a model's answer also by its model, so each teacher's
    samples of a video stand side by side."""
    if draft.model:
        return stable_id(draft.task, video["video_id"], draft.key, draft.model)
    return stable_id(draft.task, video["video_id"], draft.key)


def clip_sample(video: dict, draft: Draft, policy: FramePolicy, split: str | None = None) -> dict:
    """A `samples` row without token counts: frames picked inside the draft's clip, times from frames."""
    span = draft.span or FrameSpan(0, video["n_frames"], video["fps"])
    idx = sample_indices(span.start_frame, span.end_frame, span.fps, policy)
    return dict(
        sample_id=sample_id(draft, video), task=draft.task, video_id=video["video_id"],
        uri=video["uri"], clip_start_s=span.start_s, clip_end_s=span.end_s, clip_start_frame=span.start_frame,
        clip_end_frame=span.end_frame, video_n_frames=video["n_frames"], frame_indices=idx, fps=video["fps"],
        messages=messages_json(draft.prompt, draft.answer), domain=video["domain"],
        split=split or assign_split(video["video_id"]), origin=draft.origin, model=draft.model,
        passed_gate=draft.passed_gate, code_version=CODE_VERSION,
    )


def count_tokens(processor, sample: dict, draft: Draft, video: dict) -> dict:
    """The sample with its text and visual token counts (what mixtures balance and batches are planned on)."""
    sample["n_text_tokens"] = len(processor.tokenizer(draft.prompt + draft.answer)["input_ids"])
    sample["n_visual_tokens"] = visual_tokens(processor, len(sample["frame_indices"]), video["height"], video["width"])
    return sample


@dataclass
class TasksStage(Stage):
    """Builds every registered task kind for each video that has a dense caption.

    Fields: ``model_id`` the processor used to count tokens (and the caption model unless ``caption_model``
    is set); ``caption_model`` whose captions and dense captions the samples use, and whose verdicts admit
    the model's grounding records (ground-truth records need none); ``frames`` the frame budget of
    whole-video samples; ``segment_frames`` that of segment samples; ``tasks`` which builders run (empty: all
    of them); ``batch_size`` videos per batch, whose inputs come in one query per table; ``include_rejected``
    also turns the caption model's grounding records that the gate rejected (or never checked) into samples,
    each with its verdict in ``passed_gate`` (the no-gate control of a round).

    A video is done for a choice of tasks once it has samples of one of them, unless grounding records that
    samples may use came in since (``done_ids``); ``tasks=("new_kind",)`` brings a new kind to videos built
    before it existed. Nothing is recorded as finished: a video without samples is looked at again, since an
    import or a verify pass may give it some.
    """

    model_id: str = ""
    caption_model: str = ""
    frames: FramePolicy = field(default_factory=lambda: FramePolicy(max_frames=32))
    segment_frames: FramePolicy = field(default_factory=lambda: FramePolicy(max_frames=16))
    tasks: tuple[str, ...] = ()
    batch_size: int = 32
    include_rejected: bool = False
    name = "tasks"
    inputs = ("videos", "segments", "captions", "dense_captions", "grounding", "verdicts")
    output = "samples"

    def setup(self, ds: Dataset) -> None:
        from model.loader import load_processor

        unknown = [t for t in self.tasks if t not in BUILDERS]
        if unknown:
            raise ValueError(f"unknown task kinds {unknown}; known: {', '.join(BUILDERS)}")
        self.processor = load_processor(self.model_id)
        self.split_of = assign_splits(ds, [v["video_id"] for v in self.items(ds)])  # stored: never moves

    @property
    def source_model(self) -> str:
        return model_key(self.caption_model or self.model_id)

    def items(self, ds: Dataset) -> list[dict]:
        """Videos with a dense caption from the caption model or grounding records samples may use (ground
        truth needs no caption); others wait instead of being marked done."""
        where, params = usable(self.source_model, self.include_rejected)
        ready = set(ds.sql(
            "SELECT video_id FROM dense_captions WHERE model = ? UNION SELECT g.video_id "
            f"FROM {_GROUNDING} WHERE {where}", [self.source_model, self.source_model, *params])
            .column("video_id").to_pylist())
        videos = [v for v in ds.rows("videos") if v["domain"] not in EVAL_ONLY_DOMAINS]
        if len(ready) < len(videos):
            log.warning("tasks: %d videos wait for their dense caption or grounding records (model %s)",
                        len(videos) - len(ready), self.source_model)
        return [dict(v, item_id=v["video_id"]) for v in videos if v["video_id"] in ready]

    @property
    def kinds(self) -> tuple[str, ...]:
        return self.tasks or tuple(BUILDERS)

    @property
    def variant(self) -> str:
        return f"{self.source_model}|{','.join(sorted(self.kinds))}"

    def done_ids(self, ds: Dataset) -> set[str]:
        """Videos with samples of the chosen kinds from this model (or from before samples named their model),
        less those with more usable grounding records than grounding samples (records imported or passed by
        `verify` since): those are built again, and only their new samples are written."""
        built = ds.sql("SELECT DISTINCT video_id FROM samples WHERE list_contains(?, task) "
                       "AND (model = ? OR model IS NULL)", [list(self.kinds), self.source_model])
        done = set(built.column("video_id").to_pylist())
        if "temporal_grounding" not in self.kinds:
            return done
        where, params = usable(self.source_model, self.include_rejected)
        behind = ds.sql(
            f"SELECT g.video_id FROM {_GROUNDING} LEFT JOIN (SELECT video_id, count(*) AS n FROM samples "
            f"WHERE task = 'temporal_grounding' AND {_MINE} GROUP BY video_id) n ON n.video_id = g.video_id "
            f"WHERE {where} GROUP BY g.video_id HAVING count(*) > any_value(coalesce(n.n, 0))",
            [self.source_model, self.source_model, *params])
        return done - set(behind.column("video_id").to_pylist())

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        stored = {k[0] for k in ds.keys("samples")}
        rows = []
        for inputs in fetch_video_rows(ds, batch, self.source_model, self.include_rejected):
            for name in self.kinds:
                drafts = BUILDERS[name](inputs)
                fresh = [d for d in drafts if sample_id(d, inputs.video) not in stored]
                rows += [self.sample(inputs.video, d) for d in fresh]
                stats.add(name, len(fresh))
                stats.add("samples_already_stored", len(drafts) - len(fresh))
        stats.add("samples", len(rows))
        return rows

    def sample(self, video: dict, draft: Draft, split: str | None = None) -> dict:
        policy = self.segment_frames if draft.segment_level else self.frames
        split = split or self.split_of.get(video["video_id"]) or assign_split(video["video_id"])
        return count_tokens(self.processor, clip_sample(video, draft, policy, split), draft, video)


# grounding records samples may use: ground truth, and model records whose verdict by the model is passed
_GROUNDING = "grounding g LEFT JOIN verdicts v ON v.record_id = g.record_id AND v.model = ?"
# grounding samples a model's tasks count as its own (param: the model): ground truth, its records', and
# those built before samples named their model
_MINE = "(origin = 'ground_truth' OR model = ? OR model IS NULL)"


# a record the ground stage once refused outright (a reversed span, swapped box corners) is no sample even
# without the gate, so the no-gate control trains on what it always did
WELL_FORMED = ("g.start_s < g.end_s AND coalesce(list_bool_and(list_transform(g.boxes, lambda b: 0 <= b.x1 AND "
               "b.x1 < b.x2 AND b.x2 <= 1000 AND 0 <= b.y1 AND b.y1 < b.y2 AND b.y2 <= 1000)), TRUE)")


def usable(model: str, include_rejected: bool = False) -> tuple[str, list]:
    """Grounding records that become samples, as SQL and its parameters: ground truth, and model records the
    gate passed, or with ``include_rejected`` also every well-formed record of the caption model."""
    if include_rejected:
        return ("(g.source = 'ground_truth' OR (g.source = 'model' AND (v.passed OR (g.model = ? AND "
                f"{WELL_FORMED}))))"), [model]
    return "(g.source = 'ground_truth' OR (g.source = 'model' AND v.passed))", []


def fetch_video_rows(ds: Dataset, videos: list[dict], model: str, include_rejected: bool = False) -> list[VideoRows]:
    """The builders' inputs for a batch of videos: one query per table, grouped by video."""
    ids = [v["video_id"] for v in videos]
    dense = {r["video_id"]: r["rendered"] for r in ds.sql(
        "SELECT video_id, rendered FROM dense_captions WHERE model = ? AND list_contains(?, video_id)",
        [model, ids]).to_pylist()}
    segments = _grouped(ds.sql(
        "SELECT c.video_id, s.start_frame, s.end_frame, s.segment_id, c.start_s, c.end_s, c.summary, c.details "
        "FROM captions c JOIN segments s USING (segment_id) WHERE c.model = ? AND list_contains(?, c.video_id) "
        "ORDER BY c.video_id, s.start_frame", [model, ids]).to_pylist())
    where, params = usable(model, include_rejected)
    grounding = _grouped(ds.sql(
        "SELECT g.video_id, g.record_id, g.segment_id, g.source, g.model, g.phrase, g.action, g.start_s, g.end_s, "
        "g.boxes, v.passed, s.start_frame AS segment_start_frame, s.end_frame AS segment_end_frame, "
        f"s.start_s AS segment_start_s, s.end_s AS segment_end_s FROM {_GROUNDING} "
        "LEFT JOIN segments s ON s.segment_id = g.segment_id "
        f"WHERE list_contains(?, g.video_id) AND {where} "
        "ORDER BY g.video_id, g.start_s, g.phrase, g.record_id", [model, ids, *params]).to_pylist())
    return [VideoRows(v, dense.get(v["video_id"]), segments.get(v["video_id"], []), grounding.get(v["video_id"], []),
                      model=model) for v in videos]


def _grouped(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["video_id"], []).append(r)
    return out
