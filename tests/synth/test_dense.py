import pytest

from synth.dense import merge_entries, render_dense


def _cap(s, e, text):
    return dict(start_s=s, end_s=e, summary=text, details="objects: a cup")


def test_seconds_renderer_exact_layout():
    entries = merge_entries([_cap(12.0, 17.5, "A cup is lifted"), _cap(0.25, 11.75, "A hand enters.")])
    assert render_dense(entries) == (
        "<0.2 - 11.8 seconds> A hand enters. objects: a cup\n"
        "<12.0 - 17.5 seconds> A cup is lifted. objects: a cup"
    )


def test_hms_renderer_exact_layout():
    entries = merge_entries([_cap(12.0, 3725.0, "Long scene")])
    assert render_dense(entries, "hms", details=False) == "<00:00:12 - 01:02:05> Long scene."


def test_overlapping_segments_are_rejected():
    with pytest.raises(ValueError, match="overlap"):
        merge_entries([_cap(0, 5, "a"), _cap(4, 8, "b")])
