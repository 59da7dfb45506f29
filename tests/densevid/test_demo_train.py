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


def _demo_and_documented(tmp_path, monkeypatch, preset: str, name: str, steps_field: str, items_of):
    """The demo's training config and the one the README's command gives, with paths made absolute."""
    from curation.typed_config import parse_overrides
    from densevid.cli import parser
    from densevid.train_cli import _train_options, reparse, train_config_from_args
    from finetune.config import load_config

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo_out"
    mixture = out / "dataset" / "mixtures" / name
    mixture.mkdir(parents=True)
    (mixture / "manifest.parquet").write_bytes(b"")
    steps = getattr(parser().parse_args(["demo"]), steps_field)
    run = "lora" if preset == "lora" else "teacher"
    demo = load_config(preset, parse_overrides(items_of(out / "tiny-qwen3-vl", mixture, out / "runs" / run, steps)))
    args = reparse(parser().parse_args(_readme_demo_command(preset)), _train_options, "densevid train")
    documented = train_config_from_args(args)
    absolute = {k: str(Path(getattr(documented, k)).resolve()) for k in ("model", "mixture", "output_dir")}
    return demo, dataclasses.replace(documented, **absolute), mixture


def test_the_demo_trains_the_lora_preset_the_readme_command_repeats(tmp_path, monkeypatch):
    from densevid.demo import demo_train_items
    from finetune.config import load_config

    demo, documented, mixture = _demo_and_documented(tmp_path, monkeypatch, "lora", "balanced", "train_steps",
                                                     demo_train_items)
    assert documented == demo
    preset = load_config("lora", {"mixture": str(mixture)})
    trains = ("method", "vision", "merger", "llm", "lora", "data", "optim", "rope", "precision")
    assert [getattr(demo, k) for k in trains] == [getattr(preset, k) for k in trains]
    assert (demo.lora.rank, demo.lora.alpha, demo.llm.lr, demo.max_steps) == (16, 32, 2e-4, 12)


def test_the_demo_teacher_is_the_world_preset_the_readme_command_repeats(tmp_path, monkeypatch):
    from densevid.demo import TEACHER_TASKS, demo_teacher_items

    demo, documented, _ = _demo_and_documented(tmp_path, monkeypatch, "world", "teacher", "teacher_steps",
                                               demo_teacher_items)
    assert documented == demo
    assert (demo.method, demo.max_steps, demo.data.max_frames) == ("full", 150, 8)

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    (mix,) = [line for line in readme.splitlines() if line.startswith(".venv/bin/densevid mix natural") and
              "name=teacher" in line]
    assert f"tasks=[{','.join(TEACHER_TASKS)}]" in mix
