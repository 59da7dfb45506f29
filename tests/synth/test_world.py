"""The world videos: truth boxes on the drawn shapes, unique phrases, repeated kinds, one segment per event."""

from collections import Counter

import numpy as np
import pytest

from curation.video import read_frames
from synth.videos import PALETTE, read_truth
from synth.world import BACKGROUND, make_world_corpus, render_world_video, world_name

SMALL = dict(duration_s=4.0, fps=8.0, size=(96, 64), event_s=(1.0, 2.0))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    paths = make_world_corpus(root, 4, seed=7, **SMALL)
    return root, paths


def _truth(path):
    data = read_truth(path)
    assert data is not None, f"no truth beside {path}"
    return data


def test_truth_boxes_sit_on_the_drawn_shape(world):
    _, paths = world
    checked = 0
    for path in paths:
        truth = _truth(path)
        fps, w, h = truth["fps"], truth["width"], truth["height"]
        for shape in truth["shapes"]:
            colour = np.array(PALETTE[shape["phrase"].split()[1]], np.int16)
            box = shape["boxes"][-1]
            frame = read_frames(path, [round(box["t_s"] * fps)])[0].astype(np.int16)
            cx, cy = (box["x1"] + box["x2"]) * w // 2000, (box["y1"] + box["y2"]) * h // 2000
            assert np.abs(frame[cy, cx] - colour).max() < 40, (path.name, shape["phrase"], frame[cy, cx])
            checked += 1
    assert checked >= 12


def test_box_centre_is_background_outside_the_event(world):
    _, paths = world
    truth = _truth(paths[0])
    fps = truth["fps"]
    first = min(truth["shapes"], key=lambda s: s["start_s"])
    f = round(first["start_s"] * fps) - 1  # the frame before the first shape appears: nothing drawn
    frame = read_frames(paths[0], [f])[0].astype(np.int16)
    assert np.abs(frame - np.array(BACKGROUND)).max() < 12


def test_phrases_unique_and_a_kind_repeats_in_every_video(world):
    _, paths = world
    for path in paths:
        shapes = _truth(path)["shapes"]
        phrases = [s["phrase"] for s in shapes]
        assert 3 <= len(phrases) <= 4
        assert len(set(phrases)) == len(phrases)
        assert max(Counter(p.split()[-1] for p in phrases).values()) >= 2
        assert all(s["action"] in {"move up", "move down", "move to the left", "move to the right"} for s in shapes)


def test_events_vary_in_time_across_videos(world):
    _, paths = world
    starts = {round(s["start_s"], 3) for p in paths for s in _truth(p)["shapes"]}
    assert len(starts) >= 8


def test_same_seed_same_video_and_truth(tmp_path):
    a = render_world_video(tmp_path / "a.mp4", "x", seed=11, **SMALL)
    b = render_world_video(tmp_path / "b.mp4", "x", seed=11, **SMALL)
    c = render_world_video(tmp_path / "c.mp4", "x", seed=12, **SMALL)
    assert a == b
    assert a.shapes != c.shapes
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_names_differ_across_corpus_seeds(tmp_path):
    one = make_world_corpus(tmp_path, 2, seed=0, **SMALL)
    two = make_world_corpus(tmp_path, 2, seed=1, **SMALL)
    assert [p.name for p in one] == [f"{world_name(0, 0)}.mp4", f"{world_name(0, 1)}.mp4"]
    assert len({p.name for p in one + two}) == 4
    assert one[0].parent == tmp_path / "synthetic"


def test_truth_dir_keeps_the_truth_away_from_the_videos(tmp_path):
    paths = make_world_corpus(tmp_path / "videos", 2, seed=3, truth_dir=tmp_path / "truth", **SMALL)
    assert all(read_truth(p) is None for p in paths)
    assert not list((tmp_path / "videos").rglob("*.json"))
    kept = read_truth(tmp_path / "truth" / paths[0].name)
    assert kept is not None and kept["generator"] == "world" and len(kept["shapes"]) >= 3


def test_too_few_events_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="n_events 2 must be in 3..6"):
        render_world_video(tmp_path / "a.mp4", "x", seed=0, n_events=2, **SMALL)


def test_every_event_lies_inside_one_segment_after_ingest_and_split(tmp_path):
    """Default-sized videos (8 s, shapes appearing at once) through the default split: no cut inside an event."""
    from curation.executors import run_stage
    from curation.stages import IngestStage, SplitStage
    from curation.store import Dataset

    root = tmp_path / "videos"
    paths = make_world_corpus(root, 4, seed=5)
    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=root), ds, progress=False)
    run_stage(SplitStage(), ds, progress=False)
    rows = ds.sql("SELECT v.uri, s.start_s, s.end_s FROM segments s JOIN videos v USING (video_id)").to_pylist()
    segments: dict[str, list] = {}
    for r in rows:
        segments.setdefault(r["uri"], []).append((r["start_s"], r["end_s"]))
    assert len(segments) == len(paths)
    for path in paths:
        spans = segments[str(path.resolve())]
        for shape in _truth(path)["shapes"]:
            inside = [s for s in spans if s[0] <= shape["start_s"] and shape["end_s"] <= s[1]]
            assert len(inside) == 1, (path.name, shape["phrase"], spans)


def test_grid_puts_every_start_and_end_on_it(tmp_path):
    truth = render_world_video(tmp_path / "g.mp4", "x", seed=4, grid_s=0.5, **SMALL)
    times = [t for s in truth.shapes for t in (s.start_s, s.end_s)]
    assert all(abs(t * 2 - round(t * 2)) < 1e-9 for t in times), times
    assert all(0.25 <= s.start_s < s.end_s <= 4.0 - 0.25 for s in truth.shapes)
