"""A mixture out of densevid, for other trainers: Qwen's fine-tune JSON, LLaMA-Factory, ms-swift, HF datasets.

Every manifest row becomes one record per format (an upsampled sample's copies, column ``repeat``, each
become one; they share one clip file). A sample that shows part of its video is cut to its own clip
(``mixtures.clips``), and every time in its messages is moved to the clip's clock
(``curation.times.rebase_times``, offset ``clip_start_frame / fps``), so the times in the text sit on the
clock of the ``<t seconds>`` the trainer's processor writes for the clip file. A whole-video sample keeps
its source file and its times.

Layout of the output folder ``OUT``::

    clips/<video_id>/<start>-<end>.mp4   hard links to <dataset>/clips/... (copies across file systems)
    qwen.json, qwen_data_dict.py         Qwen3-VL qwen-vl-finetune: annotations + the data_dict entry
    llamafactory.json, dataset_info.json LLaMA-Factory sharegpt (messages + videos) and its dataset entry
    swift.jsonl                          ms-swift: messages + videos
    data/<split>-00000-of-00001.parquet  HF datasets, features embedded; README.md declares them
    README.md                            with hf: the dataset card (configs, features, which root each trainer needs)

Clips are referenced relative to ``OUT`` and source videos by absolute path. A row that cannot be
exported (unreadable source, failed cut, a time outside its clip) becomes a ``failures`` row with stage
``export``; the rest goes on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from curation import storage
from curation.atomic import atomic_path, atomic_write_text
from curation.chats import read_messages
from curation.progress import progress as progress_bar
from curation.stage import Stage, Stats, fail_item
from curation.store import Dataset
from curation.times import FrameSpan, rebase_times
from curation.video import VideoError, probe
from mixtures.balance import read_manifest
from mixtures.clips import ClipEncoding, clip_path, ensure_clip, link_or_copy

FORMATS = ("qwen", "llamafactory", "swift", "hf")
VIDEO_TAG = "<video>"


class ExportStage(Stage):
    """Export is no table stage (it writes a folder outside the dataset); this names its failures rows."""

    name = "export"


@dataclass
class Item:
    """One manifest row, ready to write: the video as the export refers to it and the rebased chat."""

    row: dict
    video: str  # relative to the export folder (a cut clip) or absolute (the source video)
    clip: bool
    offset_s: float  # subtracted from every time of the messages (0 for a whole video)
    duration_s: float
    n_frames: int
    messages: list[dict]  # transformers chat form: content is a list of {"type", "text"}


@dataclass
class ExportResult:
    out: Path
    mixture: Path
    dataset: Path
    formats: tuple[str, ...]
    rows_in: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    clips_cut: int = 0
    clips_reused: int = 0
    failures: list[dict] = field(default_factory=list)
    stats: Stats = field(default_factory=lambda: Stats("export"))
    qwen_snippet: str = ""

    @property
    def n_failed(self) -> int:
        return len(self.failures)


def parse_formats(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"qwen,hf"`` -> ("qwen", "hf"); every unknown name is reported at once."""
    words = [w.strip() for w in (text.split(",") if isinstance(text, str) else text) if w.strip()]
    bad = [w for w in words if w not in FORMATS]
    if bad or not words:
        raise ValueError(f"unknown export format(s) {', '.join(map(repr, bad)) or '(none given)'}; choose from "
                         f"{', '.join(FORMATS)} (comma-separated for several, e.g. qwen,hf)")
    return tuple(dict.fromkeys(words))


def _resolved(path):
    return path if storage.is_url(str(path)) else Path(path).expanduser().resolve()


def dataset_root(mixture: Path) -> Path:
    """``<dataset>/mixtures/<name>/`` -> ``<dataset>``; balance.json's "dataset" for a mixture moved elsewhere."""
    mixture = _resolved(mixture)
    if mixture.parent.name == "mixtures":
        return mixture.parent.parent
    balance = mixture / "balance.json"
    if balance.exists():
        root = json.loads(balance.read_text()).get("dataset")
        if root and Path(root).is_dir():
            return Path(root)
    raise ValueError(f"{mixture}: cannot tell its dataset; a mixture lives at <dataset>/mixtures/<name>/ "
                     "(or names it in balance.json's \"dataset\")")


def read_rows(mixture: Path) -> list[dict]:
    rows = read_manifest(mixture)
    for r in rows:
        r["repeat"] = int(r.get("repeat") or 0)
    return rows


def export_mixture(mixture: str | Path, out: str | Path, formats=FORMATS, progress: bool = True,
                   encoding: ClipEncoding = ClipEncoding()) -> ExportResult:
    """Export every row of a mixture in each of ``formats``; failures become rows, the rest is written."""
    mixture = _resolved(storage.location(mixture))
    formats = parse_formats(formats)
    rows = read_rows(mixture)
    root = dataset_root(mixture)
    ds = Dataset(root)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(out, mixture, root, formats, rows_in=len(rows))
    stage, stats = ExportStage(), result.stats
    media: dict[tuple, tuple[str, bool] | Exception] = {}  # per clip (or source): path written, or the error
    failed: dict[str, Exception] = {}
    items: list[Item] = []
    for row in progress_bar(rows, desc="export", unit="row", enabled=progress):
        sid = row["sample_id"]
        if sid in failed:
            stats.add("rows_left_out")
            continue
        try:
            items.append(_item(row, root, out, media, stats, encoding, formats))
        except Exception as e:
            failed[sid] = e
            fail_item(stage, ds, stats, sid, e)
            result.failures.append(dict(item_id=sid, error_type=type(e).__name__, message=str(e)))
            stats.add("rows_left_out")
    name = _dataset_name(mixture.name)
    writers = {"qwen": _write_qwen, "llamafactory": _write_llamafactory, "swift": _write_swift, "hf": _write_hf}
    for fmt in formats:
        result.files[fmt] = writers[fmt](items, out, name, result)
        result.rows[fmt] = len(items)
    if "hf" in formats:  # the dataset card: datasets reads its configs and features
        result.files["hf"].append(_write_readme(out, name, result, items))
    result.clips_cut, result.clips_reused = stats.counts["clips_cut"], stats.counts["clips_reused"]
    closed = ds.resolve(stage.name, {it.row["sample_id"] for it in items})  # failed in an earlier export
    if failed or closed:
        ds.refresh_catalog()
    return result


# --- one row ----------------------------------------------------------------------------------------------


def _item(row: dict, root: Path, out: Path, media: dict, stats: Stats, encoding: ClipEncoding,
          formats: tuple[str, ...]) -> Item:
    fps = float(row["fps"])
    start, end, n_video = int(row["clip_start_frame"]), int(row["clip_end_frame"]), int(row["video_n_frames"])
    if not 0 <= start < end <= n_video:
        raise ValueError(f"sample {row['sample_id']}: clip frames [{start}, {end}) do not fit its video of "
                         f"{n_video} frames")
    is_clip = start > 0 or end < n_video
    span = FrameSpan(start, end, fps) if is_clip else FrameSpan(0, n_video, fps)
    offset = span.start_s if is_clip else 0.0
    messages = chat(row["messages"])
    if is_clip:  # before cutting: a text that does not fit its clip costs no encoding
        messages = [dict(m, content=[dict(c, text=rebase_times(c["text"], offset, span.end_s - span.start_s))
                                     if c["type"] == "text" else c for c in m["content"]]) for m in messages]
    flat_turns(messages)  # one video, no stray placeholders: checked once for every format
    if "qwen" in formats:
        qwen_turns(messages)
    key = (row["video_id"], start, end) if is_clip else ("source", row["uri"])
    if key not in media:
        try:
            media[key] = _clip(row, root, out, start, end, fps, stats, encoding) if is_clip else _source(row, out)
        except Exception as e:
            media[key] = e
    if isinstance(media[key], Exception):
        raise media[key]
    video = media[key]
    stats.add("rows_exported")
    return Item(row, video, is_clip, offset, span.end_s - span.start_s, span.n_frames, messages)


def _clip(row, root: Path, out: Path, start: int, end: int, fps: float, stats: Stats, encoding) -> str:
    cached = clip_path(root, row["video_id"], start, end)
    if not storage.exists(cached) and not storage.exists(row["uri"]):
        raise VideoError(f"{row['uri']}: source video not found (moved or deleted?); clip [{start}, {end}) of "
                         f"video {row['video_id']} cannot be cut")
    cut = ensure_clip(row["uri"], cached, start, end, fps, encoding)
    stats.add("clips_cut" if cut else "clips_reused")
    rel = f"clips/{row['video_id']}/{cached.name}"
    link_or_copy(cached, out / rel)
    return rel


def _source(row, out: Path) -> str:
    if storage.is_url(row["uri"]):  # a trainer reads files: the object is copied into the export
        rel = f"videos/{row['video_id']}{Path(row['uri']).suffix}"
        link_or_copy(storage.location(row["uri"]), out / rel)
        return rel
    uri = Path(row["uri"]).expanduser()
    if not uri.is_file():
        raise VideoError(f"{uri}: source video not found (moved or deleted?)")
    p = probe(uri)  # raises VideoError naming the file when it cannot be read
    if p.n_frames < int(row["video_n_frames"]):
        raise VideoError(f"{uri}: has {p.n_frames} frames, the sample shows {row['video_n_frames']}; the file "
                         "changed since it was ingested")
    return str(uri.resolve())


def chat(messages: str | list) -> list[dict]:
    """The stored chat (JSON text) in transformers' form: each content a list of {"type", "text"} items."""
    return [{"role": m["role"], "content": [{"type": c["type"], "text": c.get("text")} for c in m["content"]]}
            for m in read_messages(messages)]


def flat_turns(messages: list[dict], video_tag: str = VIDEO_TAG) -> list[dict]:
    """{"role", "content": text} turns with ``video_tag`` where the video goes (the sharegpt-style layout)."""
    turns = []
    for m in messages:
        parts = []
        for c in m["content"]:
            if c["type"] == "video":
                parts.append(video_tag)
            elif c["type"] == "text":
                if "<video>" in c["text"] or "<image>" in c["text"]:
                    raise ValueError(f"a {m['role']} text holds a literal <video>/<image> tag, which trainers read as "
                                     f"a placeholder: {c['text'][:80]!r}")
                parts.append(c["text"])
            else:
                raise ValueError(f"content type {c['type']!r} cannot be exported (only one video and text)")
        turns.append({"role": m["role"], "content": "".join(parts)})
    if sum(t["content"].count(video_tag) for t in turns) != 1:
        raise ValueError("a sample must show exactly one video")
    return turns


# --- writers ------------------------------------------------------------------------------------------------


def _dataset_name(mixture_name: str) -> str:
    return "densevid_" + re.sub(r"\W+", "_", mixture_name).strip("_").lower()


def _atomic_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text)


def _json(data) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def qwen_turns(messages: list[dict]) -> list[dict]:
    """Qwen3-VL qwen-vl-finetune turns: [{"from": "human"|"gpt", "value"}], the video placeholder as
    ``<video>\\n`` before the human text."""
    convs = []
    for t in flat_turns(messages, VIDEO_TAG + "\n"):
        if t["role"] not in ("user", "assistant"):
            raise ValueError(f"Qwen's fine-tune format has only human and gpt turns, not {t['role']!r}")
        convs.append({"from": "human" if t["role"] == "user" else "gpt", "value": t["content"]})
    return convs


def qwen_record(item: Item) -> dict:
    return {"video": item.video, "conversations": qwen_turns(item.messages)}


def _write_qwen(items, out: Path, name: str, result: ExportResult) -> list[Path]:
    ann = _atomic_text(out / "qwen.json", _json([qwen_record(it) for it in items]))
    const = name.upper()
    result.qwen_snippet = (
        "# Qwen3-VL qwen-vl-finetune: paste into qwenvl/data/__init__.py, then train with --dataset_use " + name + "\n"
        f"{const} = {{\n"
        f"    \"annotation_path\": {json.dumps(str(ann))},\n"
        f"    \"data_path\": {json.dumps(str(out))},  # clip paths in the annotations are relative to it\n"
        "}\n"
        f"data_dict[{json.dumps(name)}] = {const}\n")
    return [ann, _atomic_text(out / "qwen_data_dict.py", result.qwen_snippet)]


def sharegpt_record(item: Item) -> dict:
    """LLaMA-Factory sharegpt in openai-style keys, and ms-swift's standard layout: messages + videos."""
    return {"messages": flat_turns(item.messages), "videos": [item.video]}


def llamafactory_entry(name: str) -> dict:
    return {name: {"file_name": "llamafactory.json", "formatting": "sharegpt",
                   "columns": {"messages": "messages", "videos": "videos"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant", "system_tag": "system"}}}


def _write_llamafactory(items, out: Path, name: str, result) -> list[Path]:
    data = _atomic_text(out / "llamafactory.json", _json([sharegpt_record(it) for it in items]))
    return [data, _atomic_text(out / "dataset_info.json", _json(llamafactory_entry(name)))]


def _write_swift(items, out: Path, name: str, result) -> list[Path]:
    lines = "".join(json.dumps(sharegpt_record(it), ensure_ascii=False) + "\n" for it in items)
    return [_atomic_text(out / "swift.jsonl", lines)]


def hf_features():
    from datasets import Features, List, Value

    text = Value("string")
    return Features({
        "sample_id": text, "repeat": Value("int32"), "task": text, "domain": text, "split": text, "video_id": text,
        "video": text, "clip": Value("bool"), "source_uri": text, "source_start_s": Value("float64"),
        "source_end_s": Value("float64"), "time_offset_s": Value("float64"), "fps": Value("float64"),
        "n_frames": Value("int64"),
        "messages": List({"role": text, "content": List({"type": text, "text": text})}),
    })


def hf_record(item: Item) -> dict:
    r = item.row
    return {"sample_id": r["sample_id"], "repeat": r["repeat"], "task": r["task"], "domain": r["domain"],
            "split": r["split"], "video_id": r["video_id"], "video": item.video, "clip": item.clip,
            "source_uri": r["uri"], "source_start_s": item.offset_s, "source_end_s": item.offset_s + item.duration_s,
            "time_offset_s": item.offset_s, "fps": float(r["fps"]), "n_frames": item.n_frames,
            "messages": item.messages}


def _write_hf(items, out: Path, name: str, result: ExportResult) -> list[Path]:
    from datasets import Dataset as HFDataset

    by_split: dict[str, list[dict]] = {}
    for it in items:
        by_split.setdefault(it.row["split"] or "train", []).append(hf_record(it))
    data = out / "data"
    data.mkdir(exist_ok=True)
    written = []
    for split, records in sorted(by_split.items()):
        path = data / f"{split}-00000-of-00001.parquet"
        with atomic_path(path) as tmp:
            _quiet_parquet(HFDataset.from_list(records, features=hf_features()), tmp)
        written.append(path)
    for stale in data.glob("*.parquet"):  # splits of an earlier export into the same folder
        if stale not in written:
            stale.unlink()
    result.stats.counts.update({f"hf_{s}": len(r) for s, r in by_split.items()})
    return written


def _quiet_parquet(table, path: Path) -> None:
    """datasets' to_parquet without its one-batch progress bar under ours."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        table.to_parquet(str(path))
    finally:
        if was_on:
            datasets.enable_progress_bars()


def _card_yaml(items) -> str:
    import yaml

    splits = sorted({it.row["split"] or "train" for it in items})
    meta = {
        "configs": [{"config_name": "default", "data_files": [
            {"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}],
        "dataset_info": {"features": hf_features()._to_yaml_list()},
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _write_readme(out: Path, name: str, result: ExportResult, items) -> Path:
    head = _card_yaml(items) if "hf" in result.formats and items else ""
    lines = [f"# {name}", "",
             f"Mixture `{result.mixture.name}` of the densevid dataset at `{result.dataset}`: {len(items)} rows "
             "(an upsampled sample appears once per copy).", "",
             "A sample that shows part of its video is cut to `clips/<video_id>/<start>-<end>.mp4` (frame k of the "
             "clip is source frame start + k, same fps) and every time in its texts is moved to the clip's clock "
             "(source time minus start / fps). Whole-video samples point at their source file (absolute path) with "
             "times unchanged. Clip paths are relative to this folder.", ""]
    roots = {
        "qwen": "Qwen3-VL qwen-vl-finetune: `qwen.json`; register `qwen_data_dict.py` in `qwenvl/data/__init__.py` "
                "(`data_path` is this folder).",
        "llamafactory": f"LLaMA-Factory: `dataset_dir` = this folder, `dataset: {name}` (`media_dir` defaults to "
                        "`dataset_dir`; set it to this folder if you change `dataset_dir`).",
        "swift": "ms-swift: `--dataset swift.jsonl`, run from this folder or set `ROOT_IMAGE_DIR` to it.",
        "hf": "HF datasets: `datasets.load_dataset(\"<this folder>\")`; `video` is relative to this folder unless "
              "absolute; `messages` is the chat in transformers' form.",
    }
    lines += [f"- {roots[f]}" for f in result.formats]
    return _atomic_text(out / "README.md", head + "\n".join(lines) + "\n")
