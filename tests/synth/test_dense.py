import pytest

from curation.times import parse_spans
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


def test_storyline_keeps_spans_or_is_rejected():
    from synth.dense import check_storyline

    entries = merge_entries([_cap(0.0, 5.0, "a"), _cap(5.0, 9.0, "b")])
    kept = check_storyline(entries, [dict(start_s=0.0, end_s=5.02, summary="First a"),
                                     dict(start_s=5.0, end_s=9.0, summary="then b")])
    assert [e["summary"] for e in kept] == ["First a", "then b"] and kept[0]["end_s"] == 5.0
    with pytest.raises(ValueError, match=r"entry 1: time moved from \[5.00, 9.00\] to \[6.00, 9.00\]"):
        check_storyline(entries, [dict(start_s=0.0, end_s=5.0, summary="x"), dict(start_s=6.0, end_s=9.0, summary="y")])
    with pytest.raises(ValueError, match="has 1 entries"):
        check_storyline(entries, [dict(start_s=0.0, end_s=5.0, summary="x")])


def test_storyline_pass_with_the_tiny_model_is_checked(built_dataset, tmp_path):
    import shutil

    from curation.executors import run_stage
    from curation.store import Dataset
    from synth.dense import DenseStage

    cfg, _ = built_dataset
    copy = tmp_path / "ds"
    shutil.copytree(cfg.data, copy)
    ds = Dataset(copy)
    shutil.rmtree(copy / "dense_captions")
    stats = run_stage(DenseStage(model_id=cfg.model, storyline=True), ds, progress=False)
    rows = ds.rows("dense_captions")
    assert len(rows) == 3
    # every rewrite is checked: a kept one carries exactly the entries' spans, a rejected one leaves no storyline
    kept = [r for r in rows if r["storyline"]]
    assert stats.counts["storyline_kept"] == len(kept) and stats.counts["storyline_rejected"] == 3 - len(kept)
    for r in rows:
        spans = [(round(e["start_s"], 1), round(e["end_s"], 1)) for e in r["entries"]]
        assert parse_spans(r["rendered"]) == spans
        if r["storyline"]:
            assert parse_spans(r["storyline"]) == spans
