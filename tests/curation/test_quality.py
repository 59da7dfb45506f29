"""Quality signals flag static, black, blurred and letterboxed clips with the right reason and leave normal
ones alone; near-duplicates are grouped with one kept, and pull their videos into one split."""

import shutil

import numpy as np
import pytest

from curation.executors import run_stage
from curation.quality import DedupStage, QualityStage, split_keys
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


def test_reruns_write_nothing_and_new_segments_join_existing_groups(copies, tmp_path):
    assert run_stage(QualityStage(), copies, progress=False).counts["rows_written"] == 0
    assert run_stage(DedupStage(), copies, progress=False).counts["rows_written"] == 0


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
