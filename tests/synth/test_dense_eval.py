"""Dense-caption scores against values computed by hand."""

import pytest

from synth.dense_eval import (UNMATCHED_REFERENCE, Event, caption_scorer, caption_tokens, dense_summary, detection,
                              matched_pairs, order_preserving_matching, parse_events, soda_c, tiou_matrix,
                              truth_events, video_scores)

RED = "a red square moves to the right"
BLUE = "the blue circle moves down slowly"
GREEN = "a green square moves up"


def exact_match(pairs):
    """A caption score by hand: 1 for the same sentence, else 0."""
    return [float(p == r) for p, r in pairs]


class ExactScorer:
    def corpus(self, pairs):
        s = sum(exact_match(pairs)) / len(pairs)
        return dict(bleu4=s, meteor=s, cider=10 * s)

    def meteor_each(self, pairs):
        return exact_match(pairs)


REFS = [Event(0, 10, RED), Event(10, 20, BLUE), Event(20, 30, GREEN)]
PREDS = [Event(0, 8, RED),  # tIoU 8/10 with the first reference
         Event(12, 22, BLUE),  # 8/12 with the second, 2/18 with the third
         Event(40, 50, GREEN)]  # overlaps nothing


def test_parse_events_splits_at_each_span_and_keeps_the_summary():
    text = ("Sure. <0.0 - 4.5 seconds> A red square moves. It is small.\n"
            "<4.5 - 9.0 seconds> A blue circle <b> moves down\n<00:00:10 - 00:00:12> Black.")
    assert parse_events(text) == [Event(0.0, 4.5, "A red square moves."),
                                  Event(4.5, 9.0, "A blue circle <b> moves down"), Event(10.0, 12.0, "Black.")]
    assert parse_events("no times here") == []
    assert parse_events("<1.0 - 2.0 seconds>") == [Event(1.0, 2.0, "")]


def test_truth_of_a_generated_video_is_one_event_per_shape():
    truth = {"shapes": [dict(phrase="the blue circle", action="move down", start_s=5.0, end_s=9.5, boxes=[]),
                        dict(phrase="the red square", action="move to the right", start_s=0.5, end_s=3.0, boxes=[])]}
    assert truth_events(truth) == [Event(0.5, 3.0, "the red square move to the right"),
                                   Event(5.0, 9.5, "the blue circle move down")]


def test_tiou_precision_and_recall_by_hand():
    m = tiou_matrix(PREDS, REFS)
    assert m[0] == pytest.approx([0.8, 0, 0]) and m[1] == pytest.approx([0, 8 / 12, 2 / 18]) and m[2] == [0, 0, 0]
    assert detection(PREDS, REFS, 0.3) == pytest.approx((2 / 3, 2 / 3))
    assert detection(PREDS, REFS, 0.5) == pytest.approx((2 / 3, 2 / 3))
    assert detection(PREDS, REFS, 0.7) == pytest.approx((1 / 3, 1 / 3))
    assert detection(PREDS, REFS, 0.9) == (0.0, 0.0)
    # one prediction covering two references: precision 1/1, recall 2/3 at 0.1
    assert detection([Event(10, 22, "x")], REFS, 0.1) == pytest.approx((1.0, 2 / 3))
    assert detection([Event(0, 10, "x")], [Event(0, 20, "y")], 0.5) == (1.0, 1.0), "tIoU exactly 0.5 reaches 0.5"
    assert detection([], REFS, 0.3) == (0.0, 0.0) and detection(PREDS, [], 0.3) == (0.0, 0.0)


def test_matched_pairs_pair_an_unmatched_prediction_with_a_stand_in():
    assert matched_pairs(PREDS, REFS, 0.3) == [(RED, RED), (BLUE, BLUE), (GREEN, UNMATCHED_REFERENCE)]
    assert matched_pairs(PREDS[1:2], REFS, 0.1) == [(BLUE, BLUE), (BLUE, GREEN)]


def test_order_preserving_matching_never_crosses():
    # both crossing pairs weigh 0.9: a free assignment would take 1.8, the order-preserving one only one of them
    total, pairs = order_preserving_matching([[0.1, 0.9], [0.9, 0.1]])
    assert total == pytest.approx(0.9) and pairs == [(0, 1)]
    total, pairs = order_preserving_matching([[0.5, 0.2, 0.0], [0.0, 0.0, 0.4]])
    assert total == pytest.approx(0.9) and pairs == [(0, 0), (1, 2)]
    assert order_preserving_matching([]) == (0.0, [])


def test_soda_c_when_order_matters():
    """References a then b (overlapping); the prediction says b then a at the same times. tIoU(a, b) = 5/15, so
    the similarity matrix is [[0, 1/3], [1/3, 0]]: one pair can match, S = 1/3, P = R = 1/6, F = 1/6."""
    a, b = "a man opens the door", "two dogs run away"
    refs = [Event(0, 10, a), Event(5, 15, b)]
    assert soda_c([Event(0, 10, b), Event(5, 15, a)], refs, exact_match) == pytest.approx(1 / 6)
    assert soda_c([Event(0, 10, a), Event(5, 15, b)], refs, exact_match) == pytest.approx(1.0)
    # a prediction written out of time order is put in time order first
    assert soda_c([Event(5, 15, b), Event(0, 10, a)], refs, exact_match) == pytest.approx(1.0)


def test_soda_c_penalises_redundant_and_missing_captions():
    ref = [Event(0, 10, RED)]
    # two copies of the right event: S = 1, precision 1/2, recall 1, F = 2/3
    assert soda_c([Event(0, 10, RED), Event(0, 10, RED)], ref, exact_match) == pytest.approx(2 / 3)
    # half the span, right caption: S = 0.5, P = 0.5, R = 0.5 / 2 references, F = 2 * 0.5 * 0.25 / 0.75 = 1/3
    assert soda_c([Event(0, 5, RED)], ref + [Event(10, 20, BLUE)], exact_match) == pytest.approx(1 / 3)
    assert soda_c([], ref, exact_match) == 0.0


def test_video_scores_and_summary_by_hand():
    v = video_scores(PREDS, REFS, ExactScorer())
    assert v["n_pred"] == 3 and v["n_ref"] == 3
    at3 = v["by_tiou"]["0.3"]
    assert at3["precision"] == pytest.approx(2 / 3) and at3["f1"] == pytest.approx(2 / 3)
    assert at3["meteor"] == pytest.approx(2 / 3), "two right pairs, the unmatched prediction scores 0"
    assert v["by_tiou"]["0.9"]["meteor"] == 0.0
    # SODA: sim = diag(0.8, 8/12, 0) -> S = 0.8 + 2/3, P = R = S / 3
    assert v["soda_c"] == pytest.approx((0.8 + 2 / 3) / 3)
    empty = video_scores([], REFS, ExactScorer())
    assert empty["by_tiou"]["0.5"] == dict(precision=0.0, recall=0.0, f1=0.0, bleu4=0.0, meteor=0.0, cider=0.0)
    s = dense_summary([v, empty])
    assert s["n"] == 2 and s["by_tiou"]["0.3"]["precision"] == pytest.approx(1 / 3, abs=1e-4)
    # F1 from the mean precision and recall (1/3 each)
    assert s["by_tiou"]["0.3"]["f1"] == pytest.approx(1 / 3, abs=1e-4)
    # precision per tIoU over both videos: 1/3, 1/3, 1/6, 0 -> mean 5/24
    assert s["average"]["precision"] == pytest.approx(5 / 24, abs=1e-4)
    assert s["soda_c"] == pytest.approx((0.8 + 2 / 3) / 6, abs=1e-4)


def test_caption_tokens():
    assert caption_tokens("A red Square, moving!  It's here.") == "a red square moving it's here"


@pytest.fixture(scope="module")
def scorer():
    return caption_scorer()


def test_real_caption_scores_are_at_their_maximum_on_identical_sentences(scorer):
    pairs = [(RED, RED), (BLUE, BLUE)]
    s = scorer.corpus(pairs)
    assert s["bleu4"] == pytest.approx(1.0, abs=1e-6) and s["meteor"] == pytest.approx(1.0)
    assert s["cider"] == pytest.approx(10.0), "CIDEr-D of identical sentences is 10 (its idf needs two pairs)"
    assert scorer.meteor_each(pairs) == pytest.approx([1.0, 1.0])


def test_real_caption_scores_are_zero_on_disjoint_sentences(scorer):
    s = scorer.corpus([(RED, "one two three four five"), (BLUE, "six seven eight nine ten")])
    assert s == pytest.approx(dict(bleu4=0.0, meteor=0.0, cider=0.0), abs=1e-6)
    assert scorer.meteor_each([(GREEN, UNMATCHED_REFERENCE)]) == [0.0]


def test_real_soda_c_with_meteor(scorer):
    a, b = "a man opens the door", "two dogs run away"
    refs = [Event(0, 10, a), Event(5, 15, b)]
    assert soda_c([Event(0, 10, b), Event(5, 15, a)], refs, scorer.meteor_each) == pytest.approx(1 / 6)
