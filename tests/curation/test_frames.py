import pytest

from curation.frames import FramePolicy, sample_indices
from curation.times import frame_times, group_times


def test_two_fps_on_a_24fps_span_picks_bin_centres():
    # 10 s at 24 fps -> 20 frames, one per 12-frame bin, at the bin centre (6, 18, ...)
    idx = sample_indices(0, 240, 24.0)
    assert idx == [6 + 12 * k for k in range(20)]
    assert frame_times(idx, 24.0)[:3] == [0.25, 0.75, 1.25]


def test_count_is_even_and_capped():
    idx = sample_indices(100, 100 + 24 * 7 + 5, 24.0)  # ~7.2 s -> 14 frames
    assert len(idx) == 14 and len(idx) % 2 == 0
    assert all(100 <= i < 100 + 24 * 7 + 5 for i in idx)
    assert len(sample_indices(0, 24 * 600, 24.0, FramePolicy(max_frames=64))) == 64


def test_short_span_repeats_frames_inside_it():
    assert sample_indices(50, 51, 30.0) == [50, 50]
    assert sample_indices(10, 13, 30.0) == [10, 12]  # bin centres 10.75, 12.25


def test_empty_span_and_bad_policy_are_errors():
    with pytest.raises(ValueError, match="empty frame span"):
        sample_indices(5, 5, 24.0)
    with pytest.raises(ValueError, match="even"):
        FramePolicy(min_frames=3)


def test_group_times_are_the_processor_timestamps():
    # the processor averages each pair of frames
    assert group_times([6, 18, 30, 42], 24.0) == [0.5, 1.5]
    assert group_times([0, 24, 48], 24.0) == [0.5, 2.0]


def test_fit_pixels_keeps_aspect_under_the_budget():
    import numpy as np

    from curation.frames import fit_pixels

    frames = np.zeros((2, 2160, 3840, 3), np.uint8)
    small = fit_pixels(frames, 768 * 32 * 32)
    n, h, w, c = small.shape
    assert (n, c) == (2, 3) and h * w <= 768 * 32 * 32
    assert abs(w / h - 16 / 9) < 0.01
    same = np.zeros((1, 64, 64, 3), np.uint8)
    assert fit_pixels(same, 10**6) is same
