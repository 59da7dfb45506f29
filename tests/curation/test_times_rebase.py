"""Moving every time of a text to a clip's clock: exact strings in, exact strings out."""

import json

import pytest

from curation.times import TimeOutsideClip, parse_times, rebase_times


def test_spans_and_instants_in_both_styles_move_by_the_offset():
    text = ("Events: <12.0 - 17.5 seconds> a door opens. At <12.5 seconds> a light. "
            "Clock <00:00:12 - 00:00:17> and <00:00:15>.")
    assert rebase_times(text, 10.0, 10.0) == ("Events: <2.0 - 7.5 seconds> a door opens. At <2.5 seconds> a light. "
                                              "Clock <00:00:02 - 00:00:07> and <00:00:05>.")


def test_offset_is_subtracted_before_rounding_again():
    # clip starting at frame 35 of a 24 fps video: 1.458333 s
    assert rebase_times("<6.5 - 9.0 seconds>", 35 / 24, 8.0) == "<5.0 - 7.5 seconds>"
    assert rebase_times("<3.0 seconds>", 35 / 24, 8.0) == "<1.5 seconds>"  # 1.541667 -> 1.5
    assert rebase_times("<00:00:09>", 35 / 24, 8.0) == "<00:00:07>"  # 7.54 -> whole seconds, as hms renders


def test_times_inside_json_answers_move_and_the_json_stays_valid():
    answer = json.dumps({"phrase": "the red square", "time": "<4.0 - 6.0 seconds>",
                         "boxes": [{"time": "<4.5 seconds>", "bbox_2d": [1, 2, 3, 4]},
                                   {"time": "<5.5 seconds>", "bbox_2d": [5, 6, 7, 8]}]})
    moved = rebase_times(answer, 4.0, 2.0)
    assert moved == ('{"phrase": "the red square", "time": "<0.0 - 2.0 seconds>", "boxes": [{"time": '
                     '"<0.5 seconds>", "bbox_2d": [1, 2, 3, 4]}, {"time": "<1.5 seconds>", "bbox_2d": [5, 6, 7, 8]}]}')
    assert json.loads(moved)["boxes"][1]["time"] == "<1.5 seconds>"


def test_hints_and_other_numbers_are_left_alone():
    text = "Answer with the time span as <start - end seconds> or <t seconds>; 3 people, 12.5 m, <b>bold</b>."
    assert rebase_times(text, 5.0, 1.0) == text
    assert parse_times(text) == []


def test_rounding_at_the_clip_ends_is_clamped_within_tolerance():
    # 2.0 was rendered from 2.04; the clip starts at 2.04: -0.04 s on the clip's clock
    assert rebase_times("<2.0 - 3.0 seconds>", 2.04, 5.0) == "<0.0 - 1.0 seconds>"
    assert rebase_times("<7.1 seconds>", 2.0, 5.0) == "<5.0 seconds>"
    assert rebase_times("<00:00:11>", 0.5, 10.0) == "<00:00:10>"  # 10.5 s: within an hms second


def test_a_time_outside_the_clip_names_the_value():
    with pytest.raises(TimeOutsideClip, match=r"time 9\.5 s in '<9\.5 seconds>' is 5\.500 s on the clip's clock, "
                                              r"outside the clip \[0, 5\.000\] s"):
        rebase_times("from <4.0 - 6.0 seconds>, peak <9.5 seconds>", 4.0, 5.0)
    with pytest.raises(TimeOutsideClip, match=r"time 1 s in '<1\.0 - 2\.0 seconds>' is -3\.000 s"):
        rebase_times("<1.0 - 2.0 seconds>", 4.0, 5.0)
    assert issubclass(TimeOutsideClip, ValueError)


def test_parse_times_reads_every_time_in_order():
    text = 'x <1.0 - 2.5 seconds> y <00:01:02> {"time": "<3.5 seconds>"} <00:00:04 - 00:00:05>'
    assert parse_times(text) == [1.0, 2.5, 62.0, 3.5, 4.0, 5.0]
