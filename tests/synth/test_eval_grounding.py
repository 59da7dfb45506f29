import pytest

from synth.eval_grounding import evaluate_dataset, phrase_key, score_grounding
from synth.metrics import box_iou, temporal_iou


def _rec(video, s, e, boxes=(), phrase="the red square"):
    return dict(video_id=video, phrase=phrase, start_s=s, end_s=e,
                boxes=[dict(t_s=t, x1=a, y1=b, x2=c, y2=d) for t, a, b, c, d in boxes])


def test_ious_by_hand():
    assert temporal_iou((0, 10), (5, 15)) == pytest.approx(5 / 15)
    assert temporal_iou((0, 1), (2, 3)) == 0
    a = dict(x1=0, y1=0, x2=100, y2=100)
    b = dict(x1=50, y1=50, x2=150, y2=150)
    assert box_iou(a, b) == pytest.approx(2500 / 17500)


def test_scores_against_hand_computed_values():
    truth = [_rec("v", 0, 10, [(1.0, 0, 0, 100, 100)]), _rec("v", 20, 30, [(25.0, 0, 0, 100, 100)]), _rec("w", 0, 4)]
    model = [_rec("v", 5, 15, [(1.2, 50, 50, 150, 150)]),  # tIoU 1/3 with the first truth
             _rec("v", 21, 29, [(24.0, 0, 0, 100, 100)])]  # tIoU 0.8 with the second, exact box
    score = score_grounding(truth, model)
    assert score.mean_tiou == pytest.approx((1 / 3 + 0.8 + 0) / 3)
    assert score.mean_box_iou == pytest.approx((2500 / 17500 + 1.0 + 0) / 3)
    assert score.recall == {0.3: pytest.approx(2 / 3), 0.5: pytest.approx(1 / 3), 0.7: pytest.approx(1 / 3)}


def test_a_record_about_something_else_never_matches():
    truth = [_rec("v", 0, 10, phrase="the red square"), _rec("v", 20, 30, phrase="a blue circle")]
    exact_but_other = [_rec("v", 0, 10, phrase="the blue circle"), _rec("v", 20, 30, phrase="the red square")]
    assert score_grounding(truth, exact_but_other).mean_tiou == 0.0
    same = [_rec("v", 0, 10, phrase="The Red  square."), _rec("v", 20, 25, phrase="blue circle")]
    assert score_grounding(truth, same).mean_tiou == pytest.approx((1.0 + 0.5) / 2)
    assert phrase_key("The Red  square.") == phrase_key("red square") == "red square"


def test_perfect_model_scores_one_and_empty_model_zero():
    truth = [_rec("v", 1, 2, [(1.5, 10, 10, 20, 20)])]
    assert score_grounding(truth, truth).as_dict()["recall@0.7"] == 1.0
    assert score_grounding(truth, []).mean_tiou == 0.0


def test_evaluates_every_model_of_a_dataset(built_dataset, tmp_path):
    """Three models on a copy of the built dataset: one that repeats the truth, one whose spans are shifted by
    half their length (tIoU 1/3), and the tiny model; each is scored against all 8 true records."""
    import shutil

    from curation.store import Dataset

    cfg, _ = built_dataset
    ds = Dataset(shutil.copytree(cfg.data, tmp_path / "ds"))
    truth = ds.sql("SELECT * FROM grounding WHERE source = 'ground_truth'").to_pylist()
    for name, shift in (("perfect", 0.0), ("shifted", 0.5)):
        ds.write("grounding", [dict(g, record_id=f"{name}-{g['record_id']}", source="model", model=name,
                                    start_s=g["start_s"] + shift * (g["end_s"] - g["start_s"]),
                                    end_s=g["end_s"] + shift * (g["end_s"] - g["start_s"])) for g in truth])
    ds.refresh_catalog()
    scores = evaluate_dataset(ds)
    assert set(scores) == {"perfect", "shifted", str(cfg.model)}
    assert all(s.n_truth == 8 for s in scores.values())
    assert scores["perfect"].mean_tiou == pytest.approx(1.0) and scores["perfect"].mean_box_iou == pytest.approx(1.0)
    assert scores["shifted"].mean_tiou == pytest.approx(1 / 3) and scores["shifted"].recall[0.5] == 0.0
    tiny_rows = ds.sql("SELECT count(*) AS n FROM grounding WHERE model = ?", [str(cfg.model)]).column("n")[0].as_py()
    assert scores[str(cfg.model)].n_model == tiny_rows
