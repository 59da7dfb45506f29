"""Writing the site: ``<out>/index.html`` (overview), ``list/videos-NNNN.html`` (the video list, paged, with a
filter over all videos), ``videos/<video>.html``, ``mixtures/<name>.html``, ``assets/``, ``thumbs/``.

A page is rewritten only when its data changed: ``<out>/.report-state.json`` keeps a digest of each page's
data (and of the code that renders it); a page whose thumbnails could not all be cut is not recorded, so the
next run tries again. Thumbnails are cut only when missing. The dataset and ``out`` may each be a local
folder or a URL (a bucket prefix); the site's files are listed once per run, so a bucket gets no request per
page or thumbnail to learn what is there.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from curation import storage
from curation.atomic import atomic_write_text
from curation.store import Dataset
from report import data as D
from report import html as H
from report.assets import CSS, JS
from report.rounds import rounds_html, rounds_page
from report.thumbs import Thumbs

STATE = ".report-state.json"


def _code_version() -> str:
    """A digest of the code that renders pages: changing a template rewrites every page."""
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in ("data.py", "html.py", "assets.py", "thumbs.py", "rounds.py"):
        h.update((here / name).read_bytes())
    return h.hexdigest()[:16]


@dataclass
class ReportResult:
    out: Path
    index: Path
    videos: int = 0
    mixtures: int = 0
    pages_written: int = 0
    pages_reused: int = 0
    pages_removed: int = 0
    thumbs_cut: int = 0
    thumbs_cached: int = 0
    thumb_failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        bad = f", {len(self.thumb_failures)} videos without thumbnails" if self.thumb_failures else ""
        return (f"report: {self.videos} videos, {self.mixtures} mixtures; pages {self.pages_written} written, "
                f"{self.pages_reused} reused; thumbnails {self.thumbs_cut} cut, {self.thumbs_cached} cached{bad}; "
                f"{self.seconds:.1f} s -> {self.index}")


def check_dataset(data: str | Path) -> Path:
    root = storage.location(data)
    storage.require_reachable(root)
    if not Dataset.exists(root, "videos"):
        raise FileNotFoundError(f"{root}: not a dataset (no videos/ table); build one first with "
                                f"`densevid run --videos DIR --data {root}`")
    return root


def site_folder(out: str | Path) -> Path:
    """The site's root: a local folder (created) or a bucket prefix that can be written."""
    place = storage.location(out)
    storage.require_reachable(place)
    if storage.is_remote(place):
        return place
    place = place.resolve()
    for sub in ("assets", "list", "videos", "mixtures"):
        (place / sub).mkdir(parents=True, exist_ok=True)
    return place


def site_files(out: Path) -> set[str]:
    """Every file under the site's root, relative to it: one walk, or one recursive listing of a bucket."""
    if not storage.is_remote(out):
        return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    fs, inner = storage.filesystem(str(out))
    try:
        return {p[len(inner) + 1:] for p in fs.find(inner)}
    except FileNotFoundError:
        return set()


def write_report(data: str | Path, out: str | Path, progress: bool = True, thumbnails: bool = True) -> ReportResult:
    """Write (or bring up to date) the static site for dataset ``data`` in ``out``."""
    t0 = time.perf_counter()
    ds = Dataset(check_dataset(data))
    out = site_folder(out)
    res = ReportResult(out=out, index=out / "index.html")
    present = site_files(out)
    thumbs = Thumbs(out, enabled=thumbnails, present=present)
    version = f"{_code_version()}:{'thumbs' if thumbnails else 'nothumbs'}"
    state_path = out / STATE
    state_text = _text(state_path)
    try:
        old = json.loads(state_text).get("pages", {})
    except (TypeError, json.JSONDecodeError, AttributeError):
        old = {}
    new: dict[str, str] = {}
    produced: set[str] = set()

    def put(rel: str, page_data, render, needs=(), record: bool = True) -> str | None:
        """Cut the page's missing thumbnails, then write it unless its digest is unchanged; returns the
        thumbnail error, if any (the page is then written with a note and not recorded)."""
        error = None
        for video_id, uri, frames in needs:
            r = thumbs.ensure(video_id, uri, frames)
            res.thumbs_cut += r.cut
            res.thumbs_cached += r.cached
            if r.error:
                error = r.error
                res.thumb_failures.append((video_id, r.error))
        digest = hashlib.sha256((version + json.dumps(page_data, sort_keys=True, default=str)).encode()).hexdigest()
        path = out / rel
        produced.add(rel)
        if error is None and old.get(rel) == digest and rel in present:
            res.pages_reused += 1
        else:
            atomic_write_text(path, render(error))
            present.add(rel)
            res.pages_written += 1
        if error is None and record:
            new[rel] = digest
        return error

    tables = D.load_tables(ds)
    videos = {v["video_id"]: v for v in tables.videos}
    mdirs = D.mixture_dirs(ds)
    membership = D.mixture_membership(mdirs)
    mixtures = [D.mixture_page(d, videos) for d in mdirs]
    res.videos, res.mixtures = len(videos), len(mixtures)

    _write_if_changed(out / "assets" / "report.css", CSS)
    _write_if_changed(out / "assets" / "report.js", JS)
    index_rows = D.video_index(tables)
    _write_if_changed(out / "assets" / "videos.js", H.videos_js(index_rows))
    n_pages = max(1, -(-len(index_rows) // D.PAGE_SIZE))
    for k in range(1, n_pages + 1):
        rows = index_rows[(k - 1) * D.PAGE_SIZE:k * D.PAGE_SIZE]
        put(f"list/{H.list_page_name(k)}", [k, n_pages, len(index_rows), rows],
            lambda _err, rows=rows, k=k: H.video_list_html(rows, k, n_pages, len(index_rows)))

    bar = tqdm(tables.videos, desc="report", unit="video", disable=not progress, leave=False)
    for v in bar:
        page = D.video_page(tables, v, membership)
        put(f"videos/{D.page_name(v['video_id'])}.html", page,
            lambda err, page=page: H.video_html(page, thumbs, err),
            needs=[(v["video_id"], v["uri"], D.page_frames(page))])
    bar.close()
    for m in mixtures:
        needs = [(x["video_id"], x["uri"], D.chat_frames(x["chat"])) for x in m["examples"]]
        put(f"mixtures/{m['page']}.html", m, lambda _err, m=m: H.mixture_html(m, thumbs), needs=needs)
    rounds = rounds_page(ds)
    put("rounds.html", rounds, lambda _err: rounds_html(rounds))
    overview = D.overview(tables, mixtures)
    put("index.html", [overview, str(ds.root)], lambda _err: H.overview_html(overview, str(ds.root)))

    for rel in set(old) - set(new):  # pages of videos or mixtures that are gone
        if rel.startswith(("videos/", "mixtures/", "list/")) and rel not in produced and rel in present:
            (out / rel).unlink()
            present.discard(rel)
            res.pages_removed += 1
    state = json.dumps({"version": version, "dataset": str(ds.root), "pages": new}, indent=0)
    if state != state_text:
        atomic_write_text(state_path, state)
    res.seconds = time.perf_counter() - t0
    return res


def _text(path: Path) -> str | None:
    """A file's text (one GET on a bucket); None when there is none."""
    try:
        if storage.is_remote(path):
            return storage.read_object(path).decode("utf-8")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _write_if_changed(path: Path, text: str) -> None:
    if _text(path) != text:
        atomic_write_text(path, text)
