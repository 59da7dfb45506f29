"""The curation stages: ingest (probe, hash, domain) and split (scene detection + segment policy)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from curation import CODE_VERSION, storage
from curation.stage import Stage, Stats, key_set
from curation.scenes import (DetectorConfig, SegmentPolicy, combine_spans, detect_cuts, detect_span,
                             segments_from_cuts)
from curation.domains import EVAL_ONLY_DOMAINS, DomainResolver, load_manifest, parse_rule
from curation.store import Dataset, stable_id
from curation.quality import frame_fractions, segment_signature
from curation.times import FrameSpan
from curation.video import Probe, VideoError, content_id, list_videos, probe


def video_row(video_id: str, paths: list[Path], p: Probe, domain: str, source: str, license: str | None) -> dict:
    """A `videos` row; the first path is the uri, all of them go in uris."""
    uris = [uri_of(q) for q in paths]
    return dict(video_id=video_id, uri=uris[0], uris=uris, domain=domain, source=source, license=license,
                duration_s=p.duration_s, fps=p.fps, n_frames=p.n_frames, width=p.width, height=p.height,
                codec=p.codec, rotation=p.rotation, variable_fps=p.variable_fps, bytes=p.bytes,
                code_version=CODE_VERSION)


def uri_of(path) -> str:
    """The absolute local path, or the object's URL."""
    return str(path) if storage.is_url(str(path)) else str(Path(path).resolve())


@dataclass
class IngestStage(Stage):
    """Probes and hashes each video file into a `videos` row.

    Fields: ``videos`` the folder or bucket prefix scanned (subfolders name domains); ``source`` the default source tag;
    ``manifest`` an optional file of per-video domain, source and license; ``domain_rules`` ``GLOB=DOMAIN``
    rules that override the folder's domain.
    """

    videos: Path = Path(".")
    source: str = "local"
    manifest: str | Path | None = None  # a path or a URL
    domain_rules: tuple[str, ...] = ()  # GLOB=DOMAIN
    name = "ingest"
    inputs = ()
    output = "videos"
    item_column = "video_id"
    parallel = True

    def items(self, ds: Dataset) -> list[dict]:
        """One item per distinct content: the same file under two paths is one video with two uris."""
        root = storage.location(self.videos)
        resolver = DomainResolver(root, load_manifest(self.manifest) if self.manifest else {},
                                  [parse_rule(r) for r in self.domain_rules])
        by_id: dict[str, dict] = {}
        known = self._known_paths(ds)
        for path in list_videos(root):
            try:
                str(path).encode("utf-8")
            except UnicodeEncodeError:
                key = "bad-name:" + str(path).encode("utf-8", "backslashreplace").decode()
                by_id[key] = {"item_id": key, "paths": [], "error": f"{key[9:]}: file name is not valid UTF-8; rename it"}
                continue
            try:
                vid = known.get((uri_of(path), storage.size_of(path))) or content_id(path)
            except OSError as e:  # a local file, or an object gone since it was listed
                vid = "unreadable:" + str(path)
                by_id[vid] = {"item_id": str(path), "paths": [path], "error": f"{path}: cannot read file ({e})"}
                continue
            item = by_id.setdefault(vid, {"item_id": vid, "paths": []})
            item["paths"].append(path)
        for item in by_id.values():
            if item["paths"]:
                item.update(resolver.lookup(item["paths"][0]))
        return list(by_id.values())

    def done_ids(self, ds: Dataset) -> set[str]:
        return key_set(ds, "videos", "video_id")

    @staticmethod
    def _known_paths(ds: Dataset) -> dict[tuple[str, int], str]:
        """(path, size) -> video_id of files already ingested, so a rerun does not hash them again."""
        rows = ds.read("videos", ["video_id", "uris", "bytes"]).to_pylist()
        return {(u, r["bytes"]): r["video_id"] for r in rows for u in r["uris"] or []}

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        rows = []
        for item in batch:
            if "error" in item:
                raise VideoError(item["error"])
            p = probe(item["paths"][0])
            if p.variable_fps:
                stats.add("variable_fps")  # times use the average rate; noted on the row
            if len(item["paths"]) > 1:
                stats.add("duplicate_paths", len(item["paths"]) - 1)
            rows.append(video_row(item["item_id"], item["paths"], p, item["domain"],
                                  item.get("source") or self.source, item.get("license")))
            stats.add("videos")
        return rows


@dataclass
class SplitStage(Stage):
    """Cuts each video into segments: scene detection, then the segment policy.

    Fields: ``detector`` the scene detector and its settings; ``policy`` min/max length, trimming and
    merging of segments; ``chunk_s`` with several workers, longer videos are detected in chunks of this
    length.
    """

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    policy: SegmentPolicy = field(default_factory=SegmentPolicy)
    chunk_s: float = 120.0
    name = "split"
    inputs = ("videos",)
    output = "segments"
    item_column = "video_id"
    parallel = True

    def items(self, ds: Dataset) -> list[dict]:
        return [dict(v, item_id=v["video_id"]) for v in ds.rows("videos") if v["domain"] not in EVAL_ONLY_DOMAINS]

    def done_ids(self, ds: Dataset) -> set[str]:
        return key_set(ds, "segments", "video_id")

    def process(self, batch: list[dict], ds: Dataset, stats: Stats) -> list[dict]:
        return [r for v in batch for r in self._video_rows(v, detect_cuts(v["uri"], self.detector), stats)]

    def _video_rows(self, v: dict, det, stats: Stats) -> list[dict]:
        n_frames = min(det.n_frames, v["n_frames"]) or v["n_frames"]
        spans = segments_from_cuts(det.cuts, n_frames, v["fps"], self.policy)
        stats.add("cuts", len(det.cuts))
        stats.add("segments", len(spans))
        return self._rows(v, spans, det)

    def chunks(self, v: dict) -> list[tuple[int, int | None]]:
        """Frame spans that workers detect separately; one span for short, VFR or TransNetV2 videos."""
        size = int(self.chunk_s * v["fps"])
        if self.detector.detector == "transnetv2" or v.get("variable_fps") or v["n_frames"] <= size * 1.5:
            return [(0, None)]
        edges = list(range(0, v["n_frames"] - size // 2, size)) + [None]
        return list(zip(edges[:-1], edges[1:]))

    def units(self, v: dict) -> list[dict] | None:
        """A long video's chunks, each detected on its own (any worker, any node) and joined by ``combine``.
        A chunk starts early and ends late by enough frames (longer than a fade through black) that the
        joined cuts equal one pass over the whole video."""
        spans = self.chunks(v)
        if len(spans) < 2:
            return None
        warmup = max(2 * self.detector.min_scene_len_frames, int(10 * v["fps"]))
        tail = max(2 * self.detector.min_scene_len_frames, int(2 * v["fps"]))
        return [dict(uri=v["uri"], start=a, end=b, warmup=warmup, tail=tail, size=(b or v["n_frames"]) - a)
                for a, b in spans]

    def run_unit(self, unit: dict):
        return detect_span(unit["uri"], self.detector, unit["start"], unit["end"], unit["warmup"], unit["tail"])

    def combine(self, v: dict, parts: list, stats: Stats) -> list[dict]:
        return self._video_rows(v, combine_spans(parts, self.detector), stats)

    def _rows(self, v: dict, spans: list[tuple[int, int]], det) -> list[dict]:
        params = detector_params(self.detector, self.policy)
        rows = []
        for idx, (a, b) in enumerate(spans):
            span = FrameSpan(a, b, v["fps"])
            rows.append(dict(
                segment_id=stable_id(v["video_id"], a, b), video_id=v["video_id"], idx=idx,
                start_s=span.start_s, end_s=span.end_s, start_frame=a, end_frame=b,
                detector=self.detector.detector, detector_params=params,
                cut_score=_cut_score(det.scores, a, self.policy, v["fps"]),
                luma=float(np.mean(det.luma[a:b])) if b <= len(det.luma) and b > a else 0.0,
                **frame_fractions(det.motion[a:b], det.luma[a:b]),
                signature=segment_signature(det.layouts, det.layout_every, v["fps"], det.motion, a, b),
                code_version=CODE_VERSION,
            ))
        return rows


def detector_params(detector: DetectorConfig, policy: SegmentPolicy) -> str:
    """What a segment records of how it was made: the detector's fields plus a "policy" object."""
    return json.dumps(dict(asdict(detector), policy=asdict(policy)), sort_keys=True)


def _cut_score(scores: dict[int, float], start: int, policy: SegmentPolicy, fps: float) -> float:
    """Score of the cut that opened this segment (trimming moves the start past the cut)."""
    if start == 0 or not scores:
        return 0.0
    nearest = min(scores, key=lambda c: abs(c - start))
    return scores[nearest] if abs(nearest - start) <= policy.trim_s * fps + 1 else 0.0
