"""The rounds page (``rounds.html``): each round of the loop side by side (its teacher, gate pass rates, mixture
and held-out scores), and, per segment of a round's pool, the teacher's caption beside the student's.

A student's captions exist once it has labelled (as the next round's teacher); until then its column says so.
"""

from __future__ import annotations

import json

from curation.store import Dataset
from report.html import bar_chart, doc, e, n

SCORES = (("grounding_miou", "grounding mIoU"), ("grounding_r05", "R@0.5"), ("dense_f1_05", "dense F1@0.5"),
          ("needle_accuracy", "needle accuracy"))
EXAMPLES_PER_ROUND = 8


def rounds_page(ds: Dataset) -> dict:
    """The rounds (every column but the config) and, per round, a few segments captioned by its teacher with
    the student's caption of the same segment where there is one."""
    rounds = ds.sql('SELECT * EXCLUDE (config) FROM rounds ORDER BY "round"').to_pylist()
    for r in rounds:
        r["gate_check_rates"] = json.loads(r["gate_check_rates"] or "{}")
        r["gate_truth"] = json.loads(r["gate_truth"]) if r["gate_truth"] else None
        r["examples"] = caption_pairs(ds, r["teacher"], r["student"], EXAMPLES_PER_ROUND)
    return dict(rounds=rounds)


def caption_pairs(ds: Dataset, teacher: str, student: str, limit: int) -> list[dict]:
    """Segments the teacher captioned, in time order, with the student's summary of each (None if none)."""
    return ds.sql(
        "SELECT t.video_id, t.segment_id, t.start_s, t.end_s, t.summary AS teacher_summary, "
        "s.summary AS student_summary FROM captions t LEFT JOIN captions s "
        "ON s.segment_id = t.segment_id AND s.prompt_version = t.prompt_version AND s.model = ? "
        "WHERE t.model = ? ORDER BY (s.summary IS NULL), t.video_id, t.start_s LIMIT ?",
        [student, teacher, limit]).to_pylist()


def rounds_html(page: dict) -> str:
    rounds = page["rounds"]
    out = [f"<h1>Rounds ({len(rounds)})</h1>"]
    if not rounds:
        out.append('<p class="muted">none yet: <code>densevid round --data DIR --teacher MODEL --round 0</code></p>')
        return doc("rounds", "\n".join(out), "")
    checks = sorted({c for r in rounds for c in r["gate_check_rates"]})
    head = ["round", "teacher", "gate", "pool videos", "records", "passed", *checks, "mixture samples",
            "from the teacher", *(label for _, label in SCORES), "train s"]
    out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
    for r in rounds:
        cells = [str(int(r["round"])), e(r["teacher"]), e(r["gate"]), str(int(r["pool_videos"])), str(int(r["records"])),
                 n(r["gate_pass_rate"], ".2f"), *(n(r["gate_check_rates"].get(c), ".2f") for c in checks),
                 str(int(r["mixture_samples"])), str(int(r["model_samples"])),
                 *(n(r[key], ".3f") for key, _ in SCORES), n(r["train_s"], ".0f")]
        out.append(f'<tr data-round="{int(r["round"])}">' + "".join(
            f'<td class="num">{c}</td>' if i != 1 else f"<td>{c}</td>" for i, c in enumerate(cells)) + "</tr>")
    out.append("</table>")
    labels = [f"round {int(r['round'])}" for r in rounds]
    out.append(bar_chart(labels, [(label, [r[key] or 0.0 for r in rounds]) for key, label in SCORES[:3]],
                         width=520, title="held-out scores per round"))
    out += [_truth_html(r) for r in rounds if r["gate_truth"]]
    for r in rounds:
        out.append(_examples_html(r))
    return doc("rounds", "\n".join(out), "")


def _truth_html(r: dict) -> str:
    """The gate against truth hidden from the round: precision and recall per check."""
    rows = [f'<h2>Round {int(r["round"])}: the gate against hidden truth</h2><table><tr><th>check</th>'
            "<th>precision of passed</th><th>recall of correct</th><th>precision of rejected</th>"
            "<th>recall of incorrect</th></tr>"]
    for check, s in r["gate_truth"]["checks"].items():
        rows.append(f"<tr><td>{e(check)}</td>" + "".join(
            f'<td class="num">{n(s.get(k), ".3f")}</td>'
            for k in ("precision_passed", "recall_correct", "precision_rejected", "recall_incorrect")) + "</tr>")
    rows.append("</table>")
    return "".join(rows)


def _examples_html(r: dict) -> str:
    out = [f'<h2>Round {int(r["round"])}: teacher and student captions</h2>',
           f'<p class="meta">teacher {e(r["teacher"])}<br>student {e(r["student"])}</p>']
    if not r["examples"]:
        out.append('<p class="muted">the teacher captioned no segment</p>')
        return "\n".join(out)
    out.append("<table><tr><th>segment</th><th>span</th><th>teacher</th><th>student</th></tr>")
    for x in r["examples"]:
        student = e(x["student_summary"]) if x["student_summary"] is not None else \
            '<span class="muted">not captioned by the student yet (it labels as the next round\'s teacher)</span>'
        out.append(f'<tr data-segment="{e(x["segment_id"])}"><td>{e(x["segment_id"])}</td>'
                   f'<td class="num">{n(x["start_s"])}–{n(x["end_s"])} s</td>'
                   f"<td>{e(x['teacher_summary'])}</td><td>{student}</td></tr>")
    out.append("</table>")
    return "\n".join(out)
