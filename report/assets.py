"""The report's stylesheet and script, written to ``<out>/assets/`` with the pages."""

CSS = """
:root { --fg: #1d2327; --muted: #69737c; --line: #d8dee4; --bg: #f6f8fa; --accent: #0b63c5; --box: #ff2d55; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0; }
header.top { background: #16202a; color: #fff; padding: 8px 20px; }
header.top a { color: #cfe3ff; text-decoration: none; margin-right: 14px; }
main { padding: 12px 20px 40px; max-width: 1500px; }
h1 { font-size: 22px; margin: 8px 0; word-break: break-all; }
h2 { font-size: 17px; margin: 26px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 14px; margin: 6px 0; }
a { color: var(--accent); }
.meta, .muted { color: var(--muted); }
.meta span { margin-right: 14px; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--bg); }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { white-space: pre-wrap; word-break: break-word; background: var(--bg); padding: 8px; margin: 4px 0; }
.grid { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.chart text { font-size: 11px; fill: var(--fg); }
.chart .s0 { fill: #9fb3c8; } .chart .s1 { fill: #f2a541; } .chart .s2 { fill: #2f7ed8; }
.chart .axis { stroke: #888; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.legend .s0 { background: #9fb3c8; } .legend .s1 { background: #f2a541; } .legend .s2 { background: #2f7ed8; }
.strip { display: flex; width: 100%; }
.strip figure { flex: 1 1 0; margin: 0; min-width: 0; }
.frame { position: relative; background: #2a2f35; aspect-ratio: var(--aspect, 4 / 3); overflow: hidden; }
.frame img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: fill; display: block; }
.frame .box { position: absolute; border: 2px solid var(--box); box-shadow: 0 0 0 1px #fff8; }
.frame .nothumb { position: absolute; inset: 0; color: #aab; font-size: 11px; padding: 4px; }
figcaption { font-size: 11px; color: var(--muted); text-align: center; white-space: nowrap; overflow: hidden; }
.segbar { position: relative; height: 34px; background: var(--bg); border: 1px solid var(--line); margin-top: 2px; }
.segbar .seg { position: absolute; top: 3px; bottom: 3px; background: #cfe3ff; border: 1px solid #7aa7e0;
  font-size: 11px; color: var(--fg); text-decoration: none; }
.segbar .tl-label { position: absolute; left: 50%; top: 50%; transform: translate(-50%, -50%); white-space: nowrap;
  pointer-events: none; line-height: 1; z-index: 1; background: #cfe3ff; padding: 1px; }
.segbar .seg:hover { background: #a9ccf7; }
.segbar .cut { position: absolute; top: -2px; bottom: -2px; width: 0; border-left: 2px solid #d0312d; }
.segbar .cut::before { content: ""; position: absolute; top: 0; bottom: 0; left: -5px; width: 8px; }
.cutlabels { position: relative; height: 16px; font-size: 10px; color: #d0312d; }
.cutlabels .tl-label { position: absolute; transform: translateX(-50%); white-space: nowrap; }
.tl-label.thin { visibility: hidden; }
.axislabels { display: flex; justify-content: space-between; font-size: 11px; color: var(--muted); }
section.segment { border: 1px solid var(--line); border-radius: 4px; padding: 8px 10px; margin: 10px 0; }
section.segment .thumbs { display: flex; gap: 6px; }
section.segment .thumbs figure { width: 160px; margin: 0; }
.captions { display: grid; grid-template-columns: repeat(var(--cols, 1), minmax(0, 1fr)); gap: 10px; margin-top: 8px; }
.caption { background: var(--bg); padding: 6px 8px; border-radius: 4px; }
.caption h4 { margin: 0 0 4px; font-size: 12px; color: var(--muted); font-weight: 600; }
.caption .summary { font-weight: 600; margin: 0 0 4px; }
.caption .details { margin: 0; white-space: pre-wrap; }
.record { border: 1px solid var(--line); border-radius: 4px; padding: 8px 10px; margin: 10px 0; }
.record .boxes { display: flex; flex-wrap: wrap; gap: 6px; }
.record .boxes figure { width: 150px; margin: 0; }
.badge { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; background: #e4e8ec; }
.badge.pass { background: #cdeccd; } .badge.fail { background: #f6d0cf; }
.chat { border-left: 3px solid var(--line); padding-left: 10px; margin: 6px 0; }
.turn { margin: 6px 0; }
.turn .role { font-size: 11px; font-weight: 700; text-transform: uppercase; color: var(--muted); }
.turn.assistant .text { background: #eef6ee; }
.turn .text { white-space: pre-wrap; word-break: break-word; background: var(--bg); padding: 6px 8px;
  border-radius: 4px; font-family: ui-monospace, monospace; font-size: 12px; }
.video { display: flex; flex-wrap: wrap; align-items: center; gap: 3px; margin: 4px 0;
  font-family: ui-monospace, monospace; font-size: 11px; }
.video .tok { color: var(--muted); }
.video .marker { color: #8a3ffc; font-weight: 600; }
.video figure { width: 72px; margin: 0; }
details > summary { cursor: pointer; }
.pages a, .pages b { margin-right: 6px; }
#filter { width: 320px; padding: 4px 6px; margin: 6px 0; }
.failure { color: #a21d1a; }
"""

JS = """
// A video's timeline: in each row of labels (segment numbers, cut scores), a label whose box would overlap
// the last one shown to its left is hidden, so at any width or zoom none overlap; every cut keeps its score
// in its tooltip.
(function () {
  var rows = document.querySelectorAll('[data-labels]');
  if (!rows.length) return;
  function layout() {
    Array.prototype.forEach.call(rows, function (row) {
      var labels = Array.prototype.slice.call(row.querySelectorAll('.tl-label'));
      var boxes = labels.map(function (el) { return el.getBoundingClientRect(); });  // hidden ones keep their box
      var right = -Infinity;
      labels.forEach(function (el, k) {
        var keep = boxes[k].width > 0 && boxes[k].left >= right + 4;
        el.classList.toggle('thin', !keep);
        if (keep) right = boxes[k].right;
      });
    });
  }
  layout();
  window.addEventListener('resize', layout);
})();

// The video list: typing in the filter box searches every video (DENSEVID_VIDEOS, from videos.js) and
// shows the first matches; empty, the page's own rows come back. Text is set with textContent only.
(function () {
  var input = document.getElementById('filter');
  var body = document.getElementById('video-rows');
  if (!input || !body || typeof DENSEVID_VIDEOS === 'undefined') return;
  var own = Array.prototype.slice.call(body.children);
  var note = document.getElementById('filter-note');
  var cols = ['duration_s', 'segments', 'captions', 'grounding', 'samples', 'failures'];
  function cell(tr, text, cls) {
    var td = document.createElement('td');
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  input.addEventListener('input', function () {
    var q = input.value.trim().toLowerCase();
    while (body.firstChild) body.removeChild(body.firstChild);
    if (!q) { own.forEach(function (tr) { body.appendChild(tr); }); note.textContent = ''; return; }
    var hits = DENSEVID_VIDEOS.filter(function (v) {
      return (v.name + ' ' + v.domain + ' ' + v.video_id).toLowerCase().indexOf(q) >= 0;
    });
    hits.slice(0, 200).forEach(function (v) {
      var tr = document.createElement('tr');
      var td = document.createElement('td');
      var a = document.createElement('a');
      a.href = '../videos/' + encodeURIComponent(v.page) + '.html';
      a.textContent = v.name;
      td.appendChild(a);
      tr.appendChild(td);
      cell(tr, v.domain);
      cols.forEach(function (c) {
        cell(tr, c === 'duration_s' ? Number(v[c]).toFixed(1) : String(v[c]), 'num');
      });
      body.appendChild(tr);
    });
    note.textContent = hits.length + ' matching videos' + (hits.length > 200 ? ', first 200 shown' : '');
  });
})();
"""
