"""The rounds page from a rounds row: scores per round, the gate against hidden truth, captions side by side."""

from __future__ import annotations

from report.rounds import rounds_html


def test_rounds_page_shows_scores_gate_truth_and_captions_as_text():
    truth = {"checks": {"overall": dict(precision_passed=0.9, recall_correct=0.25, precision_rejected=None,
                                        recall_incorrect=0.5)}}
    row = dict(round=1, teacher="<b>t</b>", gate="on", pool_videos=4, records=10, gate_pass_rate=0.3,
               gate_check_rates={"form": 1.0, "cycle": 0.4}, mixture_samples=50, model_samples=3,
               grounding_miou=0.4567, grounding_r05=0.5, dense_f1_05=None, needle_accuracy=None, train_s=12.0,
               gate_truth=truth, student="s",
               examples=[dict(video_id="v", segment_id="g1", start_s=0.0, end_s=8.0, teacher_summary="a <i>b</i>",
                              student_summary=None)])
    page = rounds_html({"rounds": [row]})
    assert '<tr data-round="1">' in page and "<td>&lt;b&gt;t&lt;/b&gt;</td>" in page
    assert "0.457" in page and "0.30" in page and "0.40" in page  # mIoU, pass rate, the cycle check's rate
    assert "<td>overall</td><td class=\"num\">0.900</td><td class=\"num\">0.250</td><td class=\"num\">–</td>" in page
    assert "a &lt;i&gt;b&lt;/i&gt;" in page and "not captioned by the student yet" in page
    assert "none yet" in rounds_html({"rounds": []})
