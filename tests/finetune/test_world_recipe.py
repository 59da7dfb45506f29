"""The `world` recipe: its frames put one temporal patch on each second of a world video, so an event on the
1 s grid fills whole patches."""

import numpy as np

from curation.frames import FramePolicy, sample_indices
from curation.times import group_times
from curation.video import read_frames
from finetune.config import load_config
from synth.videos import PALETTE
from synth.world import render_world_video


def _config(tmp_path):
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "manifest.parquet").write_bytes(b"")
    return load_config("world", [f"mixture={tmp_path / 'mix'}", "tensorboard=false"])


def test_world_recipe_settings(tmp_path):
    cfg = _config(tmp_path)
    assert (cfg.method, cfg.max_steps, cfg.data.max_frames, cfg.data.target_fps) == ("full", 300, 16, 2.0)
    assert cfg.vision.train and cfg.vision.lr == cfg.llm.lr == cfg.merger.lr == 2e-3


def test_events_on_the_grid_fill_whole_patches(tmp_path):
    cfg = _config(tmp_path)
    path = tmp_path / "w.mp4"
    truth = render_world_video(path, "x", seed=2, grid_s=1.0, event_s=(1.0, 3.0))
    policy = FramePolicy(target_fps=cfg.data.target_fps, max_frames=cfg.data.max_frames)
    idx = sample_indices(0, truth.n_frames, truth.fps, policy)
    assert group_times(idx, truth.fps) == [k + 0.5 for k in range(8)]  # `<0.5 seconds>` ... `<7.5 seconds>`
    frames = read_frames(path, idx).astype(np.int16)
    for shape in truth.shapes:
        colour = np.array(PALETTE[shape.phrase.split()[1]])
        seen = [bool((np.abs(f - colour).max(axis=-1) < 40).sum() > 50) for f in frames]
        patches = [seen[2 * k] and seen[2 * k + 1] for k in range(8)]
        assert patches == [shape.start_s <= k < shape.end_s for k in range(8)], shape.phrase
