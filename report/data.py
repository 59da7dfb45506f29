"""What each page of the report lists, read from the tables. Pure data: no HTML here.

Every page is a plain dict (JSON-able), so a rerun can tell by its digest whether a page changed, and the
tests compare what a page lists with what the tables hold.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from curation.chats import read_messages
from curation.store import Dataset, stable_id
from curation.times import frame_s, group_times, render_time
from mixtures.balance import read_manifest

PAGE_SIZE = 200          # rows per page of the video list
TIMELINE_THUMBS = 10     # thumbnails along a video's timeline strip
MAX_BOXES_SHOWN = 12     # boxes drawn per grounding record (evenly picked when it has more)
EXAMPLES_PER_TASK = 2    # example samples per task on a mixture page
MAX_FAILURE_EXAMPLES = 3  # examples per (stage, error type) on the overview

_COLUMNS = {
    "videos": ["video_id", "uri", "domain", "source", "duration_s", "fps", "n_frames", "width", "height", "codec"],
    "segments": ["segment_id", "video_id", "idx", "start_s", "end_s", "start_frame", "end_frame", "detector",
                 "cut_score", "motion", "luma"],
    "captions": ["segment_id", "model", "prompt_version", "video_id", "summary", "details"],
    "dense_captions": ["video_id", "model", "prompt_version", "entries", "rendered"],
    "grounding": ["record_id", "video_id", "segment_id", "phrase", "action", "start_s", "end_s", "boxes", "source",
                  "model"],
    "verdicts": ["record_id", "model", "passed", "form_ok", "caption_ok", "cycle_ok", "reasons", "cycle_tiou"],
    "samples": ["sample_id", "task", "video_id", "clip_start_s", "clip_end_s", "clip_start_frame", "clip_end_frame",
                "frame_indices", "fps", "messages", "domain", "split", "n_text_tokens", "n_visual_tokens"],
}


def page_name(key: str) -> str:
    """A file name for a key from the data: the key itself when it is a plain id, else a hash of it."""
    if re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}", key or ""):
        return key
    return "x-" + stable_id("page", key)


def frame_at(t_s: float, fps: float, n_frames: int) -> int:
    """The frame on screen at ``t_s`` on the video's clock: frame i shows from ``frame_s(i)`` until the next
    one starts (the inverse of ``curation.times.frame_s``), clamped to the video's frames."""
    i = int(math.floor(t_s * fps + 1e-6))
    return max(0, min(int(n_frames) - 1, i))


def short_model(model: str) -> str:
    """The last part of a model path or hub id, for column headers (the full id goes in a tooltip)."""
    model = (model or "").rstrip("/")
    return model.rsplit("/", 1)[-1] or model or "(none)"


def file_name(uri: str) -> str:
    return (uri or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or uri or ""


def histogram(values: list[float], bins: int = 10) -> list[dict]:
    """Equal-width bins over the values' range: [{lo, hi, n}]; empty for no values."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return []
    lo, hi = min(vals), max(vals)
    if hi <= lo:
        return [{"lo": lo, "hi": hi, "n": len(vals)}]
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in vals:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return [{"lo": lo + k * width, "hi": lo + (k + 1) * width, "n": n} for k, n in enumerate(counts)]


# --- reading the tables ------------------------------------------------------------------------------------


@dataclass
class Tables:
    """The rows the report shows, grouped by video."""

    counts: dict[str, int]
    videos: list[dict]
    segments: dict[str, list[dict]] = field(default_factory=dict)
    captions: dict[str, list[dict]] = field(default_factory=dict)
    dense: dict[str, list[dict]] = field(default_factory=dict)
    grounding: dict[str, list[dict]] = field(default_factory=dict)
    verdicts: list[dict] = field(default_factory=list)
    samples: dict[str, list[dict]] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)  # open ones only
    quality: list[dict] | None = None
    resolved_failures: int = 0  # failures a later run fixed (kept in the failures table)
    runs: list[dict] = field(default_factory=list)  # the last run of each stage and variant
    finished: dict[tuple[str, str], int] = field(default_factory=dict)  # (stage, variant) -> items with nothing to write

    def __post_init__(self):
        self.verdicts_by_record = _verdicts_by_record(self.verdicts)
        self.failures_by_item = _grouped(self.failures, "item_id")


def _grouped(rows: list[dict], key: str = "video_id") -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return dict(out)


def load_tables(ds: Dataset) -> Tables:
    """Every table the report shows, the columns it needs only (no raw outputs), grouped by video; the
    views (open failures, the quality verdicts) through the catalog."""
    rows = {t: ds.read(t, cols).to_pylist() for t, cols in _COLUMNS.items()}
    rows["failures"] = ds.sql("SELECT stage, coalesce(variant, '') AS variant, item_id, error_type, message "
                              "FROM open_failures").to_pylist()
    counts = ds.counts()
    quality = None
    if counts["quality_signals"] or counts["duplicates"]:  # once quality or dedup ran (rates of `keep`, reasons)
        quality = ds.sql("SELECT segment_id, keep, reason FROM quality").to_pylist()
        counts["quality"] = len(quality)
    return Tables(
        counts=counts, videos=sorted(rows["videos"], key=lambda v: (v["domain"] or "", file_name(v["uri"]), v["video_id"])),
        segments={k: sorted(v, key=lambda s: (s["start_frame"], s["idx"])) for k, v in _grouped(rows["segments"]).items()},
        captions=_grouped(rows["captions"]), dense=_grouped(rows["dense_captions"]),
        grounding={k: sorted(v, key=lambda g: (g["start_s"], g["record_id"])) for k, v in _grouped(rows["grounding"]).items()},
        verdicts=rows["verdicts"],
        samples={k: sorted(v, key=lambda s: (s["task"], s["clip_start_s"], s["sample_id"]))
                 for k, v in _grouped(rows["samples"]).items()},
        failures=sorted(rows["failures"], key=lambda f: (f["stage"], f["variant"], f["error_type"], f["item_id"])),
        quality=quality, resolved_failures=counts["resolved"], runs=ds.last_runs(),
        finished={(r["stage"], r["variant"]): r["n"] for r in ds.sql(
            "SELECT stage, variant, count(*) AS n FROM finished GROUP BY ALL").to_pylist()},
    )


# --- mixtures --------------------------------------------------------------------------------------------


def mixture_dirs(ds: Dataset) -> list[Path]:
    root = ds.root / "mixtures"
    if not root.is_dir():
        return []
    return sorted(d for d in root.iterdir() if d.is_dir() and (d / "manifest.parquet").exists())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def max_error(balance: dict) -> float | None:
    errors = [abs(r["error"]) for rows in (balance.get("dimensions") or {}).values() for r in rows
              if isinstance(r, dict) and r.get("error") is not None]
    return max(errors) if errors else None


def mixture_page(mdir: Path, videos: dict[str, dict]) -> dict:
    """A mixture: its balance (target, before, achieved, error per group), the recipe, counts in the manifest
    and example samples rendered as the chat the model sees."""
    manifest = read_manifest(mdir)
    balance = _read_json(mdir / "balance.json")
    recipe = _read_json(mdir / "recipe.json")
    by_task: dict[str, list[dict]] = defaultdict(list)
    seen: set[str] = set()
    for row in sorted(manifest, key=lambda r: (r["task"], r["sample_id"])):
        if row["sample_id"] in seen or len(by_task[row["task"]]) >= EXAMPLES_PER_TASK:
            continue
        seen.add(row["sample_id"])
        by_task[row["task"]].append(row)
    examples = []
    for task in sorted(by_task):
        for row in by_task[task]:
            video = videos.get(row["video_id"], {})
            examples.append({**sample_summary(row), "video_id": row["video_id"], "video_page": page_name(row["video_id"]),
                             "fps": row["fps"], "width": video.get("width"), "height": video.get("height"),
                             "video_name": file_name(video.get("uri") or row.get("uri") or ""),
                             "uri": video.get("uri") or row.get("uri") or "",
                             "chat": chat(row)})
    tasks = Counter(r["task"] for r in manifest)
    domains = Counter(r["domain"] for r in manifest)
    return {
        "name": mdir.name, "page": page_name(mdir.name), "dir": str(mdir), "rows": len(manifest),
        "distinct_samples": len({r["sample_id"] for r in manifest}),
        "repeated_rows": sum(1 for r in manifest if (r.get("repeat") or 0) > 0),
        "split": balance.get("split", recipe.get("split")), "unit": balance.get("unit", recipe.get("unit", "samples")),
        "balanced_by": list(balance.get("balanced_by") or []), "total": balance.get("total"),
        "budget": balance.get("budget"), "missing_targets": balance.get("missing_targets") or [],
        "missing_domains": balance.get("missing_domains") or [], "missing_tasks": balance.get("missing_tasks") or [],
        "warnings": balance.get("warnings") or [],
        "dimensions": balance.get("dimensions") or {}, "filtered": balance.get("filtered") or [],
        "max_error": max_error(balance), "sql": recipe.get("sql") or "",
        "tasks": dict(sorted(tasks.items())), "domains": dict(sorted(domains.items())),
        "has_chart": (mdir / "balance.png").exists(), "examples": examples,
    }


def mixture_membership(mdirs: list[Path]) -> dict[str, list[str]]:
    """sample_id -> the mixtures that hold it."""
    out: dict[str, list[str]] = defaultdict(list)
    for d in mdirs:
        for sid in {r["sample_id"] for r in read_manifest(d, ["sample_id"])}:
            out[sid].append(d.name)
    return dict(out)


# --- samples as the model sees them ---------------------------------------------------------------------------


def sample_summary(s: dict) -> dict:
    return {k: s.get(k) for k in ("sample_id", "task", "split", "domain", "clip_start_s", "clip_end_s",
                                  "n_text_tokens", "n_visual_tokens")}


def video_groups(frame_indices: list[int], fps: float, temporal_patch: int = 2) -> list[dict]:
    """The video part of a prompt as the processor writes it: per temporal patch of ``temporal_patch``
    frames, the ``<t seconds>`` marker (``group_times`` rendered with ``render_time``) and its frames (the
    last frame repeated to fill the final patch, as the processor does)."""
    idx = [int(i) for i in frame_indices]
    if not idx:
        return []
    while len(idx) % temporal_patch:
        idx.append(idx[-1])
    times = group_times(idx, fps, temporal_patch)
    return [{"t_s": t, "marker": render_time(t), "frames": idx[k * temporal_patch:(k + 1) * temporal_patch]}
            for k, t in enumerate(times)]


def chat(sample: dict) -> list[dict]:
    """The sample's messages as turns of parts: text, or the video as its ``<t seconds>`` groups."""
    try:
        messages = read_messages(sample["messages"] or "[]")
    except ValueError as e:
        return [{"role": "(unreadable messages)", "parts": [{"type": "text", "text": str(e)}]}]
    turns = []
    for m in messages:
        parts = []
        for part in m["content"]:
            if part["type"] == "video":
                parts.append({"type": "video", "groups": video_groups(sample["frame_indices"] or [], sample["fps"])})
            else:
                parts.append({"type": "text", "text": str(part.get("text", ""))})
        turns.append({"role": m["role"], "parts": parts})
    return turns


def chat_frames(turns: list[dict]) -> set[int]:
    """Frames a rendered chat shows a thumbnail of: the first frame of each temporal patch."""
    return {g["frames"][0] for t in turns for p in t["parts"] if p["type"] == "video" for g in p["groups"]}


# --- one video ---------------------------------------------------------------------------------------------


def _pick(items: list, n: int) -> list:
    """At most n items, evenly spread, first and last kept."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return [items[0]]
    return [items[round(k * (len(items) - 1) / (n - 1))] for k in range(n)]


def video_page(t: Tables, video: dict, membership: dict[str, list[str]] | None = None) -> dict:
    """Everything the page of one video shows."""
    vid = video["video_id"]
    fps, n_frames = float(video["fps"] or 0) or 1.0, int(video["n_frames"] or 1)
    duration = float(video["duration_s"] or n_frames / fps)
    segments = t.segments.get(vid, [])
    captions = t.captions.get(vid, [])
    columns = sorted({(c["model"], c["prompt_version"]) for c in captions})
    caps_by_seg: dict[str, dict[str, dict]] = defaultdict(dict)
    for c in captions:
        caps_by_seg[c["segment_id"]][f"{c['model']}\x1f{c['prompt_version']}"] = {"summary": c["summary"],
                                                                                  "details": c["details"]}
    seg_idx = {s["segment_id"]: k for k, s in enumerate(segments)}
    verdicts = t.verdicts_by_record
    grounding = []
    for g in t.grounding.get(vid, []):
        boxes = sorted(g["boxes"] or [], key=lambda b: b["t_s"])
        grounding.append({
            "record_id": g["record_id"], "phrase": g["phrase"], "action": g["action"], "start_s": g["start_s"],
            "end_s": g["end_s"], "source": g["source"], "model": g["model"], "segment": seg_idx.get(g["segment_id"]),
            "verdicts": verdicts.get(g["record_id"], []), "boxes_total": len(boxes),
            "boxes": [{"t_s": b["t_s"], "frame": frame_at(b["t_s"], fps, n_frames), "x1": b["x1"], "y1": b["y1"],
                       "x2": b["x2"], "y2": b["y2"]} for b in _pick(boxes, MAX_BOXES_SHOWN)],
        })
    membership = membership or {}
    samples = [{**sample_summary(s), "frames": len(s["frame_indices"] or []),
                "mixtures": [{"name": m, "page": page_name(m)} for m in membership.get(s["sample_id"], [])],
                "chat": chat(s)} for s in t.samples.get(vid, [])]
    own = {vid} | set(seg_idx) | {g["record_id"] for g in grounding} | {s["sample_id"] for s in samples}
    timeline = [int((k + 0.5) * n_frames / TIMELINE_THUMBS) for k in range(TIMELINE_THUMBS)] if n_frames else []
    return {
        "video": {"video_id": vid, "page": page_name(vid), "uri": video["uri"], "name": file_name(video["uri"]),
                  "domain": video["domain"], "source": video["source"], "duration_s": duration, "fps": fps,
                  "n_frames": n_frames, "width": video["width"], "height": video["height"], "codec": video["codec"]},
        "timeline": [{"frame": f, "t_s": frame_s(f, fps)} for f in sorted(set(timeline))],
        "segments": [{
            "segment_id": s["segment_id"], "idx": s["idx"], "start_s": s["start_s"], "end_s": s["end_s"],
            "start_frame": s["start_frame"], "end_frame": s["end_frame"], "cut_score": s["cut_score"],
            "motion": s["motion"], "luma": s["luma"], "detector": s["detector"],
            "thumbs": sorted({int(s["start_frame"]), (int(s["start_frame"]) + int(s["end_frame"])) // 2,
                              max(int(s["start_frame"]), int(s["end_frame"]) - 1)}),
            "captions": caps_by_seg.get(s["segment_id"], {}),
        } for s in segments],
        "caption_columns": [{"key": f"{m}\x1f{p}", "model": m, "prompt_version": p, "label": short_model(m)}
                            for m, p in columns],
        "dense": [{"model": d["model"], "prompt_version": d["prompt_version"], "entries": d["entries"] or [],
                   "rendered": d["rendered"]} for d in sorted(t.dense.get(vid, []), key=lambda d: d["model"])],
        "grounding": grounding,
        "samples": samples,
        "failures": [f for item in sorted(own) for f in t.failures_by_item.get(item, [])],
    }


def _verdicts_by_record(verdicts: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for v in verdicts:
        out[v["record_id"]].append({"model": v["model"], "passed": v["passed"], "reasons": list(v["reasons"] or [])})
    return out


def page_frames(page: dict) -> set[int]:
    """Every frame a video page shows a thumbnail of."""
    frames = {x["frame"] for x in page["timeline"]}
    frames |= {f for s in page["segments"] for f in s["thumbs"]}
    frames |= {b["frame"] for g in page["grounding"] for b in g["boxes"]}
    frames |= {f for s in page["samples"] for f in chat_frames(s["chat"])}
    return frames


# --- the overview ------------------------------------------------------------------------------------------


def video_index(t: Tables) -> list[dict]:
    """One row per video for the list pages (and the filter box)."""
    out = []
    for v in t.videos:
        vid = v["video_id"]
        segs = t.segments.get(vid, [])
        own = [vid, *(s["segment_id"] for s in segs)]
        out.append({"video_id": vid, "page": page_name(vid), "name": file_name(v["uri"]), "domain": v["domain"],
                    "duration_s": v["duration_s"], "segments": len(segs), "captions": len(t.captions.get(vid, [])),
                    "grounding": len(t.grounding.get(vid, [])), "samples": len(t.samples.get(vid, [])),
                    "failures": sum(len(t.failures_by_item.get(i, [])) for i in own)})
    return out


def unverified(t: Tables) -> list[dict]:
    """Each verifying model whose last verify run left no verdicts, and why: how many records it had to
    check, its failures, and what ground wrote for that model (records, failures by error type, segments
    where it found nothing)."""
    judged = {v["model"] for v in t.verdicts}
    ground_runs = {r["variant"] for r in t.runs if r.get("stage") == "ground"}
    ground_failed: dict[str, Counter] = defaultdict(Counter)  # per model: one teacher's failures are its own
    for f in t.failures:
        if f["stage"] == "ground":
            ground_failed[f["variant"]][f["error_type"]] += 1
    segments = sum(len(rows) for rows in t.segments.values())
    out = []
    for run in t.runs:
        model = run.get("variant", "")
        if run.get("stage") != "verify" or model in judged:
            continue
        counts = run.get("counts") or {}
        records = sum(1 for rows in t.grounding.values() for g in rows if g["source"] == "model" and g["model"] == model)
        out.append({
            "model": model, "records": int(run.get("items") or 0) + int(counts.get("skipped_done") or 0),
            "failed": int(counts.get("failed") or 0), "reasons": sorted((run.get("reasons") or {}).items()),
            "ground_ran": model in ground_runs, "ground_records": records, "segments": segments,
            "ground_failed": sorted(ground_failed[model].items(), key=lambda kv: (-kv[1], kv[0])),
            "ground_empty": t.finished.get(("ground", model), 0)})
    return out


def overview(t: Tables, mixtures: list[dict]) -> dict:
    """Rows per table, hours and samples per domain, failures by stage and error type, verification and
    quality rates, distributions, one line per mixture."""
    domains: dict[str, dict] = {}
    for v in t.videos:
        d = domains.setdefault(v["domain"], {"domain": v["domain"], "videos": 0, "hours": 0.0, "segments": 0,
                                             "samples": 0, "sample_hours": 0.0})
        d["videos"] += 1
        d["hours"] += (v["duration_s"] or 0.0) / 3600
        d["segments"] += len(t.segments.get(v["video_id"], []))
    for rows in t.samples.values():
        for s in rows:
            d = domains.setdefault(s["domain"], {"domain": s["domain"], "videos": 0, "hours": 0.0, "segments": 0,
                                                 "samples": 0, "sample_hours": 0.0})
            d["samples"] += 1
            d["sample_hours"] += ((s["clip_end_s"] or 0.0) - (s["clip_start_s"] or 0.0)) / 3600
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for f in t.failures:
        groups[(f["stage"], f["variant"], f["error_type"])].append(f)
    failures = [{"stage": st, "variant": va, "error_type": et, "count": len(rows),
                 "examples": [{"item_id": r["item_id"], "message": r["message"]} for r in rows[:MAX_FAILURE_EXAMPLES]]}
                for (st, va, et), rows in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))]
    verification = []
    for model in sorted({v["model"] for v in t.verdicts}):
        rows = [v for v in t.verdicts if v["model"] == model]
        n = len(rows)
        verification.append({"model": model, "records": n, **{
            k: sum(1 for v in rows if v[k]) for k in ("passed", "form_ok", "caption_ok", "cycle_ok")},
            "reasons": Counter(r.split(":")[0] for v in rows for r in (v["reasons"] or [])).most_common(8),
            "cycle_tiou": histogram([v["cycle_tiou"] for v in rows if v["cycle_tiou"] is not None])})
    quality = None
    if t.quality is not None:
        keep = [q for q in t.quality if q.get("keep")]
        quality = {"segments": len(t.quality), "kept": len(keep),
                   "reasons": Counter(str(q.get("reason")) for q in t.quality if not q.get("keep")).most_common(8)}
    all_segments = [s for rows in t.segments.values() for s in rows]
    all_samples = [s for rows in t.samples.values() for s in rows]
    return {
        "counts": dict(t.counts), "videos": len(t.videos),
        "domains": sorted(domains.values(), key=lambda d: d["domain"] or ""),
        "failures": failures, "n_failures": len(t.failures), "resolved_failures": t.resolved_failures,
        "verification": verification, "unverified": unverified(t), "quality": quality,
        "distributions": {
            "segment_s": histogram([s["end_s"] - s["start_s"] for s in all_segments]),
            "cut_score": histogram([s["cut_score"] for s in all_segments if s["idx"] and s["cut_score"] is not None]),
            "sample_tokens": histogram([(s["n_text_tokens"] or 0) + (s["n_visual_tokens"] or 0) for s in all_samples]),
        },
        "tasks": dict(sorted(Counter(s["task"] for s in all_samples).items())),
        "mixtures": [{k: m[k] for k in ("name", "page", "split", "unit", "rows", "balanced_by", "max_error",
                                        "missing_domains", "missing_tasks")} for m in mixtures],
        "list_pages": max(1, math.ceil(len(t.videos) / PAGE_SIZE)),
    }
