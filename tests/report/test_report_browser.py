"""The report in a real headless Chromium (Debian's, installed by `make`): pages open from disk without console
errors, show what the tables hold, draw the boxes, and show untrusted text as text without running it."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from curation.store import Dataset
from report import data as D
from report.build import write_report

PAYLOAD = '<script>alert(1);window.__pwned=1</script>" onerror="window.__pwned=2" <img src=x onerror=window.__pwned=3>'
FILE_PAYLOAD = 'evil <script>alert(4)<script>" onerror="window.__pwned=5" <img src=x onerror=alert(6)>.mp4'


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "no chromium on PATH: `make install` installs Debian's (apt-get install chromium)"
    return path


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class Page:
    """A browser tab that records console errors, uncaught exceptions and dialogs."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def open(self, path):
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")
        return self.page

    def close(self):
        self.page.close()


def _video_with_most_boxes(root):
    return Dataset(root).sql(
        "SELECT v.video_id, count(DISTINCT s.segment_id) AS n FROM videos v JOIN segments s USING (video_id) "
        "JOIN grounding g USING (video_id) GROUP BY v.video_id ORDER BY n DESC, v.video_id LIMIT 1").to_pylist()[0]["video_id"]


def test_overview_and_a_video_page_in_chromium(report_site, browser, tmp_path):
    root, out, _ = report_site
    ds = Dataset(root)
    tab = Page(browser)
    page = tab.open(out / "index.html")
    for table in ("videos", "segments", "captions", "samples", "failures"):
        n = ds.sql(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()
        assert page.inner_text(f'td[data-table="{table}"]') == str(n)
    assert page.locator("svg.chart").count() >= 4
    page.click('a[href="mixtures/balanced.html"]')  # the mixture's line links to its page
    page.wait_for_load_state("load")
    assert page.url.endswith("/mixtures/balanced.html")
    assert page.locator(".example").count() > 0 and page.locator(".example .marker").count() > 0
    assert page.locator('div[data-dimension="domain"] svg rect').count() == 3 * len(
        json.loads((root / "mixtures" / "balanced" / "balance.json").read_text())["dimensions"]["domain"])

    vid = _video_with_most_boxes(root)
    page = tab.open(out / "videos" / f"{vid}.html")
    segs = ds.sql("SELECT start_s, end_s FROM segments WHERE video_id = ? ORDER BY start_frame", [vid]).to_pylist()
    assert len(segs) >= 2
    shown = page.eval_on_selector_all("section.segment", "els => els.map(e => [e.dataset.startS, e.dataset.endS, "
                                                         "e.querySelector('.span').textContent])")
    assert shown == [[f"{s['start_s']:.3f}", f"{s['end_s']:.3f}", f"{s['start_s']:.2f}–{s['end_s']:.2f} s"] for s in segs]
    assert page.locator(".segbar .seg").count() == len(segs) and page.locator(".segbar .cut").count() == len(segs) - 1
    boxes = ds.sql("SELECT len(boxes) AS n FROM grounding WHERE video_id = ?", [vid]).column("n").to_pylist()
    assert page.locator(".record .box").count() == sum(min(n, D.MAX_BOXES_SHOWN) for n in boxes) > 0
    # a box is drawn where its 0..1000 coordinates say, over the frame
    first = ds.sql("SELECT boxes[1] AS b FROM grounding WHERE video_id = ? ORDER BY start_s, record_id LIMIT 1",
                   [vid]).to_pylist()[0]["b"]
    frame = page.locator(".record .frame").first.bounding_box()
    box = page.locator(".record .box").first.bounding_box()
    assert box["x"] - frame["x"] == pytest.approx(frame["width"] * first["x1"] / 1000, abs=1.5)
    assert box["width"] == pytest.approx(frame["width"] * (first["x2"] - first["x1"]) / 1000, abs=2.5)
    # every eager thumbnail decoded (the lazy ones sit in closed sample details)
    broken = page.eval_on_selector_all("img:not([loading=lazy])", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0 and page.locator("img:not([loading=lazy])").count() > 10
    # a sample opens as the chat the model sees (clicked on its task name: the line's middle may be a mixture badge)
    page.click(".sample summary b")
    assert page.locator(".sample[open] .marker").first.is_visible()
    shot = tmp_path / "video.png"
    page.screenshot(path=str(shot), full_page=True)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[0] > 900 and img.shape[1] == 1280
    assert img.std() > 20 and len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 50, "the screenshot is not blank"
    assert tab.errors == [] and tab.dialogs == []
    tab.close()


def test_video_list_filter_finds_videos_across_pages(report_site, browser):
    root, out, _ = report_site
    tab = Page(browser)
    page = tab.open(out / "list" / "videos-0001.html")
    names = Dataset(root).sql("SELECT uri, domain FROM videos").to_pylist()
    assert page.locator("#video-rows tr").count() == len(names)
    page.fill("#filter", "needle")
    assert page.locator("#video-rows tr").count() == sum(1 for v in names if v["domain"] == "needle") > 0
    page.fill("#filter", "")
    assert page.locator("#video-rows tr").count() == len(names)
    assert tab.errors == []
    tab.close()


# --- untrusted text ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    """A one-video dataset whose caption, grounding phrase, file name, sample text and mixture carry markup."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curation.store import stable_id
    from curation.video import content_id, probe
    from synth.tasks import messages_json
    from synth.videos import render_video

    base = tmp_path_factory.mktemp("hostile")
    path = base / "videos" / FILE_PAYLOAD
    render_video(path, "evil", 4.0, seed=3, fps=12.0, size=(96, 64), n_scenes=2, n_fades=0)
    p = probe(path)
    vid = content_id(path)
    ds = Dataset(base / "dataset")
    ds.write("videos", [dict(video_id=vid, uri=str(path), uris=[str(path)], domain=PAYLOAD, source=PAYLOAD,
                             duration_s=p.duration_s, fps=p.fps, n_frames=p.n_frames, width=p.width, height=p.height,
                             codec=p.codec, rotation=0, variable_fps=False, bytes=p.bytes)])
    half = p.n_frames // 2
    segs = [dict(segment_id=stable_id(vid, a, b), video_id=vid, idx=k, start_s=a / p.fps, end_s=b / p.fps,
                 start_frame=a, end_frame=b, detector=PAYLOAD, detector_params="{}", cut_score=30.0 * k, motion=0.1,
                 luma=100.0) for k, (a, b) in enumerate(((0, half), (half, p.n_frames)))]
    ds.write("segments", segs)
    ds.write("captions", [dict(segment_id=s["segment_id"], model=PAYLOAD, prompt_version=PAYLOAD, video_id=vid,
                               start_s=s["start_s"], end_s=s["end_s"], summary=PAYLOAD, details=PAYLOAD, raw_output=PAYLOAD,
                               frames_used=[0]) for s in segs])
    ds.write("dense_captions", [dict(video_id=vid, model=PAYLOAD, prompt_version="v", rendered=PAYLOAD,
                                     entries=[dict(start_s=0.0, end_s=1.0, summary=PAYLOAD, details=PAYLOAD)])])
    ds.write("grounding", [dict(record_id="r1", video_id=vid, segment_id=segs[0]["segment_id"], phrase=PAYLOAD,
                                action=PAYLOAD, start_s=0.0, end_s=1.0, source=PAYLOAD, model=PAYLOAD,
                                boxes=[dict(t_s=0.5, x1=100, y1=100, x2=600, y2=700)])])
    sample = dict(sample_id="s1", task=PAYLOAD, video_id=vid, uri=str(path), clip_start_s=0.0, clip_end_s=p.duration_s,
                  clip_start_frame=0, clip_end_frame=p.n_frames, video_n_frames=p.n_frames, frame_indices=[0, 6, 12, 18],
                  fps=p.fps, messages=messages_json(PAYLOAD, PAYLOAD), domain=PAYLOAD, split="train",
                  n_text_tokens=10, n_visual_tokens=16)
    ds.write("samples", [sample])
    ds.fail(PAYLOAD, vid, ValueError(PAYLOAD), raw=PAYLOAD)
    mix = ds.root / "mixtures" / "mix <script>alert(7)<script>"
    mix.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([dict(sample, source=PAYLOAD, repeat=0)]), mix / "manifest.parquet")
    (mix / "balance.json").write_text(json.dumps({
        "mixture": PAYLOAD, "split": PAYLOAD, "unit": PAYLOAD, "balanced_by": ["domain"], "rows": 1,
        "dimensions": {"domain": [{"group": PAYLOAD, "target": 1.0, "before": 1.0, "achieved": 1.0, "error": 0.0,
                                   "samples": 1}]}, "filtered": [{"domain": PAYLOAD, "split": 1, "filter": 1, "cap": 1}]}))
    (mix / "recipe.json").write_text(json.dumps({"name": PAYLOAD, "sql": PAYLOAD}))
    out = base / "site"
    res = write_report(ds.root, out, progress=False)
    assert not res.thumb_failures
    return out, vid, mix.name


def test_untrusted_text_shows_as_text_and_runs_nothing(hostile_site, browser):
    out, vid, mix_name = hostile_site
    pages = [out / "index.html", out / "videos" / f"{vid}.html", out / "list" / "videos-0001.html",
             out / "mixtures" / f"{D.page_name(mix_name)}.html"]
    tab = Page(browser)
    for path in pages:
        page = tab.open(path)
        page.eval_on_selector_all("details", "ds => ds.forEach(d => d.open = true)")
        page.wait_for_timeout(100)
        text = page.inner_text("body")
        assert "<script>alert(1);window.__pwned=1</script>" in text and '" onerror="window.__pwned=2"' in text, path
        assert page.evaluate("typeof window.__pwned") == "undefined", path
        assert page.locator("[onerror]").count() == 0, path
        own = page.eval_on_selector_all("script", "ss => ss.map(s => s.getAttribute('src'))")
        assert all(s and s.startswith("../assets/") for s in own), (path, own)
    page = tab.open(out / "videos" / f"{vid}.html")
    assert page.inner_text("h1") == FILE_PAYLOAD  # the file name, as text
    assert page.locator(".phrase").first.inner_text() == PAYLOAD
    assert page.locator(".caption .summary").first.inner_text() == PAYLOAD
    assert page.locator(".record .box").count() == 1
    page = tab.open(out / "list" / "videos-0001.html")
    page.fill("#filter", "evil")  # rows the script builds from the data
    assert page.locator("#video-rows a").first.inner_text() == FILE_PAYLOAD
    assert page.evaluate("typeof window.__pwned") == "undefined" and page.locator("[onerror]").count() == 0
    assert tab.dialogs == [] and tab.errors == []
    tab.close()


# --- a long timeline ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_timeline(tmp_path_factory):
    """A 212 s video cut into 67 segments (as a real one was), from rows alone: short and long segments mixed."""
    base = tmp_path_factory.mktemp("timeline")
    ds = Dataset(base / "dataset")
    fps, n_frames = 30.0, 6360
    rng = np.random.default_rng(7)
    lengths = rng.uniform(0.3, 1.0, 67) ** 3  # many short segments, a few long ones
    bounds = np.round(np.concatenate([[0], np.cumsum(lengths) / lengths.sum()]) * n_frames).astype(int).tolist()
    ds.write("videos", [dict(video_id="long", uri=str(base / "long.mp4"), domain="sports", source="t",
                             duration_s=n_frames / fps, fps=fps, n_frames=n_frames, width=640, height=360, codec="h264")])
    segs = [dict(segment_id=f"s{k:02d}", video_id="long", idx=k, start_s=a / fps, end_s=b / fps, start_frame=a,
                 end_frame=b, detector="content", cut_score=round(float(rng.uniform(5, 60)), 2) if k else None,
                 motion=1.0, luma=100.0) for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    ds.write("segments", segs)
    out = base / "site"
    write_report(ds.root, out, progress=False, thumbnails=False)
    return out / "videos" / "long.html", segs


def visible_label_boxes(page) -> list[dict]:
    return page.eval_on_selector_all(
        ".tl-label", "els => els.filter(e => getComputedStyle(e).visibility === 'visible').map(e => {"
                     "const r = e.getBoundingClientRect(); return {text: e.textContent, x1: r.left, x2: r.right, "
                     "y1: r.top, y2: r.bottom}; })")


def overlapping(boxes: list[dict]) -> list[tuple[str, str]]:
    return [(a["text"], b["text"]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a["x1"] < b["x2"] and b["x1"] < a["x2"] and a["y1"] < b["y2"] and b["y1"] < a["y2"]]


def test_a_long_timeline_never_overlaps_its_labels_and_keeps_every_cut_score(long_timeline, browser):
    path, segs = long_timeline
    assert sum(s["end_s"] - s["start_s"] < 1.0 for s in segs) > 10  # too narrow for a label each
    tab = Page(browser)
    page = tab.open(path)
    # every segment and every cut has a label element; only some show
    assert page.locator(".segbar .tl-label").count() == 67 and page.locator(".cutlabels .tl-label").count() == 66
    for width in (1280, 700):  # the thinning follows the width (zoom)
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        boxes = visible_label_boxes(page)
        assert overlapping(boxes) == [], width
        shown = {b["text"] for b in boxes}
        assert "0" in shown and len([t for t in shown if t.startswith("cut ")]) >= 5, (width, shown)
    narrow = len(boxes)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(100)
    assert len(visible_label_boxes(page)) > narrow  # wider: more labels fit
    # every cut's score is reachable: on its marker's and its segment's tooltip, and on its label's
    titles = page.eval_on_selector_all(".segbar .cut", "els => els.map(e => e.title)")
    expected = [f"cut score {s['cut_score']:.2f} at {s['start_s']:.2f} s" for s in segs[1:]]
    assert titles == expected
    assert page.eval_on_selector_all(".cutlabels .tl-label", "els => els.map(e => e.title)") == expected
    seg_titles = page.eval_on_selector_all(".segbar .seg", "els => els.map(e => e.title)")
    assert all(t.endswith(" · " + x) for t, x in zip(seg_titles[1:], expected))
    assert tab.errors == []
    tab.close()
