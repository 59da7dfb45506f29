"""What each page lists equals what the tables hold; thumbnails are the exact frames; reruns reuse pages."""

from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from curation.store import Dataset
from curation.times import frame_s, group_times, render_time
from report import data as D
from report.build import write_report
from report.thumbs import Thumbs


@pytest.fixture(scope="module")
def tables(report_dataset):
    ds = Dataset(report_dataset)
    t = D.load_tables(ds)
    return ds, t


def _membership(ds):
    return D.mixture_membership(D.mixture_dirs(ds))


def test_every_video_page_lists_what_the_tables_hold(tables):
    ds, t = tables
    videos = ds.sql("SELECT video_id FROM videos ORDER BY video_id").column("video_id").to_pylist()
    assert sorted(v["video_id"] for v in t.videos) == videos and len(videos) == 5
    membership = _membership(ds)
    n_boxes = 0
    for v in t.videos:
        vid = v["video_id"]
        page = D.video_page(t, v, membership)
        segs = ds.sql("SELECT segment_id, start_s, end_s, cut_score FROM segments WHERE video_id = ? ORDER BY start_frame",
                      [vid]).to_pylist()
        assert [(s["segment_id"], s["start_s"], s["end_s"], s["cut_score"]) for s in page["segments"]] == \
               [(s["segment_id"], s["start_s"], s["end_s"], s["cut_score"]) for s in segs]
        caps = ds.sql("SELECT segment_id, model, prompt_version, summary, details FROM captions WHERE video_id = ?",
                      [vid]).to_pylist()
        shown = {(s["segment_id"], *key.split("\x1f"), c["summary"], c["details"])
                 for s in page["segments"] for key, c in s["captions"].items()}
        assert shown == {(c["segment_id"], c["model"], c["prompt_version"], c["summary"], c["details"]) for c in caps}
        assert [c["model"] for c in page["caption_columns"]] == sorted({c["model"] for c in caps})
        dense = ds.sql("SELECT model, rendered, entries FROM dense_captions WHERE video_id = ? ORDER BY model",
                       [vid]).to_pylist()
        assert [(d["model"], d["rendered"], d["entries"]) for d in page["dense"]] == \
               [(d["model"], d["rendered"], d["entries"]) for d in dense]
        recs = ds.sql("SELECT record_id, phrase, start_s, end_s, len(boxes) AS n FROM grounding WHERE video_id = ? "
                      "ORDER BY start_s, record_id", [vid]).to_pylist()
        assert [(g["record_id"], g["phrase"], g["start_s"], g["end_s"], g["boxes_total"], len(g["boxes"]))
                for g in page["grounding"]] == \
               [(r["record_id"], r["phrase"], r["start_s"], r["end_s"], r["n"], min(r["n"], D.MAX_BOXES_SHOWN))
                for r in recs]
        for g in page["grounding"]:  # each drawn box on the frame on screen at its time (the last at the end)
            for b in g["boxes"]:
                last = b["frame"] == v["n_frames"] - 1 and b["t_s"] <= v["duration_s"] + 1e-6
                assert frame_s(b["frame"], v["fps"]) <= b["t_s"] + 1e-6 < frame_s(b["frame"] + 1, v["fps"]) or last
        n_boxes += sum(len(g["boxes"]) for g in page["grounding"])
        samples = ds.sql("SELECT sample_id FROM samples WHERE video_id = ?", [vid]).column("sample_id").to_pylist()
        assert sorted(s["sample_id"] for s in page["samples"]) == sorted(samples)
        for s in page["samples"]:
            assert [m["name"] for m in s["mixtures"]] == membership.get(s["sample_id"], [])
    assert n_boxes > 0, "the generated videos have ground-truth boxes"


def test_overview_counts_domains_and_failures_equal_the_tables(tables):
    ds, t = tables
    mixtures = [D.mixture_page(d, {v["video_id"]: v for v in t.videos}) for d in D.mixture_dirs(ds)]
    o = D.overview(t, mixtures)
    for table in ("videos", "segments", "captions", "dense_captions", "grounding", "verdicts", "samples", "failures"):
        assert o["counts"][table] == ds.sql(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py(), table
    by_sql = {r["domain"]: r for r in ds.sql(
        "SELECT v.domain, count(*) AS videos, sum(duration_s) / 3600 AS hours, "
        "(SELECT count(*) FROM samples s WHERE s.domain = v.domain) AS samples FROM videos v GROUP BY v.domain").to_pylist()}
    assert {d["domain"] for d in o["domains"]} == set(by_sql)
    for d in o["domains"]:
        assert d["videos"] == by_sql[d["domain"]]["videos"] and d["samples"] == by_sql[d["domain"]]["samples"]
        assert d["hours"] == pytest.approx(by_sql[d["domain"]]["hours"])
    groups = ds.sql("SELECT stage, error_type, count(*) AS n FROM open_failures GROUP BY ALL").to_pylist()
    assert {(f["stage"], f["error_type"]): f["count"] for f in o["failures"]} == \
           {(g["stage"], g["error_type"]): g["n"] for g in groups}
    verdicts = ds.sql("SELECT model, count(*) AS n, count(*) FILTER (WHERE passed) AS passed FROM verdicts GROUP BY model").to_pylist()
    assert {(v["model"], v["records"], v["passed"]) for v in o["verification"]} == \
           {(v["model"], v["n"], v["passed"]) for v in verdicts}
    assert [m["name"] for m in o["mixtures"]] == ["balanced"]
    tasks = ds.sql("SELECT task, count(*) AS n FROM samples GROUP BY task").to_pylist()
    assert o["tasks"] == {r["task"]: r["n"] for r in tasks}


def test_mixture_page_holds_the_balance_and_examples_from_the_manifest(tables):
    ds, t = tables
    mdir = ds.root / "mixtures" / "balanced"
    m = D.mixture_page(mdir, {v["video_id"]: v for v in t.videos})
    balance = json.loads((mdir / "balance.json").read_text())
    manifest = pq.read_table(mdir / "manifest.parquet").to_pylist()
    assert m["rows"] == len(manifest) == balance["rows"]
    assert m["dimensions"] == balance["dimensions"] and m["balanced_by"] == ["domain"]
    assert m["max_error"] == max(abs(r["error"]) for r in balance["dimensions"]["domain"])
    by_id = {r["sample_id"]: r for r in manifest}
    tasks = {r["task"] for r in manifest}
    assert {x["task"] for x in m["examples"]} == tasks
    assert len(m["examples"]) == sum(min(D.EXAMPLES_PER_TASK, sum(1 for r in manifest if r["task"] == k)) for k in tasks)
    for x in m["examples"]:
        row = by_id[x["sample_id"]]
        video = [p for turn in x["chat"] for p in turn["parts"] if p["type"] == "video"]
        assert [g["marker"] for g in video[0]["groups"]] == [render_time(s) for s in group_times(row["frame_indices"], row["fps"])]
        texts = [p["text"] for turn in x["chat"] for p in turn["parts"] if p["type"] == "text"]
        messages = json.loads(row["messages"])
        assert texts == [c["text"] for msg in messages for c in msg["content"] if c["type"] == "text"]


def test_chat_markers_are_where_the_processor_puts_them(tables, tiny_model):
    """The page shows each sample's `<t seconds>` markers in the order and at the values that the Qwen3-VL
    processor writes into the model's input for that sample's frames."""
    from model.inputs import build_inputs, video_metadata
    from model.loader import load_processor

    ds, t = tables
    processor = load_processor(tiny_model)
    videos = {v["video_id"]: v for v in t.videos}
    seen = set()
    for vid, rows in t.samples.items():
        for s in rows:
            if s["task"] in seen:
                continue
            seen.add(s["task"])
            v = videos[vid]
            turns = D.chat(s)
            groups = [g for p in turns[0]["parts"] if p["type"] == "video" for g in p["groups"]]
            frames = np.zeros((len(s["frame_indices"]), 64, 64, 3), np.uint8)
            inputs = build_inputs(processor, [json.loads(s["messages"])[:1]], [frames],
                                  [video_metadata(s["frame_indices"], s["fps"], v["n_frames"], 64, 64)])
            text = processor.tokenizer.decode(inputs["input_ids"][0])
            written = re.findall(r"(<[0-9.]+ seconds>)<\|vision_start\|>", text)
            assert written == [g["marker"] for g in groups], s["task"]
            assert turns[0]["parts"][1]["text"] in text
    assert {"dense_caption", "segment_caption", "temporal_grounding", "spatio_temporal_grounding"} <= seen


def test_thumbnail_is_the_exact_frame_at_its_index(report_site):
    from curation.video import read_frames

    root, out, _ = report_site
    ds = Dataset(root)
    seg = ds.sql("SELECT s.video_id, s.start_frame, v.uri FROM segments s JOIN videos v USING (video_id) "
                 "WHERE s.idx = 1 ORDER BY s.video_id LIMIT 1").to_pylist()[0]
    f = seg["start_frame"]  # the first frame after a cut: the frame before it shows another scene
    thumb = cv2.cvtColor(cv2.imread(str(out / Thumbs.rel(seg["video_id"], f))), cv2.COLOR_BGR2RGB).astype(float)
    here, before = read_frames(seg["uri"], [f, f - 1 - 6])
    shrink = lambda x: cv2.resize(x, thumb.shape[1::-1], interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(shrink(here) - thumb).mean() < 4.0
    assert np.abs(shrink(before) - thumb).mean() > 4 * np.abs(shrink(here) - thumb).mean()


def test_first_run_cuts_every_thumbnail_and_writes_every_page(report_site):
    root, out, res = report_site
    t = D.load_tables(Dataset(root))
    n_pages = 1 + 1 + len(t.videos) + 1 + 1  # overview, one list page, videos, the mixture, the rounds
    assert (res.pages_written, res.pages_reused, res.videos, res.mixtures) == (n_pages, 0, len(t.videos), 1)
    assert res.thumbs_cut == len(list((out / "thumbs").rglob("*.jpg"))) > 0 and not res.thumb_failures
    for v in t.videos:
        assert (out / "videos" / f"{v['video_id']}.html").exists()
    assert str(out / "index.html") in res.summary()


def test_a_rerun_rewrites_only_pages_whose_rows_changed(report_dataset, tmp_path):
    root = tmp_path / "dataset"
    shutil.copytree(report_dataset, root, ignore=shutil.ignore_patterns("catalog.duckdb"))
    out = tmp_path / "site"
    first = write_report(root, out, progress=False)
    again = write_report(root, out, progress=False)
    assert (again.pages_written, again.pages_reused) == (0, first.pages_written)
    assert (again.thumbs_cut, again.thumbs_cached) == (0, first.thumbs_cut + first.thumbs_cached)
    ds = Dataset(root)
    seg = ds.sql("SELECT segment_id, video_id, start_s, end_s FROM segments ORDER BY segment_id LIMIT 1").to_pylist()[0]
    ds.write("captions", [dict(seg, model="runs/lora-round2", prompt_version="caption_v1", summary="a second round",
                               details="people: -", raw_output="", frames_used=[], model_revision="x", decoding="{}",
                               code_version="test")])
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.html")}
    third = write_report(root, out, progress=False)
    changed = sorted(str(p.relative_to(out)) for p in out.rglob("*.html") if p.stat().st_mtime_ns != stamp[p])
    # the video's page (a second caption column), the list (its caption count) and the overview (row counts)
    assert changed == sorted([f"videos/{seg['video_id']}.html", "list/videos-0001.html", "index.html"])
    assert (third.pages_written, third.thumbs_cut) == (3, 0)
    html = (out / "videos" / f"{seg['video_id']}.html").read_text()
    assert "a second round" in html and "lora-round2" in html


def test_frame_at_inverts_frame_s():
    for fps in (24.0, 30000 / 1001, 25.0, 2.5):
        for i in range(0, 500, 7):
            assert D.frame_at(frame_s(i, fps), fps, 1000) == i
            assert D.frame_at(frame_s(i, fps) + 0.5 / fps, fps, 1000) == i
    assert D.frame_at(99.0, 24.0, 100) == 99 and D.frame_at(-1.0, 24.0, 100) == 0


def test_page_names_are_plain_ids_or_hashes():
    assert D.page_name("3b55161a2690f908") == "3b55161a2690f908"
    for bad in ("../x", "a/b", '<script>"', ".hidden", "", "x" * 80):
        name = D.page_name(bad)
        assert re.fullmatch(r"x-[0-9a-f]{16}", name), name


def test_the_video_list_is_paged_and_the_filter_data_holds_every_video(tmp_path):
    ds = Dataset(tmp_path / "dataset")
    n = 2 * D.PAGE_SIZE + 50
    ds.write("videos", [dict(video_id=f"v{i:05d}", uri=f"/videos/{i % 7}/clip{i:05d}.mp4", domain=f"d{i % 3}",
                             duration_s=10.0, fps=24.0, n_frames=240, width=64, height=48) for i in range(n)])
    out = tmp_path / "site"
    res = write_report(ds.root, out, progress=False, thumbnails=False)
    pages = sorted((out / "list").glob("videos-*.html"))
    assert [p.name for p in pages] == ["videos-0001.html", "videos-0002.html", "videos-0003.html"]
    assert [p.read_text().count('<tr><td><a href="../videos/') for p in pages] == [D.PAGE_SIZE, D.PAGE_SIZE, 50]
    listed = json.loads((out / "assets" / "videos.js").read_text().split("=", 1)[1].strip().rstrip(";"))
    assert sorted(v["video_id"] for v in listed) == [f"v{i:05d}" for i in range(n)]
    index = (out / "index.html").read_text()
    assert all(f'href="list/{p.name}"' in index for p in pages) and "clip00001" not in index
    assert res.pages_written == 1 + 3 + n + 1  # overview, list pages, videos, the rounds
