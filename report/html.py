"""The pages. Every value that comes from the data (captions, phrases, file names, manifest fields, model ids,
error messages) goes through ``e()`` (HTML-escaped, quotes too) or is formatted as a number; links point
only at names made by ``report.data.page_name``. The one script is a file of ours (``assets/report.js``)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from report.data import PAGE_SIZE, short_model
from report.thumbs import Thumbs

# no inline script, no plugins, nothing fetched from anywhere but the site's own folder
CSP = ("default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; "
       "base-uri 'none'; form-action 'none'")


def e(value) -> str:
    """Text from the data, safe in element content and in quoted attributes."""
    return "" if value is None else html.escape(str(value), quote=True)


def n(value, fmt: str = ".1f") -> str:
    """A number from the data, formatted (never the raw value): non-numbers show as a dash."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return "–"
    return format(x, fmt) if math.isfinite(x) else "–"


def pct(part, whole) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "–"


def file_href(uri: str) -> str | None:
    """A file:// link to a source file (percent-encoded, then escaped), or None when the uri is not a path."""
    try:
        p = Path(uri)
        return e(p.as_uri()) if p.is_absolute() else None
    except (ValueError, TypeError):
        return None


def doc(title: str, body: str, root: str) -> str:
    """A whole page; ``root`` is the way back to the site root ('' or '../')."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<link rel="stylesheet" href="{root}assets/report.css">
</head><body>
<header class="top"><a href="{root}index.html">Overview</a><a href="{root}list/videos-0001.html">Videos</a>
<a href="{root}index.html#mixtures">Mixtures</a><a href="{root}rounds.html">Rounds</a></header>
<main>
{body}
</main>
</body></html>
"""


def list_page_name(k: int) -> str:
    return f"videos-{k:04d}.html"


# --- charts (SVG) -----------------------------------------------------------------------------------------


def bar_chart(labels: list[str], series: list[tuple[str, list[float]]], fmt=lambda v: n(v, ".2f"),
              width: int = 560, height: int = 190, title: str = "") -> str:
    """Grouped bars: one group per label, one bar per series (at most three, styled s0..s2)."""
    if not labels:
        return '<p class="muted">no data</p>'
    top = max([v for _, vals in series for v in vals if v is not None] + [1e-12])
    pad_l, pad_b, pad_t = 8, 42, 16
    plot_h = height - pad_b - pad_t
    gw = (width - pad_l) / len(labels)
    bw = max(2.0, gw * 0.8 / len(series))
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{e(title)}</title>",
             f'<line class="axis" x1="{pad_l}" y1="{height - pad_b}" x2="{width}" y2="{height - pad_b}"/>']
    for i, label in enumerate(labels):
        x0 = pad_l + i * gw + gw * 0.1
        for k, (name, vals) in enumerate(series):
            v = vals[i] or 0.0
            h = plot_h * v / top
            x, y = x0 + k * bw, height - pad_b - h
            parts.append(f'<rect class="s{k}" x="{x:.1f}" y="{y:.1f}" width="{bw - 1:.1f}" height="{h:.1f}">'
                         f"<title>{e(label)} {e(name)}: {e(fmt(v))}</title></rect>")
            if len(series) == 1 or len(labels) <= 6:
                parts.append(f'<text x="{x + bw / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{e(fmt(v))}</text>')
        short = label if len(label) <= 18 else label[:17] + "…"
        parts.append(f'<text x="{pad_l + i * gw + gw / 2:.1f}" y="{height - pad_b + 14}" text-anchor="middle">'
                     f"{e(short)}</text>")
    parts.append("</svg>")
    legend = "" if len(series) == 1 else '<div class="legend">' + "".join(
        f'<span><i class="s{k}"></i>{e(name)}</span>' for k, (name, _) in enumerate(series)) + "</div>"
    return "".join(parts) + legend


def histogram_chart(bins: list[dict], title: str, fmt: str = ".1f") -> str:
    if not bins:
        return f'<div><h3>{e(title)}</h3><p class="muted">no data</p></div>'
    labels = [f"{n(b['lo'], fmt)}–{n(b['hi'], fmt)}" for b in bins]
    return (f"<div><h3>{e(title)}</h3>" + bar_chart(labels, [("count", [b["n"] for b in bins])], fmt=lambda v: n(v, ".0f"),
                                                   width=min(640, 60 * len(bins) + 20), title=title) + "</div>")


# --- frames and boxes ---------------------------------------------------------------------------------------


def variant_cell(variant: str) -> str:
    """The model a failure belongs to (its stage's variant): the short name, the full id on hover."""
    if not variant:
        return '<td class="muted">-</td>'
    return f'<td title="{e(variant)}">{e(short_model(variant))}</td>'


def box_div(b: dict) -> str:
    """A box over its frame; corners the model wrote swapped (the gate rejects those) are drawn where they are."""
    x1, x2 = sorted((_grid(b["x1"]), _grid(b["x2"])))
    y1, y2 = sorted((_grid(b["y1"]), _grid(b["y2"])))
    return (f'<div class="box" data-t-s="{n(b["t_s"], ".3f")}" style="left:{x1}%;top:{y1}%;'
            f'width:{x2 - x1:.1f}%;height:{y2 - y1:.1f}%"></div>')


def frame_figure(thumbs: Thumbs | None, video_id: str, frame: int, t_s: float, aspect: str, root: str,
                 caption: str | None = None, boxes: list[dict] = (), lazy: bool = False) -> str:
    load = ' loading="lazy"' if lazy else ""
    img = (f'<img{load} src="{root}{e(thumbs.rel(video_id, frame))}" alt="frame {int(frame)}">'
           if thumbs is not None and thumbs.enabled else
           f'<div class="nothumb">frame {int(frame)}</div>')
    drawn = "".join(box_div(b) for b in boxes)
    cap = caption if caption is not None else f"{n(t_s, '.2f')} s · frame {int(frame)}"
    return (f'<figure data-frame="{int(frame)}"><div class="frame" style="--aspect:{aspect}">{img}{drawn}</div>'
            f"<figcaption>{e(cap)}</figcaption></figure>")


def _grid(v) -> float:
    """A 0..1000 box coordinate as a percentage of the frame, clamped."""
    try:
        return max(0.0, min(100.0, float(v) / 10.0))
    except (TypeError, ValueError):
        return 0.0


def _aspect(video: dict) -> str:
    w, h = video.get("width") or 4, video.get("height") or 3
    return f"{int(w)} / {int(h)}"


# --- chat -------------------------------------------------------------------------------------------------


def chat_html(turns: list[dict], thumbs: Thumbs | None, video_id: str, fps: float, aspect: str, root: str,
              lazy: bool = False) -> str:
    """A sample as the model reads it: the chat template's turns, the video as, per temporal patch, its
    ``<t seconds>`` marker, then ``<|vision_start|>``, the patch's first frame and ``<|vision_end|>``."""
    out = ['<div class="chat">']
    for turn in turns:
        out.append(f'<div class="turn {e(turn["role"])}"><div class="role">&lt;|im_start|&gt;{e(turn["role"])}</div>')
        for part in turn["parts"]:
            if part["type"] == "video":
                out.append('<div class="video">')
                for g in part["groups"]:
                    f = g["frames"][0]
                    out.append(f'<span class="marker" data-t-s="{n(g["t_s"], ".4f")}">{e(g["marker"])}</span>')
                    out.append('<span class="tok">&lt;|vision_start|&gt;</span>')
                    out.append(frame_figure(thumbs, video_id, f, f / fps, aspect, root,
                                            caption="frames " + ", ".join(str(int(x)) for x in g["frames"]), lazy=lazy))
                    out.append('<span class="tok">&lt;|vision_end|&gt;</span>')
                out.append('</div>')
            else:
                out.append(f'<div class="text">{e(part["text"])}</div>')
        out.append("</div>")
    out.append("</div>")
    return "".join(out)


def sample_head(s: dict) -> str:
    return (f'<b>{e(s["task"])}</b> · {e(s["split"])} · clip {n(s["clip_start_s"], ".2f")}–{n(s["clip_end_s"], ".2f")} s'
            f' · {n(s["n_text_tokens"], ".0f")} text + {n(s["n_visual_tokens"], ".0f")} visual tokens')


# --- the video page ---------------------------------------------------------------------------------------


def video_html(page: dict, thumbs: Thumbs | None, note: str | None = None) -> str:
    v = page["video"]
    root, vid, aspect = "../", v["video_id"], _aspect(v)
    dur = float(v["duration_s"]) or 1.0
    href = file_href(v["uri"])
    out = [f"<h1>{e(v['name'])}</h1>",
           '<p class="meta">' + "".join(f"<span>{x}</span>" for x in (
               f"domain <b>{e(v['domain'])}</b>", f"source {e(v['source'])}", f"{n(v['duration_s'], '.2f')} s",
               f"{n(v['fps'], '.3f')} fps", f"{n(v['n_frames'], '.0f')} frames", f"{e(v['width'])}×{e(v['height'])}",
               f"codec {e(v['codec'])}", f"id {e(vid)}")) + "</p>",
           f'<p class="meta">file: ' + (f'<a href="{href}">{e(v["uri"])}</a>' if href else e(v["uri"])) + "</p>"]
    if note:
        out.append(f'<p class="failure">thumbnails unavailable: {e(note)}</p>')
    # timeline: thumbnails at the centres of equal time bins, the segments and cuts on the same axis
    out.append('<h2 id="timeline">Timeline</h2><div class="strip">')
    out += [frame_figure(thumbs, vid, x["frame"], x["t_s"], aspect, root) for x in page["timeline"]]
    # every segment and cut has a label; those that would overlap a label to their left are thinned
    # (hidden, not removed): here for a timeline about 1200 px wide, then by report.js at the page's real width
    cuts = [s for s in page["segments"] if s["idx"] and s["cut_score"] is not None]
    cut_text = [f'cut {n(s["cut_score"], ".1f")}' for s in cuts]
    cut_shown = thin_labels([100 * s["start_s"] / dur for s in cuts], cut_text)
    out.append('</div><div class="cutlabels" data-labels>')
    for s, text, shown in zip(cuts, cut_text, cut_shown):
        out.append(f'<span class="tl-label{"" if shown else " thin"}" style="left:{100 * s["start_s"] / dur:.2f}%" '
                   f'title="{e(cut_title(s))}">{e(text)}</span>')
    centres = [100 * (s["start_s"] + s["end_s"]) / 2 / dur for s in page["segments"]]
    seg_shown = thin_labels(centres, [str(int(s["idx"])) for s in page["segments"]])
    out.append('</div><div class="segbar" data-labels>')
    for k, (s, shown) in enumerate(zip(page["segments"], seg_shown)):
        left, width = 100 * s["start_s"] / dur, 100 * (s["end_s"] - s["start_s"]) / dur
        title = f'segment {int(s["idx"])}: {n(s["start_s"], ".2f")}–{n(s["end_s"], ".2f")} s' + (
            f' · {cut_title(s)}' if s["idx"] else "")
        out.append(f'<a class="seg" href="#seg-{k}" style="left:{left:.2f}%;width:{width:.2f}%" title="{e(title)}">'
                   f'<span class="tl-label{"" if shown else " thin"}">{int(s["idx"])}</span></a>')
        if s["idx"]:
            out.append(f'<div class="cut" style="left:{left:.2f}%" title="{e(cut_title(s))}"></div>')
    out.append(f'</div><div class="axislabels"><span>0 s</span><span>{n(dur, ".1f")} s</span></div>')
    # segments
    cols = page["caption_columns"]
    out.append(f'<h2 id="segments">Segments ({len(page["segments"])})</h2>')
    if not page["segments"]:
        out.append('<p class="muted">not split</p>')
    for k, s in enumerate(page["segments"]):
        out.append(f'<section class="segment" id="seg-{k}" data-segment-id="{e(s["segment_id"])}" '
                   f'data-start-s="{n(s["start_s"], ".3f")}" data-end-s="{n(s["end_s"], ".3f")}">'
                   f'<h3>Segment {int(s["idx"])} · <span class="span">{n(s["start_s"], ".2f")}–{n(s["end_s"], ".2f")} s</span>'
                   f' <span class="muted">frames {int(s["start_frame"])}–{int(s["end_frame"])} · {e(s["detector"])}'
                   f' · cut score {n(s["cut_score"], ".2f")} · motion {n(s["motion"], ".2f")} · luma {n(s["luma"], ".0f")}</span></h3>')
        out.append('<div class="thumbs">' + "".join(
            frame_figure(thumbs, vid, f, f / v["fps"], aspect, root) for f in s["thumbs"]) + "</div>")
        out.append(f'<div class="captions" style="--cols:{max(1, len(cols))}">')
        for c in cols:
            cap = s["captions"].get(c["key"])
            head = f'<h4 title="{e(c["model"])}">{e(c["label"])} · {e(c["prompt_version"])}</h4>'
            body = (f'<p class="summary">{e(cap["summary"])}</p><p class="details">{e(cap["details"])}</p>' if cap
                    else '<p class="muted">not captioned by this model</p>')
            out.append(f'<div class="caption">{head}{body}</div>')
        if not cols:
            out.append('<div class="caption muted">no captions</div>')
        out.append("</div></section>")
    # dense captions
    out.append(f'<h2 id="dense">Dense caption ({len(page["dense"])})</h2>')
    for d in page["dense"]:
        out.append(f'<h3 title="{e(d["model"])}">{e(d["model"])} · {e(d["prompt_version"])}</h3><table class="dense">'
                   "<tr><th>span (s)</th><th>summary</th><th>details</th></tr>")
        out += [f'<tr><td class="num">{n(x["start_s"])}–{n(x["end_s"])}</td><td>{e(x["summary"])}</td>'
                f'<td>{e(x["details"])}</td></tr>' for x in d["entries"]]
        out.append(f'</table><details><summary>rendered text</summary><pre>{e(d["rendered"])}</pre></details>')
    if not page["dense"]:
        out.append('<p class="muted">none</p>')
    # grounding
    out.append(f'<h2 id="grounding">Grounding ({len(page["grounding"])})</h2>')
    for g in page["grounding"]:
        badges = "".join(f'<span class="badge {"pass" if x["passed"] else "fail"}" title="{e(x["model"])}">'
                         f'{"passed" if x["passed"] else "rejected: " + e("; ".join(x["reasons"]))}</span> '
                         for x in g["verdicts"])
        seg = f' · segment {g["segment"]}' if g["segment"] is not None else ""
        shown = (f' · {len(g["boxes"])} of {g["boxes_total"]} boxes shown' if g["boxes_total"] > len(g["boxes"])
                 else f' · {g["boxes_total"]} boxes')
        out.append(f'<div class="record" data-record-id="{e(g["record_id"])}"><h3><span class="phrase">{e(g["phrase"])}</span>'
                   f' <span class="action">{e(g["action"])}</span> · {n(g["start_s"], ".2f")}–{n(g["end_s"], ".2f")} s'
                   f'{seg} <span class="muted">· {e(g["source"])} {e(g["model"])}{shown}</span> {badges}</h3>'
                   '<div class="boxes">')
        out += [frame_figure(thumbs, vid, b["frame"], b["t_s"], aspect, root,
                             caption=f'{n(b["t_s"], ".2f")} s · frame {int(b["frame"])}', boxes=[b]) for b in g["boxes"]]
        out.append("</div></div>")
    if not page["grounding"]:
        out.append('<p class="muted">none</p>')
    # samples
    out.append(f'<h2 id="samples">Samples ({len(page["samples"])})</h2>')
    for s in page["samples"]:
        mix = "".join(f' <a class="badge" href="../mixtures/{e(m["page"])}.html">{e(m["name"])}</a>' for m in s["mixtures"])
        out.append(f'<details class="sample" id="sample-{e(s["sample_id"])}"><summary>{sample_head(s)} · '
                   f'{int(s["frames"])} frames{mix} <span class="muted">{e(s["sample_id"])}</span></summary>')
        out.append(chat_html(s["chat"], thumbs, vid, v["fps"], aspect, root, lazy=True) + "</details>")
    if not page["samples"]:
        out.append('<p class="muted">none</p>')
    if page["failures"]:
        out.append(f'<h2 id="failures">Failures ({len(page["failures"])})</h2><table>'
                   "<tr><th>stage</th><th>model</th><th>item</th><th>error</th><th>message</th></tr>")
        out += [f'<tr><td>{e(f["stage"])}</td>{variant_cell(f["variant"])}<td>{e(f["item_id"])}</td>'
                f'<td>{e(f["error_type"])}</td><td class="failure">{e(f["message"])}</td></tr>' for f in page["failures"]]
        out.append("</table>")
    out.append('<script src="../assets/report.js"></script>')
    return doc(f"{v['name']} · densevid report", "\n".join(out), root)


def cut_title(s: dict) -> str:
    """A cut's tooltip: its score and time (every cut has one, shown or thinned)."""
    return f'cut score {n(s["cut_score"], ".2f")} at {n(s["start_s"], ".2f")} s'


def thin_labels(centres_pct: list[float], texts: list[str], width_px: float = 1200.0, char_px: float = 6.5,
                gap_px: float = 4.0) -> list[bool]:
    """Which labels to show, left to right: one whose estimated box would overlap the last shown is hidden
    (the same rule report.js applies with measured boxes)."""
    shown, right = [], -math.inf
    for c, text in zip(centres_pct, texts):
        half = (len(text) * char_px + 4) / 2
        x = c * width_px / 100
        keep = x - half >= right + gap_px
        shown.append(keep)
        if keep:
            right = x + half
    return shown


# --- the video list ---------------------------------------------------------------------------------------


def video_list_html(rows: list[dict], k: int, n_pages: int, n_videos: int) -> str:
    root = "../"
    pages = _page_links(k, n_pages)
    out = [f"<h1>Videos ({n_videos})</h1>",
           '<input id="filter" type="search" placeholder="filter all videos by name, domain or id" autocomplete="off">'
           ' <span id="filter-note" class="muted"></span>', pages,
           "<table><thead><tr><th>video</th><th>domain</th><th>seconds</th><th>segments</th><th>captions</th>"
           '<th>grounding</th><th>samples</th><th>failures</th></tr></thead><tbody id="video-rows">']
    for r in rows:
        out.append(f'<tr><td><a href="../videos/{e(r["page"])}.html" title="{e(r["video_id"])}">{e(r["name"])}</a></td>'
                   f'<td>{e(r["domain"])}</td><td class="num">{n(r["duration_s"])}</td>'
                   + "".join(f'<td class="num">{int(r[c])}</td>' for c in ("segments", "captions", "grounding", "samples",
                                                                           "failures")) + "</tr>")
    out.append("</tbody></table>" + pages)
    out.append('<script src="../assets/videos.js"></script><script src="../assets/report.js"></script>')
    return doc(f"videos {k}/{n_pages} · densevid report", "\n".join(out), root)


def _page_links(k: int, n_pages: int) -> str:
    links = [f"<b>{i}</b>" if i == k else f'<a href="{list_page_name(i)}">{i}</a>' for i in range(1, n_pages + 1)]
    return f'<p class="pages">page {k} of {n_pages}: ' + " ".join(links) + "</p>"


def videos_js(rows: list[dict]) -> str:
    """The filter box's data: JSON with <, >, & and line separators escaped, so no text can end the script."""
    keep = ("video_id", "page", "name", "domain", "duration_s", "segments", "captions", "grounding", "samples", "failures")
    data = json.dumps([{k: r[k] for k in keep} for r in rows], separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        data = data.replace(a, b)
    return f"var DENSEVID_VIDEOS = {data};\n"


# --- the overview -----------------------------------------------------------------------------------------


def overview_html(o: dict, dataset: str) -> str:
    root = ""
    out = ["<h1>densevid report</h1>", f'<p class="meta">dataset {e(dataset)}</p>', '<div class="grid">',
           "<div><h2>Rows per table</h2><table>"]
    out += [f'<tr><td>{e(t)}</td><td class="num" data-table="{e(t)}">{int(c)}</td></tr>' for t, c in o["counts"].items()]
    out.append("</table></div><div><h2>Domains</h2><table><tr><th>domain</th><th>videos</th><th>hours</th>"
               "<th>segments</th><th>samples</th><th>sample hours</th></tr>")
    out += [f'<tr data-domain="{e(d["domain"])}"><td>{e(d["domain"])}</td><td class="num">{int(d["videos"])}</td>'
            f'<td class="num">{n(d["hours"], ".3f")}</td><td class="num">{int(d["segments"])}</td>'
            f'<td class="num">{int(d["samples"])}</td><td class="num">{n(d["sample_hours"], ".3f")}</td></tr>'
            for d in o["domains"]]
    out.append("</table>")
    labels = [str(d["domain"]) for d in o["domains"]]
    out.append(bar_chart(labels, [("hours", [d["hours"] for d in o["domains"]])], fmt=lambda v: n(v, ".3f"),
                         width=420, title="hours per domain"))
    out.append(bar_chart(labels, [("samples", [d["samples"] for d in o["domains"]])], fmt=lambda v: n(v, ".0f"),
                         width=420, title="samples per domain"))
    out.append("</div></div>")
    out.append(f'<h2 id="videos">Videos ({int(o["videos"])})</h2><p>'
               + " ".join(f'<a href="list/{list_page_name(k)}">page {k}</a>' for k in range(1, o["list_pages"] + 1))
               + f' <span class="muted">({PAGE_SIZE} per page, with a filter over all videos)</span></p>')
    out.append(f'<h2 id="mixtures">Mixtures ({len(o["mixtures"])})</h2>')
    if o["mixtures"]:
        out.append("<table><tr><th>mixture</th><th>split</th><th>unit</th><th>rows</th><th>balanced by</th>"
                   "<th>max share error</th><th>warnings</th></tr>")
        out += [f'<tr><td><a href="mixtures/{e(m["page"])}.html">{e(m["name"])}</a></td><td>{e(m["split"])}</td>'
                f'<td>{e(m["unit"])}</td><td class="num">{int(m["rows"])}</td><td>{e(", ".join(m["balanced_by"]))}</td>'
                f'<td class="num">{n(m["max_error"], ".3f") if m["max_error"] is not None else "–"}</td>'
                f'<td class="failure">{e(_lacks(m))}</td></tr>' for m in o["mixtures"]]
        out.append("</table>")
    else:
        out.append('<p class="muted">none yet: <code>densevid mix --data DIR</code></p>')
    out.append(f'<h2 id="failures">Failures ({int(o["n_failures"])} open)</h2>')
    if o.get("resolved_failures"):
        out.append(f'<p class="muted">{int(o["resolved_failures"])} more resolved by a later run (kept in the '
                   '<code>failures</code> table; <code>open_failures</code> lists the rest)</p>')
    if o["failures"]:
        out.append("<table><tr><th>stage</th><th>model</th><th>error</th><th>count</th><th>examples</th></tr>")
        for f in o["failures"]:
            ex = "<br>".join(f'<b>{e(x["item_id"])}</b>: <span class="failure">{e(x["message"])}</span>' for x in f["examples"])
            out.append(f'<tr data-stage="{e(f["stage"])}"><td>{e(f["stage"])}</td>{variant_cell(f["variant"])}'
                       f'<td>{e(f["error_type"])}</td><td class="num">{int(f["count"])}</td><td>{ex}</td></tr>')
        out.append("</table>")
    else:
        out.append('<p class="muted">none</p>')
    out.append("<h2>Verification</h2>")
    if o["verification"]:
        out.append("<table><tr><th>verifying model</th><th>records</th><th>passed</th><th>form</th><th>caption</th>"
                   "<th>cycle</th><th>most common reasons</th></tr>")
        for v in o["verification"]:
            out.append(f'<tr><td>{e(v["model"])}</td><td class="num">{int(v["records"])}</td>'
                       + "".join(f'<td class="num">{pct(v[k], v["records"])}</td>'
                                 for k in ("passed", "form_ok", "caption_ok", "cycle_ok"))
                       + "<td>" + "; ".join(f"{e(r)} ×{int(c)}" for r, c in v["reasons"]) + "</td></tr>")
        out.append('</table><div class="grid">')
        out += [histogram_chart(v["cycle_tiou"], f"cycle tIoU · {v['model']}", ".2f") for v in o["verification"]]
        out.append("</div>")
    elif not o.get("unverified"):
        out.append('<p class="muted">no verdicts yet (<code>densevid verify</code>)</p>')
    out += [f'<p class="failure" data-unverified="{e(u["model"])}">{e(unverified_line(u))}</p>'
            for u in o.get("unverified") or []]
    if o["quality"] is not None:
        q = o["quality"]
        out.append(f'<h2>Quality</h2><p>{int(q["kept"])} of {int(q["segments"])} segments kept '
                   f'({pct(q["kept"], q["segments"])}); ' + "; ".join(f"{e(r)} ×{int(c)}" for r, c in q["reasons"]) + "</p>")
    out.append('<h2>Distributions</h2><div class="grid">')
    dist = o["distributions"]
    out.append(histogram_chart(dist["segment_s"], "segment length (s)"))
    out.append(histogram_chart(dist["cut_score"], "cut score at each cut"))
    out.append(histogram_chart(dist["sample_tokens"], "tokens per sample", ".0f"))
    out.append("<div><h3>samples per task</h3>" + bar_chart(list(o["tasks"]), [("samples", list(o["tasks"].values()))],
                                                            fmt=lambda v: n(v, ".0f"), width=420, title="samples per task")
               + "</div></div>")
    return doc("densevid report", "\n".join(out), root)


def unverified_line(u: dict) -> str:
    """Why a verify run left no verdicts, in one sentence."""
    head = f"verify ran (model {u['model']}) and wrote no verdicts: {u['records']} records to check"
    if u["records"]:
        why = "; ".join(f"{k} ×{v}" for k, v in u["reasons"])
        return head + f", {u['failed']} failed" + (f" ({why})" if why else "")
    if u["ground_records"]:  # written after that run
        return head + f"; ground has written {u['ground_records']} records since: run densevid verify again"
    if not u["ground_ran"]:
        return head + ", as ground has not run with this model (densevid ground)"
    failed = sum(v for _, v in u["ground_failed"])
    kinds = ", ".join(f"{k} ×{v}" for k, v in u["ground_failed"])
    return (head + f", as ground wrote {u['ground_records']} usable records over {u['segments']} segments: "
            f"{_count(failed, 'failure')}" + (f" ({kinds})" if kinds else "") +
            f", {_count(u['ground_empty'], 'segment')} where it found nothing; the failures table holds each "
            "failure's message and raw output")


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _lacks(m: dict) -> str:
    """The overview's warning for a mixture whose split lacks groups the dataset has."""
    parts = [f"lacks {dim}s {', '.join(m[key])}" for dim, key in (("domain", "missing_domains"), ("task", "missing_tasks"))
             if m.get(key)]
    return "; ".join(parts)


# --- a mixture --------------------------------------------------------------------------------------------


def mixture_html(m: dict, thumbs: Thumbs | None) -> str:
    root = "../"
    unit = m["unit"]
    out = [f"<h1>Mixture {e(m['name'])}</h1>",
           f'<p class="meta"><span>split {e(m["split"])}</span><span>unit {e(unit)}</span>'
           f'<span>{int(m["rows"])} rows ({int(m["distinct_samples"])} distinct samples, {int(m["repeated_rows"])} repeated)</span>'
           f'<span>balanced by {e(", ".join(m["balanced_by"]) or "nothing")}</span>'
           f'<span>max share error {n(m["max_error"], ".3f")}</span><span>folder {e(m["dir"])}</span></p>']
    if m["missing_targets"]:
        out.append(f'<p class="failure">targeted groups absent: {e(json.dumps(m["missing_targets"]))}</p>')
    out += [f'<p class="failure warning">warning: {e(w)}</p>' for w in m["warnings"]]
    out.append('<h2>Target vs achieved</h2><div class="grid">')
    dims = m["dimensions"]
    for dim in (m["balanced_by"] or [d for d in ("domain",) if d in dims]):
        rows = dims.get(dim) or []
        series = [("before", [r.get("before", 0.0) for r in rows]), ("target", [r.get("target", 0.0) for r in rows]),
                  ("achieved", [r.get("achieved", 0.0) for r in rows])]
        out.append(f'<div data-dimension="{e(dim)}"><h3>{e(dim)} (share of {e(unit)})</h3>'
                   + bar_chart([str(r["group"]) for r in rows], series, width=520, title=f"{m['name']}: {dim}") + "</div>")
    out.append("</div>")
    for dim, rows in dims.items():
        out.append(f'<h3>{e(dim)}</h3><table class="balance" data-dimension="{e(dim)}"><tr><th>group</th><th>target</th>'
                   "<th>before</th><th>achieved</th><th>error</th><th>samples</th></tr>")
        out += [f'<tr><td>{e(r["group"])}</td><td class="num">{n(r.get("target"), ".3f")}</td>'
                f'<td class="num">{n(r.get("before"), ".3f")}</td><td class="num">{n(r.get("achieved"), ".3f")}</td>'
                f'<td class="num">{n(r.get("error"), "+.3f")}</td><td class="num">{n(r.get("samples"), ".0f")}</td></tr>'
                for r in rows]
        out.append("</table>")
    if m["filtered"]:
        out.append("<h3>What the filter and the per-video cap left, per domain</h3><table><tr><th>domain</th>"
                   "<th>in split</th><th>after filter</th><th>after cap</th></tr>")
        out += [f'<tr><td>{e(f.get("domain"))}</td><td class="num">{n(f.get("split"), ".0f")}</td>'
                f'<td class="num">{n(f.get("filter"), ".0f")}</td><td class="num">{n(f.get("cap"), ".0f")}</td></tr>'
                for f in m["filtered"]]
        out.append("</table>")
    out.append("<p>rows per task: " + ", ".join(f"{e(k)} {int(v)}" for k, v in m["tasks"].items()) + "</p>")
    if m["sql"]:
        out.append(f'<details><summary>selection SQL (runs in <code>densevid sql</code>)</summary><pre>{e(m["sql"])}</pre></details>')
    out.append(f'<h2 id="examples">Example samples ({len(m["examples"])}), as the model sees them</h2>')
    for x in m["examples"]:
        out.append(f'<div class="record example" id="sample-{e(x["sample_id"])}"><h3>{sample_head(x)} · '
                   f'<a href="../videos/{e(x["video_page"])}.html#sample-{e(x["sample_id"])}">{e(x["video_name"])}</a></h3>')
        out.append(chat_html(x["chat"], thumbs, x["video_id"], x["fps"] or 1.0, _aspect(x), root) + "</div>")
    return doc(f"mixture {m['name']} · densevid report", "\n".join(out), root)
