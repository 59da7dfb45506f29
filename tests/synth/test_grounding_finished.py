"""A segment where the model finds nothing is a `finished` row of the ground stage, never an empty grounding row."""

import json
from dataclasses import dataclass

from curation.frames import FramePolicy
from curation.executors import run_stage
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from model.structured import Generated
from synth.grounding import GroundStage


def _values(table, column):
    return set(table.column(column).to_pylist())


def test_built_dataset_has_no_empty_phrases_and_empty_segments_are_finished(built_dataset):
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    assert ds.sql("SELECT count(*) AS n FROM grounding WHERE phrase = ''").column("n")[0].as_py() == 0
    stage = GroundStage(model_id=cfg.model)
    segments = _values(ds.sql("SELECT segment_id FROM segments"), "segment_id")
    grounded = _values(ds.sql("SELECT segment_id FROM grounding WHERE source = 'model' AND model = ?",
                              [stage.model_name]), "segment_id")
    failed = _values(ds.sql("SELECT item_id FROM failures WHERE stage = 'ground'"), "item_id")
    finished = ds.finished("ground", stage.variant)
    # each segment has records, or is finished, or failed (failures keep history: a retry may finish it later)
    assert finished <= segments and not finished & grounded
    assert segments - grounded - finished <= failed


@dataclass
class ScriptedGroundStage(GroundStage):
    """The tiny model's frames and batching, but a fixed answer: one record for ``found``, nothing elsewhere."""

    found: str = ""

    def _generate(self, prepared: list[dict], decoding) -> list[Generated]:
        return [Generated(json.dumps({"entities": self._entities(p["seg"])})) for p in prepared]

    def _entities(self, seg: dict) -> list[dict]:
        if seg["segment_id"] != self.found:
            return []
        s, e = seg["start_s"], seg["end_s"]
        box = dict(t_s=s, bbox_2d=[0, 0, 9, 9])
        return [dict(phrase="the red square", action="moves", start_s=s, end_s=e, boxes=[box])]


def test_segments_with_nothing_found_are_finished_and_skipped_on_rerun(corpus, tiny_model, tmp_path):
    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=corpus), ds, progress=False)
    run_stage(SplitStage(), ds, progress=False)
    segments = sorted(_values(ds.read("segments", ["segment_id"]), "segment_id"))
    stage = ScriptedGroundStage(model_id=str(tiny_model), frames=FramePolicy(max_frames=4), found=segments[0])

    stats = run_stage(stage, ds, progress=False)
    assert stats.n_failed == 0 and stats.counts["finished_empty"] == len(segments) - 1
    assert [r["segment_id"] for r in ds.rows("grounding")] == [segments[0]]
    assert ds.finished("ground", stage.variant) == set(segments[1:])
    again = run_stage(stage, ds, progress=False)
    assert again.counts["skipped_done"] == len(segments) and again.counts["items"] == 0


@dataclass
class MistakesGroundStage(GroundStage):
    """One segment's answer holding a good record and the model's usual mistakes, verbatim."""

    found: str = ""

    def _generate(self, prepared: list[dict], decoding) -> list[Generated]:
        return [Generated(json.dumps({"entities": self._entities(p["seg"]) if p["seg"]["segment_id"] == self.found
                                      else []})) for p in prepared]

    def _entities(self, seg: dict) -> list[dict]:
        s, e = seg["start_s"], seg["end_s"]
        box = dict(t_s=s, bbox_2d=[100, 100, 300, 300])
        return [dict(phrase="the red square", action="move up", start_s=s, end_s=e, boxes=[box]),
                dict(phrase="the blue circle", action="move up", start_s=e, end_s=s, boxes=[box]),
                dict(phrase="the green square", action="move up", start_s=s, end_s=e,
                     boxes=[dict(t_s=s, bbox_2d=[300, 100, 100, 300])]),
                dict(phrase="  ", action="move up", start_s=s, end_s=e, boxes=[box])]


def test_a_record_with_swapped_corners_or_a_reversed_span_reaches_the_gate_and_keeps_its_neighbours(
        corpus, tiny_model, tmp_path):
    from synth.verify import VerifyStage

    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=corpus), ds, progress=False)
    run_stage(SplitStage(), ds, progress=False)
    seg = sorted(_values(ds.read("segments", ["segment_id"]), "segment_id"))[0]
    frames = FramePolicy(max_frames=4)
    stats = run_stage(MistakesGroundStage(model_id=str(tiny_model), frames=frames, found=seg), ds, progress=False)
    assert stats.n_failed == 0 and stats.counts["retries"] == 0
    assert (stats.counts["records"], stats.counts["records_without_phrase"]) == (3, 1)
    rows = {r["phrase"]: r for r in ds.rows("grounding")}
    assert sorted(rows) == ["the blue circle", "the green square", "the red square"]
    assert [(b["x1"], b["x2"]) for b in rows["the green square"]["boxes"]] == [(300, 100)]  # as written

    run_stage(VerifyStage(model_id=str(tiny_model), frames=frames), ds, progress=False)
    verdicts = {r["record_id"]: r for r in ds.rows("verdicts")}
    form = {p: verdicts[r["record_id"]]["form_ok"] for p, r in rows.items()}
    assert form == {"the red square": True, "the blue circle": False, "the green square": False}
    reasons = {p: verdicts[r["record_id"]]["reasons"] for p, r in rows.items()}
    assert any("is not an ordered span inside its segment" in x for x in reasons["the blue circle"])
    assert any(x.startswith("form: box 0 [300, 100, 100, 300] is not 0 <= x1 < x2") for x in reasons["the green square"])
    assert not verdicts[rows["the blue circle"]["record_id"]]["passed"]
