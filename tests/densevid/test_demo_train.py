"""The demo's fine-tunes are the documented `lora` and `world` presets, and the README's commands repeat them."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path


def _readme_demo_command(preset: str = "lora") -> list[str]:
    readme = (Path(__file__).parents[2] / "README.md").read_text().replace("\\\n", " ")
    (line,) = [line for line in readme.splitlines()
               if line.startswith(f".venv/bin/densevid train {preset} model=demo_out/")]
    return shlex.split(line)[1:]


def test_the_demo_trains_the_lora_preset_the_readme_command_repeats(tmp_path, monkeypatch):
    from curation.typed_config import parse_overrides
    from densevid.cli import parser
    from densevid.demo import demo_train_items
    from densevid.train_cli import _train_options, reparse, train_config_from_args
    from finetune.config import load_config

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo_out"
    mixture = out / "dataset" / "mixtures" / "balanced"
    mixture.mkdir(parents=True)
    (mixture / "manifest.parquet").write_bytes(b"")
    steps = parser().parse_args(["demo"]).train_steps
    demo = load_config("lora", parse_overrides(demo_train_items(out / "tiny-qwen3-vl", mixture, out / "runs" / "lora",
                                                                steps)))

    args = reparse(parser().parse_args(_readme_demo_command()), _train_options, "densevid train")
    documented = train_config_from_args(args)
    absolute = {k: str(Path(getattr(documented, k)).resolve()) for k in ("model", "mixture", "output_dir")}
    assert dataclasses.replace(documented, **absolute) == demo

    preset = load_config("lora", {"mixture": str(mixture)})
    trains = ("method", "vision", "merger", "llm", "lora", "data", "optim", "rope", "precision")
    assert [getattr(demo, k) for k in trains] == [getattr(preset, k) for k in trains]
    assert (demo.lora.rank, demo.lora.alpha, demo.llm.lr, demo.max_steps) == (16, 32, 2e-4, 12)


def test_the_demo_teacher_is_the_world_preset_the_readme_command_repeats(tmp_path, monkeypatch):
    from curation.typed_config import parse_overrides
    from densevid.cli import parser
    from densevid.demo import TEACHER_TASKS, demo_teacher_items
    from densevid.train_cli import _train_options, reparse, train_config_from_args
    from finetune.config import load_config

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo_out"
    mixture = out / "dataset" / "mixtures" / "teacher"
    mixture.mkdir(parents=True)
    (mixture / "manifest.parquet").write_bytes(b"")
    steps = parser().parse_args(["demo"]).teacher_steps
    demo = load_config("world", parse_overrides(demo_teacher_items(out / "tiny-qwen3-vl", mixture,
                                                                   out / "runs" / "teacher", steps)))
    args = reparse(parser().parse_args(_readme_demo_command("world")), _train_options, "densevid train")
    documented = train_config_from_args(args)
    absolute = {k: str(Path(getattr(documented, k)).resolve()) for k in ("model", "mixture", "output_dir")}
    assert dataclasses.replace(documented, **absolute) == demo
    assert (demo.method, demo.max_steps, demo.data.max_frames) == ("full", 150, 8)

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (mix,) = [line for line in readme.splitlines() if line.startswith(".venv/bin/densevid mix natural") and
              "name=teacher" in line]
    assert f"tasks=[{','.join(TEACHER_TASKS)}]" in mix
