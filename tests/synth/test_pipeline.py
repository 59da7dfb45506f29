"""The pipeline on the small generated corpus, ingest through tasks, with values asserted."""

import json
import re

from curation.times import group_times
from curation.store import TABLES, Dataset
from model.inputs import build_inputs, video_metadata
from model.loader import load_processor
from curation.video import read_frames
from synth.tasks import TASKS

TIME = re.compile(r"<(\d+\.\d) - (\d+\.\d) seconds>")
MARK = re.compile(r"<(\d+\.\d) seconds>")


def test_every_stage_wrote_rows_and_nothing_failed(built_dataset):
    cfg, stats = built_dataset
    ds = Dataset(cfg.data)
    counts = ds.counts()
    assert counts["videos"] == 3 + 2  # plus the two needle haystacks
    assert counts["segments"] >= 3 + 2  # at least the planned cuts
    assert counts["captions"] == counts["segments"]
    assert counts["dense_captions"] == 3
    assert sum(s.n_failed for s in stats if s.stage in ("ingest", "split", "caption", "dense", "ground_truth",
                                                        "tasks", "needle")) == 0


def test_ground_accounts_for_every_segment_and_fails_only_on_broken_rules(built_dataset):
    """The random model may break the schema's rules (a box with x1 >= x2, a span in the wrong order): such a
    segment is a failure with the raw output kept; every other segment has records or is finished."""
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    model = str(cfg.model)
    failures = [f for f in ds.rows("failures") if f["stage"] == "ground"]
    assert all(f["error_type"] in ("InvalidOutput", "OutputTruncated") and f["raw"] for f in failures), failures
    segments = set(ds.sql("SELECT segment_id FROM segments").column("segment_id").to_pylist())
    grounded = set(ds.sql("SELECT segment_id FROM grounding WHERE source = 'model' AND model = ?", [model])
                   .column("segment_id").to_pylist())
    finished = ds.finished("ground", model)
    assert segments == grounded | finished | {f["item_id"] for f in failures}
    assert not grounded & finished


def test_one_caption_per_segment_with_provenance(built_dataset):
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    rows = ds.sql("SELECT s.segment_id, count(c.segment_id) AS n, any_value(c.prompt_version) AS pv, "
                  "any_value(c.model_revision) AS rev, any_value(len(c.frames_used)) AS nf "
                  "FROM segments s LEFT JOIN captions c USING (segment_id) GROUP BY 1").to_pylist()
    assert all(r["n"] == 1 and r["pv"] == "caption_v1" and r["rev"].startswith("local-") for r in rows)
    assert all(r["nf"] % 2 == 0 and r["nf"] <= 4 for r in rows)


def test_dense_entries_are_ordered_and_inside_the_video(built_dataset):
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    for row in ds.sql("SELECT d.entries, d.rendered, v.duration_s FROM dense_captions d JOIN videos v USING (video_id)").to_pylist():
        entries = row["entries"]
        assert entries
        for a, b in zip(entries, entries[1:]):
            assert a["end_s"] <= b["start_s"]
        assert all(0 <= e["start_s"] < e["end_s"] <= row["duration_s"] + 1e-9 for e in entries)
        assert len(TIME.findall(row["rendered"])) == len(entries)


def test_ground_truth_grounding_matches_the_truth_files(built_dataset, corpus):
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    gt = ds.sql("SELECT g.*, v.uri FROM grounding g JOIN videos v USING (video_id) WHERE g.source = 'ground_truth'").to_pylist()
    truth_shapes = sum(len(json.loads(p.read_text())["shapes"]) for p in corpus.rglob("*.json"))
    assert len(gt) == truth_shapes
    for g in gt:
        assert g["segment_id"], "each truth record falls inside a segment"
        assert all(0 <= b["x1"] < b["x2"] <= 1000 for b in g["boxes"])


def test_segment_cuts_follow_the_known_cuts(built_dataset, corpus):
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    for v in ds.rows("videos"):
        if v["domain"] == "needle":  # haystacks are made for evaluation, after splitting
            continue
        truth = json.loads(open(v["uri"][:-4] + ".json").read())
        starts = ds.sql("SELECT start_frame FROM segments WHERE video_id = ? AND idx > 0 ORDER BY idx",
                        [v["video_id"]]).column("start_frame").to_pylist()
        trim = round(cfg.policy.trim_s * v["fps"])
        assert len(starts) == len(truth["cuts"])
        for s, c in zip(starts, truth["cuts"]):
            assert abs((s - trim) - c) <= 1


def answer_times(task: str, answer: str) -> tuple[list[tuple[float, float]], list[float]]:
    """Spans and time points of a target: `<a - b seconds>` and `<t seconds>` in text, or the seconds of the
    ground stage's JSON (segment_grounding)."""
    if task == "segment_grounding":
        entities = json.loads(answer)["entities"]
        return ([(e["start_s"], e["end_s"]) for e in entities], [b["t_s"] for e in entities for b in e["boxes"]])
    return [(float(a), float(b)) for a, b in TIME.findall(answer)], [float(x) for x in MARK.findall(answer)]


def test_target_times_share_the_clock_of_the_timestamp_markers(built_dataset, tiny_model):
    """For every task: markers written by the processor and times in the target are source-clock seconds."""
    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    processor = load_processor(tiny_model)
    samples = ds.sql("SELECT s.*, v.n_frames FROM samples s JOIN videos v USING (video_id)").to_pylist()
    assert {s["task"] for s in samples} == set(TASKS)
    for s in samples:
        msgs = json.loads(s["messages"])
        frames = read_frames(s["uri"], s["frame_indices"])
        inputs = build_inputs(processor, [msgs[:1]], [frames],
                              [video_metadata(s["frame_indices"], s["fps"], s["n_frames"], 160, 128)])
        markers = [float(m) for m in MARK.findall(processor.tokenizer.decode(inputs["input_ids"][0]))]
        expected = [round(t, 1) for t in group_times(s["frame_indices"], s["fps"])]
        assert markers == expected
        answer = msgs[1]["content"][0]["text"]
        spans, points = answer_times(s["task"], answer)
        assert spans
        for a, b in spans:
            assert s["clip_start_s"] - 0.05 <= a < b <= s["clip_end_s"] + 0.05
            # the span is seen: some marker falls inside it
            assert any(a - 0.05 <= m <= b + 0.05 for m in markers), (s["task"], a, b, markers)
        for t in points:
            assert s["clip_start_s"] - 0.05 <= t <= s["clip_end_s"] + 0.05
        if s["task"] in ("temporal_grounding", "spatio_temporal_grounding", "segment_grounding"):
            # a true record, or a model record that passed the gate
            truth = ds.sql("SELECT start_s, end_s FROM grounding WHERE video_id = ? AND (source = 'ground_truth' "
                           "OR record_id IN (SELECT record_id FROM verdicts WHERE passed))",
                           [s["video_id"]]).to_pylist()
            assert any(abs(a - t["start_s"]) <= 0.0501 and abs(b - t["end_s"]) <= 0.0501 for t in truth for a, b in spans)
        elif s["task"] == "needle":
            start, length, colour = _needle_of(s["uri"])
            assert answer.endswith(" " + colour)
            assert abs(spans[0][0] - start / s["fps"]) <= 0.0501 and abs(spans[0][1] - (start + length) / s["fps"]) <= 0.0501
            inside = [i for i in s["frame_indices"] if start <= i < start + length]
            assert len(inside) >= 2, "the sampler must see the needle"
        else:
            segs = ds.sql("SELECT start_s, end_s FROM segments WHERE video_id = ?", [s["video_id"]]).to_pylist()
            bounds = {round(x["start_s"], 1) for x in segs} | {round(x["end_s"], 1) for x in segs}
            assert all(a in bounds and b in bounds for a, b in spans)


def _needle_of(uri):
    needle = json.loads(open(uri[:-4] + ".json").read())["needle"]
    return needle["start_frame"], needle["n_frames"], needle["colour"]


def test_tables_open_in_duckdb_and_datasets(built_dataset):
    import datasets

    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    for table in TABLES:
        n = ds.sql(f"SELECT count(*) AS n FROM {table}").column("n")[0].as_py()
        if n == 0:  # `datasets` has no split for a table without rows; DuckDB still sees its columns
            assert ds.sql(f"SELECT * FROM {table}").schema.names
            continue
        loaded = datasets.load_dataset("parquet", data_files=str(ds.root / table / "*.parquet"), split="train")
        assert loaded.num_rows == n


def test_rerun_skips_everything_and_duplicates_nothing(built_dataset):
    """A rerun writes nothing new except retries of items that failed before, and never a duplicate key."""
    from curation.store import KEYS
    from densevid.pipeline import run_pipeline

    cfg, _ = built_dataset
    ds = Dataset(cfg.data)
    before = ds.counts()
    failed_stages = {f["stage"] for f in ds.rows("failures")}
    stats = run_pipeline(cfg, progress=False)
    for s in stats:
        assert s.counts["rows_written"] == 0 or s.stage in failed_stages, s.line()
    after = ds.counts()
    for table in ("videos", "segments", "captions", "dense_captions", "samples"):
        if table != "captions" or "caption" not in failed_stages:
            assert after[table] == before[table], table
    for table, key in KEYS.items():
        cols = ", ".join(key)
        n = ds.sql(f"SELECT count(*) AS n, count(DISTINCT ({cols})) AS d FROM {table}").to_pylist()[0]
        assert n["n"] == n["d"], table
