"""Model stages on broken input: a video that went missing or got truncated after splitting fails alone."""

import shutil

from curation.executors import run_stage
from curation.store import Dataset
from model.structured import Decoding
from synth.captions import CaptionStage
from synth.dense import DenseStage


def test_caption_failures_are_rows_and_the_rest_goes_on(built_dataset, tmp_path):
    cfg, _ = built_dataset
    data = tmp_path / "ds"
    shutil.copytree(cfg.data, data)
    ds = Dataset(data)
    for sub in ("captions", "dense_captions"):
        shutil.rmtree(data / sub)
    videos = {v["video_id"]: v for v in ds.rows("videos") if v["domain"] != "needle"}
    broken, gone = sorted(videos)[:2]
    # copies of the videos, one cut short and one deleted, so the shared fixture stays intact
    moved = tmp_path / "videos"
    moved.mkdir()
    for vid, v in videos.items():
        dst = moved / f"{vid}.mp4"
        shutil.copy(v["uri"], dst)
        v["uri"] = str(dst)
    data_bytes = (moved / f"{broken}.mp4").read_bytes()
    (moved / f"{broken}.mp4").write_bytes(data_bytes[: len(data_bytes) // 4])
    (moved / f"{gone}.mp4").unlink()
    shutil.rmtree(data / "videos")
    ds.write("videos", [dict(v) for v in ds_rows_with_uris(videos)])

    segs = ds.sql("SELECT video_id, count(*) AS n FROM segments GROUP BY 1").to_pylist()
    n_gone = next(s["n"] for s in segs if s["video_id"] == gone)
    stats = run_stage(CaptionStage(model_id=cfg.model, decoding=Decoding(max_new_tokens=512), batch_size=4), ds,
                      progress=False)
    failures = ds.rows("failures")
    failed_ids = {f["item_id"] for f in failures if f["stage"] == "caption"}
    gone_segments = set(ds.sql("SELECT segment_id FROM segments WHERE video_id = ?", [gone]).column("segment_id").to_pylist())
    assert gone_segments <= failed_ids
    messages = [f["message"] for f in failures if f["item_id"] in gone_segments and f["stage"] == "caption"]
    assert all("No such file" in m or "cannot decode" in m or "could not be decoded" in m for m in messages), messages
    ok_videos = set(videos) - {broken, gone}
    ok_segments = ds.sql("SELECT count(*) AS n FROM segments WHERE video_id IN (SELECT unnest(?))",
                         [sorted(ok_videos)]).column("n")[0].as_py()
    captioned = ds.sql("SELECT count(*) AS n FROM captions").column("n")[0].as_py()
    assert captioned >= ok_segments and stats.n_failed >= n_gone
    assert captioned + stats.n_failed == sum(s["n"] for s in segs)

    # dense captions for the videos that have captions; nothing invented for the missing one
    run_stage(DenseStage(model_id=cfg.model), ds, progress=False)
    dense_ids = {r["video_id"] for r in ds.rows("dense_captions")}
    assert ok_videos <= dense_ids and gone not in dense_ids


def ds_rows_with_uris(videos):
    for v in videos.values():
        yield dict(v, uris=[v["uri"]])


def test_an_output_cut_off_by_max_new_tokens_is_reported_as_that(built_dataset, tmp_path):
    cfg, _ = built_dataset
    data = tmp_path / "ds"
    shutil.copytree(cfg.data, data)
    ds = Dataset(data)
    shutil.rmtree(data / "captions")
    stats = run_stage(CaptionStage(model_id=cfg.model, decoding=Decoding(max_new_tokens=6), max_retries=0), ds,
                      progress=False, max_items=2)
    rows = [f for f in ds.rows("failures") if f["stage"] == "caption" and f["error_type"] == "OutputTruncated"]
    assert stats.n_failed == 2 and len(rows) == 2 and stats.reasons == {"OutputTruncated": 2}
    assert all("max_new_tokens=6" in f["message"] and "--max-new-tokens" in f["message"] for f in rows)
