"""Public annotations as ground truth: Charades-STA, ActivityNet Captions and HC-STVG.

Three steps, kept apart:

- parsers (pure: file text -> entries of annotations, each naming its line or entry);
- matching: an annotation's video name -> an ingested `videos` row (file stem of ``uri``/``uris``, or a map);
- placing: the annotation on that video's clock (spans clamped within a tolerance, boxes on the 0..1000 grid,
  checked by ``synth.grounding.validate_record``), then rows written with deterministic keys.

Formats and the facts relied on:

- ``charades-sta``: one line per sentence, ``VIDEO START END##sentence``, times in seconds.
- ``activitynet``: ActivityNet Captions JSON, ``{video: {"duration": d, "timestamps": [[s, e], ...],
  "sentences": [...]}}``, times in seconds. The ids look like ``v_QOlSCBRmfWY`` and match a file with or
  without the ``v_`` prefix. ``duration`` is not used: times are seconds on the video's clock and are never
  rescaled; only a span past the ingested video's end (beyond the tolerance) fails.
- ``hc-stvg``: HC-STVG v1/v2 JSON, ``{file name: {"bbox": [[x, y, w, h], ...], "st_frame": f, "img_num": n,
  "st_time", "ed_time", caption in "caption" (v1) or "English" (v2), frame size in "width"/"height" (v1) or
  "img_size" = [h, w] (v2)}}``. From the dataset's README (github.com/tzhhhh123/HC-STVG): boxes are the target
  person's, in pixels; ``st_frame`` is the first box's frame, counting from 1; ``img_num`` = fps x 20 (clips
  are 20 s), the frames ffmpeg extracted. The v2 field names and "one box per frame from ``st_frame`` on" are
  how TubeDETR's preprocessing reads the files (tube end = ``st_frame + len(bbox)``, excluded). So the tube
  spans frames ``[st_frame - 1, st_frame - 1 + len(bbox))`` (0-based) and that is the record's span;
  ``st_time``/``ed_time`` are not used (in the repository's sample they run past the last box). Frames are the
  video's own frames, so seconds = frame index / the ingested video's fps, not ``img_num / 20`` (a clip of the
  sample has ``img_num`` 501, no frame rate); ``img_num`` must agree with the video's frame count and the
  frame's aspect ratio with the video's, or the entry fails (another encode, or a crop). Boxes are clipped to
  the frame, put on the 0..1000 grid of the annotated frame size and kept at about ``BOXES_PER_S`` per second.

Failures: a malformed line or entry, an unknown video, a span outside the video (beyond ``TOLERANCE_S``) or a
box wholly outside its frame becomes a ``failures`` row (``stage = "import"``, ``item_id`` = file name and
line or entry); the rest imports.
"""

from __future__ import annotations

import csv
import json
import math
import posixpath
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from curation import CODE_VERSION, storage
from curation.store import KEYS, Dataset, stable_id
from curation.times import FrameSpan, frame_s
from synth.dense import render_dense
from synth.grounding import segment_at, segments_by_video, validate_record
from synth.sentences import split_charades, split_sentence

STAGE = "import"
FORMATS = ("charades-sta", "activitynet", "hc-stvg")
TOLERANCE_S = 1.0  # a span may pass the video's ends by this much; it is clamped, beyond it fails
BOXES_PER_S = 2.0  # dense per-frame tracks are kept at about this rate
REFERENCE_PREFIX = "reference:"  # dense_captions.model of an imported reference, e.g. "reference:activitynet"


class AnnotationError(ValueError):
    """An annotation that cannot be imported; the message names the bad value and the way out."""


class Malformed(AnnotationError):
    pass


class UnknownVideo(AnnotationError):
    pass


class OutsideVideo(AnnotationError):
    pass


class WrongVideo(AnnotationError):
    """The matched video is not the encode the annotation was made on (frame count, aspect ratio)."""


# --- parsed records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tube:
    """Per-frame boxes from ``start_frame`` (0-based) on, already on the 0..1000 grid; ``n_frames`` is the
    frame count of the video the annotation was made on; ``aspect`` its frame's width / height."""

    start_frame: int
    boxes: tuple[tuple[int, int, int, int], ...]
    n_frames: int
    aspect: float


@dataclass(frozen=True)
class Annotation:
    """One sentence about one video: seconds (``start_s``, ``end_s``) or a box ``tube`` in frames."""

    where: str  # "line 4", "entry v_x sentence 2": the item named in failures
    sentence: str
    phrase: str
    action: str
    start_s: float | None = None
    end_s: float | None = None
    tube: Tube | None = None

    @property
    def ident(self) -> str:
        """What identifies the annotation on its video, for the record id."""
        if self.tube:
            return f"frames {self.tube.start_frame}+{len(self.tube.boxes)}"
        return f"{self.start_s!r}-{self.end_s!r}"


@dataclass(frozen=True)
class Problem:
    """A line, entry or sentence that could not be read."""

    where: str
    error: AnnotationError
    raw: str = ""


@dataclass(frozen=True)
class Entry:
    """The annotations of one line or entry, about the video the file calls ``key``. ``reference``: together
    they are a reference dense caption of that video (ActivityNet Captions)."""

    where: str
    key: str
    annotations: tuple[Annotation | Problem, ...]
    raw: str = ""
    reference: bool = False


# --- parsers: file text -> entries ------------------------------------------------------------------------

CHARADES_FORM = "a Charades-STA line reads 'VIDEO START END##sentence' (times in seconds)"


def _number(text, name: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise Malformed(f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise Malformed(f"{name} {text!r} is not a finite number")
    return value


def _ordered(start: float, end: float) -> None:
    if not start < end:
        raise Malformed(f"span [{start}, {end}] does not end after it starts")


def _sentence(value, name: str = "sentence") -> str:
    if not isinstance(value, str) or not value.strip():
        raise Malformed(f"{name} {value!r} is empty or not text")
    return " ".join(value.split())


def parse_charades_sta(text: str) -> list[Entry | Problem]:
    """One entry per non-blank line, named ``line N`` (1-based)."""
    out: list[Entry | Problem] = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(_charades_line(line, f"line {n}"))
            except Malformed as e:
                out.append(Problem(f"line {n}", e, line))
    return out


def _charades_line(line: str, where: str) -> Entry:
    head, sep, sentence = line.partition("##")
    if not sep:
        raise Malformed(f"no '##' before the sentence; {CHARADES_FORM}")
    fields = head.split()
    if len(fields) != 3:
        raise Malformed(f"{len(fields)} fields before '##' ({head.strip()!r}), expected 3; {CHARADES_FORM}")
    start, end = _number(fields[1], "start"), _number(fields[2], "end")
    _ordered(start, end)
    sentence = _sentence(sentence)
    phrase, action = split_charades(sentence)
    return Entry(where, fields[0], (Annotation(where, sentence, phrase, action, start, end),), raw=line)


def _json_object(text: str, form: str) -> dict:
    """The file's top-level object; a file that is not one is refused whole (nothing to import line by line)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e}); {form} is one JSON object keyed by video") from None
    if not isinstance(data, dict):
        raise ValueError(f"the file holds a JSON {type(data).__name__}; {form} is one JSON object keyed by video")
    return data


def _entry_raw(entry) -> str:
    return json.dumps(entry)[:2000]


def parse_activitynet(text: str) -> list[Entry | Problem]:
    """One entry per video (``entry KEY``), one annotation per sentence (``entry KEY sentence K``, 1-based)."""
    out: list[Entry | Problem] = []
    for key, entry in _json_object(text, "ActivityNet Captions").items():
        where = f"entry {key}"
        try:
            out.append(_activitynet_entry(key, entry, where))
        except Malformed as e:
            out.append(Problem(where, e, _entry_raw(entry)))
    return out


def _activitynet_entry(key: str, entry, where: str) -> Entry:
    if not isinstance(entry, dict) or not isinstance(entry.get("timestamps"), list) or not isinstance(
            entry.get("sentences"), list):
        raise Malformed('needs "timestamps": [[start, end], ...] and "sentences": [...] (ActivityNet Captions)')
    stamps, sentences = entry["timestamps"], entry["sentences"]
    if len(stamps) != len(sentences) or not stamps:
        raise Malformed(f"{len(stamps)} timestamps for {len(sentences)} sentences; "
                        "each sentence needs one [start, end]")
    annotations = []
    for k, (stamp, sentence) in enumerate(zip(stamps, sentences), 1):
        at = f"{where} sentence {k}"
        try:
            annotations.append(_activitynet_event(stamp, sentence, at))
        except Malformed as e:
            annotations.append(Problem(at, e, json.dumps([stamp, sentence])))
    return Entry(where, key, tuple(annotations), raw=_entry_raw(entry), reference=True)


def _activitynet_event(stamp, sentence, where: str) -> Annotation:
    if not isinstance(stamp, list) or len(stamp) != 2:
        raise Malformed(f"timestamp {stamp!r} is not [start, end]")
    start, end = _number(stamp[0], "start"), _number(stamp[1], "end")
    _ordered(start, end)
    sentence = _sentence(sentence)
    phrase, action = split_sentence(sentence)
    return Annotation(where, sentence, phrase, action, start, end)


def parse_hcstvg(text: str) -> list[Entry | Problem]:
    """One entry per video file (``entry KEY``), one annotation (the caption and its box tube)."""
    out: list[Entry | Problem] = []
    for key, entry in _json_object(text, "HC-STVG").items():
        where = f"entry {key}"
        try:
            out.append(Entry(where, key, (_hcstvg_annotation(entry, where),), raw=_entry_raw(entry)))
        except Malformed as e:
            out.append(Problem(where, e, _entry_raw(entry)))
    return out


def _hcstvg_annotation(entry, where: str) -> Annotation:
    if not isinstance(entry, dict):
        raise Malformed(f"an HC-STVG entry is an object, not {type(entry).__name__}")
    sentence = _sentence(entry.get("caption", entry.get("English")), 'caption ("caption" or "English")')
    width, height = _frame_size(entry)
    st_frame, img_num = entry.get("st_frame"), entry.get("img_num")
    if not isinstance(st_frame, int) or st_frame < 1:
        raise Malformed(f"st_frame {st_frame!r} is not a frame number (they count from 1)")
    if not isinstance(img_num, int) or img_num < 1:
        raise Malformed(f"img_num {img_num!r} is not a frame count")
    bbox = entry.get("bbox")
    if not isinstance(bbox, list) or not bbox:
        raise Malformed(f"bbox {bbox!r} is not a list of [x, y, w, h] boxes")
    boxes = tuple(xywh_to_grid(b, width, height, k) for k, b in enumerate(bbox))
    phrase, action = split_sentence(sentence)
    return Annotation(where, sentence, phrase, action, tube=Tube(st_frame - 1, boxes, img_num, width / height))


def _frame_size(entry: dict) -> tuple[float, float]:
    """(width, height) of the annotated frames: "width"/"height" (v1) or "img_size" = [height, width] (v2)."""
    if "img_size" in entry:
        size = entry["img_size"]
        if not (isinstance(size, list) and len(size) == 2):
            raise Malformed(f"img_size {size!r} is not [height, width]")
        height, width = size
    else:
        width, height = entry.get("width"), entry.get("height")
    width, height = _number(width, "width"), _number(height, "height")
    if width <= 0 or height <= 0:
        raise Malformed(f"frame size {width} x {height} is not positive")
    return width, height


def xywh_to_grid(box, width: float, height: float, k: int = 0) -> tuple[int, int, int, int]:
    """``[x, y, w, h]`` in pixels -> ``(x1, y1, x2, y2)`` on the 0..1000 grid of the frame, clipped to it."""
    if not isinstance(box, list) or len(box) != 4:
        raise Malformed(f"box {k} {box!r} is not [x, y, w, h]")
    x, y, w, h = (_number(v, f"box {k} value") for v in box)
    x1, x2 = sorted(_grid(v, width) for v in (x, x + w))
    y1, y2 = sorted(_grid(v, height) for v in (y, y + h))
    if w <= 0 or h <= 0 or x1 >= x2 or y1 >= y2:
        raise Malformed(f"box {k} [x, y, w, h] = {box} has no area inside the {width:g} x {height:g} frame; "
                        "fix or drop that box")
    return x1, y1, x2, y2


def _grid(v: float, extent: float) -> int:
    return min(1000, max(0, int(round(v / extent * 1000))))


PARSERS = {"charades-sta": parse_charades_sta, "activitynet": parse_activitynet, "hc-stvg": parse_hcstvg}


# --- matching annotations to ingested videos ------------------------------------------------------------------


def load_map(path: str | Path) -> dict[str, tuple[str, str]]:
    """A ``--map`` CSV: ``annotation_id,video_id`` or ``annotation_id,uri`` -> {annotation id: (column, value)}.
    A relative uri is relative to the CSV's folder. The CSV may be a path or a URL."""
    path = storage.location(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        target = next((c for c in ("video_id", "uri") if c in columns), None)
        if "annotation_id" not in columns or target is None:
            raise ValueError(f"{path}: columns {sorted(columns)}; a map needs annotation_id and video_id (or uri)")
        out: dict[str, tuple[str, str]] = {}
        for n, row in enumerate(reader, 2):
            key, value = (row.get("annotation_id") or "").strip(), (row.get(target) or "").strip()
            if not key or not value:
                raise ValueError(f"{path} line {n}: empty annotation_id or {target}")
            if target == "uri":
                value = beside(path, value)
            if out.get(key, (target, value)) != (target, value):
                raise ValueError(f"{path} line {n}: {key} is mapped twice, to {out[key][1]} and {value}")
            out[key] = (target, value)
    return out


def beside(path, uri: str) -> str:
    """``uri`` as written in the file at ``path``: a URL or an absolute path as it is, a relative one taken from
    that file's folder (on object storage too, ``..`` included)."""
    if storage.is_url(uri):
        return uri
    if not storage.is_url(str(path)):
        return str((Path(path).parent / Path(uri).expanduser()).resolve())
    if Path(uri).expanduser().is_absolute():
        return str(Path(uri).expanduser())
    scheme, folder = str(path.parent).split("://", 1)
    return f"{scheme}://{posixpath.normpath(posixpath.join(folder, uri))}"


def name_aliases(key: str, fmt: str) -> list[str]:
    """Names a file may carry for an annotation id: the id, its stem, and for ActivityNet with or without v_."""
    names = [key, Path(key).stem]
    if fmt == "activitynet":
        names += [n[2:] if n.startswith("v_") else "v_" + n for n in names]
    return list(dict.fromkeys(n for n in names if n))


class VideoIndex:
    """Ingested videos by file stem (of ``uri`` and every ``uris`` entry), by resolved path, and by id."""

    def __init__(self, videos: list[dict], mapping: dict[str, tuple[str, str]] | None = None):
        self.by_id = {v["video_id"]: v for v in videos}
        self.by_path = {u: v for v in videos for u in [v["uri"], *(v.get("uris") or [])]}
        self.by_stem: dict[str, set[str]] = {}
        for path, v in self.by_path.items():
            self.by_stem.setdefault(Path(path).stem, set()).add(v["video_id"])
        self.mapping = mapping or {}

    def find(self, key: str, fmt: str) -> dict:
        names = name_aliases(key, fmt)
        mapped = next((n for n in names if n in self.mapping), None)
        if mapped is not None:
            return self._mapped(key, *self.mapping[mapped])
        for name in names:
            ids = self.by_stem.get(name, set())
            if len(ids) > 1:
                raise UnknownVideo(f"{len(ids)} ingested videos are named {name} ({', '.join(sorted(ids))}); "
                                   "say which with --map CSV (annotation_id,video_id)")
            if ids:
                return self.by_id[next(iter(ids))]
        raise UnknownVideo(f"no ingested video is named {' or '.join(names)} (file stem of uri or uris); ingest "
                           "it, or give --map CSV with annotation_id,video_id or annotation_id,uri")

    def _mapped(self, key: str, column: str, value: str) -> dict:
        video = self.by_id.get(value) if column == "video_id" else self.by_path.get(value)
        if video is None:
            raise UnknownVideo(f"--map sends {key} to {column} {value}, which is not an ingested video; "
                               "check the map or ingest that file")
        return video


# --- placing annotations on the video's clock ---------------------------------------------------------------


def clamp_span(start_s: float, end_s: float, duration_s: float, tolerance_s: float) -> tuple[float, float]:
    """The span clamped into ``[0, duration_s]`` when it passes the ends by at most ``tolerance_s``."""
    if start_s < -tolerance_s or end_s > duration_s + tolerance_s:
        raise OutsideVideo(f"span [{start_s:.3f}, {end_s:.3f}] s is outside the video's [0, {duration_s:.3f}] s by "
                           f"more than the tolerance {tolerance_s:g} s; check that the file is the annotated "
                           "video (--map), or raise --tolerance-s")
    start_s, end_s = max(0.0, start_s), min(duration_s, end_s)
    if not start_s < end_s:
        raise OutsideVideo(f"span [{start_s:.3f}, {end_s:.3f}] s has nothing left inside the video's "
                           f"[0, {duration_s:.3f}] s")
    return start_s, end_s


def _tube_on_video(tube: Tube, video: dict, tolerance_s: float, boxes_per_s: float) -> tuple[float, float, list]:
    """Seconds = frame index / the video's fps; boxes kept every ``fps / boxes_per_s`` frames."""
    fps = video["fps"]
    if abs(tube.n_frames - video["n_frames"]) > tolerance_s * fps:
        raise WrongVideo(f"img_num {tube.n_frames} frames, but the video has {video['n_frames']} at {fps:g} fps; "
                         "its frame numbers do not fit this encode: import against the annotated clip")
    width, height = (video["height"], video["width"]) if video.get("rotation") in (90, 270) else (
        video["width"], video["height"])
    if abs(tube.aspect / (width / height) - 1) > 0.02:
        raise WrongVideo(f"annotated frames have aspect ratio {tube.aspect:.3f}, the video {width}x{height} "
                         f"{width / height:.3f}; boxes would land elsewhere in a cropped or padded encode")
    span = FrameSpan(tube.start_frame, tube.start_frame + len(tube.boxes), fps)
    step = max(1, round(fps / boxes_per_s))
    boxes = [dict(t_s=frame_s(tube.start_frame + k, fps), x1=b[0], y1=b[1], x2=b[2], y2=b[3])
             for k, b in enumerate(tube.boxes) if k % step == 0]
    return span.start_s, span.end_s, boxes


def place(a: Annotation, video: dict, tolerance_s: float = TOLERANCE_S,
          boxes_per_s: float = BOXES_PER_S) -> tuple[float, float, list[dict]]:
    """(start_s, end_s, boxes) of an annotation on the video's clock, checked like a model's record."""
    if a.tube:
        start_s, end_s, boxes = _tube_on_video(a.tube, video, tolerance_s, boxes_per_s)
    else:
        start_s, end_s, boxes = a.start_s, a.end_s, []
    start_s, end_s = clamp_span(start_s, end_s, video["duration_s"], tolerance_s)
    boxes = [b for b in boxes if start_s <= b["t_s"] <= end_s]
    boxes = validate_record(dict(phrase=a.phrase, start_s=start_s, end_s=end_s, boxes=boxes), 0.0, video["duration_s"])
    return start_s, end_s, boxes


# --- rows -----------------------------------------------------------------------------------------------------


def grounding_row(fmt: str, a: Annotation, video: dict, span: tuple[float, float, list], segment_id: str) -> dict:
    start_s, end_s, boxes = span
    return dict(record_id=stable_id(STAGE, fmt, video["video_id"], a.sentence, a.ident), video_id=video["video_id"],
                segment_id=segment_id, phrase=a.phrase, action=a.action, start_s=start_s, end_s=end_s, boxes=boxes,
                source="ground_truth", model=fmt, code_version=CODE_VERSION)


def reference_row(fmt: str, video: dict, events: list[tuple[Annotation, float, float]]) -> dict:
    """A reference dense caption: the events in time order, rendered as the model's dense captions are."""
    entries = sorted((dict(start_s=s, end_s=e, summary=a.sentence, details="") for a, s, e in events),
                     key=lambda x: (x["start_s"], x["end_s"]))
    return dict(video_id=video["video_id"], model=REFERENCE_PREFIX + fmt, prompt_version=None, entries=entries,
                rendered=render_dense(entries, "seconds"), renderer="seconds", storyline=None,
                code_version=CODE_VERSION)


def failure_row(file_name: str, where: str, error: BaseException, raw: str = "") -> dict:
    item = f"{file_name}:{where}"
    return dict(stage=STAGE, variant="", item_id=item, error_type=type(error).__name__, message=f"{item}: {error}",
                raw=raw[:20000], created_at=time.time())


# --- the import -----------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    fmt: str
    path: Path
    entries: int = 0
    written: Counter = field(default_factory=Counter)  # rows new in each table
    stored: Counter = field(default_factory=Counter)  # rows whose key was already stored (an earlier import)
    failures: list[dict] = field(default_factory=list)  # this file's failures rows, new or already stored


def import_annotations(ds: Dataset, fmt: str, path: str | Path, mapping: dict[str, tuple[str, str]] | None = None,
                       tolerance_s: float = TOLERANCE_S, boxes_per_s: float = BOXES_PER_S) -> ImportResult:
    """Read one annotation file, match its entries to ingested videos and write grounding rows (and reference
    dense captions); bad lines and entries become failures rows. Importing the same file again writes nothing."""
    if fmt not in PARSERS:
        raise ValueError(f"format {fmt!r} is unknown; choose one of {', '.join(FORMATS)}")
    if tolerance_s < 0:
        raise ValueError(f"tolerance_s {tolerance_s} must be >= 0")
    path = storage.location(path)
    try:
        parsed = PARSERS[fmt](path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such annotation file") from None
    videos = ds.rows("videos")
    if not videos:
        raise ValueError(f"{ds.root} has no ingested videos; run densevid ingest --videos DIR --data {ds.root} first")
    index = VideoIndex(videos, mapping)
    result = ImportResult(fmt, path, entries=len(parsed))

    def fail(where: str, error: BaseException, raw: str = "") -> None:
        result.failures.append(failure_row(path.name, where, error, raw))

    matched = [(item, _match(index, item, fmt)) for item in parsed]  # in file order, so are the failures
    ids = sorted({v["video_id"] for _, v in matched if isinstance(v, dict)})
    segments = segments_by_video(ds, ids) if ids else {}
    rows: dict[str, list[dict]] = {"grounding": [], "dense_captions": []}
    for entry, video in matched:
        if isinstance(entry, Problem) or isinstance(video, UnknownVideo):
            fail(entry.where, entry.error if isinstance(entry, Problem) else video, entry.raw)
            continue
        grounding, dense = entry_rows(fmt, entry, video, segments.get(video["video_id"], []), fail, tolerance_s,
                                      boxes_per_s)
        rows["grounding"] += grounding
        rows["dense_captions"] += dense
    for table, table_rows in [*rows.items(), ("failures", result.failures)]:
        result.written[table], result.stored[table] = write_new(ds, table, table_rows)
    ds.refresh_catalog()
    return result


def entry_rows(fmt: str, entry: Entry, video: dict, segments: list[dict], fail, tolerance_s: float,
               boxes_per_s: float) -> tuple[list[dict], list[dict]]:
    """One entry's grounding rows and, for a reference entry whose every event placed, its dense caption;
    ``fail(where, error, raw)`` hears about the rest."""
    grounding, events = [], []
    for a in entry.annotations:
        if isinstance(a, Problem):
            fail(a.where, a.error, a.raw)
            continue
        try:
            span = place(a, video, tolerance_s, boxes_per_s)
        except ValueError as e:
            fail(a.where, e, entry.raw)
            continue
        grounding.append(grounding_row(fmt, a, video, span, segment_at(segments, (span[0] + span[1]) / 2)))
        events.append((a, span[0], span[1]))
    if not entry.reference:
        return grounding, []
    if len(events) == len(entry.annotations):
        return grounding, [reference_row(fmt, video, events)]
    fail(f"{entry.where} reference", AnnotationError(
        f"reference dense caption not written: {len(entry.annotations) - len(events)} of its "
        f"{len(entry.annotations)} sentences failed (see their rows); a reference missing events would score a "
        "dense caption against the wrong story"), entry.raw)
    return grounding, []


def _match(index: VideoIndex, item: Entry | Problem, fmt: str) -> dict | UnknownVideo | None:
    """The ingested video an entry is about, or why there is none (None for a line that could not be read)."""
    if isinstance(item, Problem):
        return None
    try:
        return index.find(item.key, fmt)
    except UnknownVideo as e:
        return e


def write_new(ds: Dataset, table: str, rows: list[dict]) -> tuple[int, int]:
    """Write rows atomically (``Dataset.write`` skips stored keys); returns (new keys, keys already stored)."""
    keys = {tuple(r[c] for c in KEYS[table]) for r in rows}
    stored = len(keys & ds.keys(table))
    ds.write(table, rows)
    return len(keys) - stored, stored
