"""The one home of time: frame spans, the renderers and their parser."""

import pytest

from curation.times import FrameSpan, parse_span, parse_spans, render_span, render_time


def test_frame_span_gives_seconds_from_frames():
    span = FrameSpan(36, 180, 24.0)
    assert (span.start_s, span.end_s, span.n_frames) == (1.5, 7.5, 144)
    with pytest.raises(ValueError, match="ends before it starts"):
        FrameSpan(10, 5, 24.0)
    with pytest.raises(ValueError, match="fps 0"):
        FrameSpan(0, 5, 0)


def test_renderers_exact_text():
    assert render_span(12.0, 17.46) == "<12.0 - 17.5 seconds>"
    assert render_time(0.25) == "<0.2 seconds>"  # Python rounds half to even, as the processor's f-string does
    assert render_span(12.0, 3725.9, "hms") == "<00:00:12 - 01:02:05>"
    assert render_time(3725.0, "hms") == "<01:02:05>"
    with pytest.raises(ValueError, match="choose one of seconds, hms"):
        render_span(0, 1, "frames")


def test_parser_reads_what_the_renderers_write():
    text = f"first {render_span(3.0, 7.5)} then {render_span(8.0, 9.0, 'hms')} and <10 - 12.25 seconds>"
    assert parse_spans(text) == [(3.0, 7.5), (8.0, 9.0), (10.0, 12.25)]
    assert parse_span(text) == (3.0, 7.5)
    assert parse_span("< 2.5-7 seconds >") == (2.5, 7.0)
    assert parse_span("no time here, 3 s") is None
