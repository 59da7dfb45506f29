import pytest

from synth.grounding import validate_record


def _rec(**kw):
    rec = dict(phrase="the red square", action="moves", start_s=2.0, end_s=4.0,
               boxes=[dict(t_s=3.0, bbox_2d=[10, 20, 300, 400])])
    rec.update(kw)
    return rec


def test_valid_record_gives_sorted_boxes():
    boxes = validate_record(_rec(boxes=[dict(t_s=3.5, bbox_2d=[1, 2, 3, 4]), dict(t_s=2.5, bbox_2d=[5, 6, 7, 8])]), 1, 5)
    assert [b["t_s"] for b in boxes] == [2.5, 3.5] and boxes[0]["x1"] == 5


@pytest.mark.parametrize("bad, message", [
    (dict(start_s=4.0, end_s=2.0), "not an ordered span"),
    (dict(end_s=9.0), "inside the segment"),
    (dict(boxes=[dict(t_s=3.0, bbox_2d=[300, 20, 10, 400])]), "x1 < x2"),
    (dict(boxes=[dict(t_s=3.0, bbox_2d=[0, 0, 10, 1001])]), "<= 1000"),
    (dict(boxes=[dict(t_s=9.0, bbox_2d=[0, 0, 10, 10])]), "box time 9.0"),
    (dict(phrase="  "), "empty phrase"),
])
def test_invalid_records_name_the_bad_value(bad, message):
    with pytest.raises(ValueError, match=message):
        validate_record(_rec(**bad), 1.0, 5.0)


def test_pack_by_budget_respects_count_and_tokens():
    from synth.segment_model import pack_by_budget

    sized = [(900, "a"), (600, "b"), (500, "c"), (300, "d"), (300, "e"), (2000, "big")]
    assert pack_by_budget(sized, max_items=3, budget=1200) == [["a"], ["b", "c"], ["d", "e"], ["big"]]
    assert pack_by_budget(sized, max_items=2, budget=10**6) == [["a", "b"], ["c", "d"], ["e", "big"]]
