"""Recipes and overrides fill one typed config; every problem is reported at once with its fix."""

import pytest

from densevid.cli import EXIT_OK, EXIT_USAGE, main
from curation.typed_config import parse_overrides
from finetune.config import PRESETS, load_config


def test_presets_follow_the_training_stages(fake_mixture):
    cfgs = {p: load_config(p, [f"mixture={fake_mixture}", "tensorboard=false"]) for p in PRESETS}
    trains = {p: (c.method, c.vision.train, c.merger.train, c.llm.train) for p, c in cfgs.items()}
    assert trains == {
        "lora": ("lora", False, False, True),
        "full": ("full", True, True, True),
        "s0-align": ("full", False, True, False),
        "s1-multimodal": ("full", True, True, True),
        "s2-long": ("full", True, True, True),
        "s3-ultralong": ("full", True, True, True),
    }
    assert cfgs["s1-multimodal"].data.max_length == 8192
    assert cfgs["s2-long"].data.max_length == 32768
    assert cfgs["s3-ultralong"].data.max_length == 262144
    assert cfgs["s3-ultralong"].rope.scaling == "none" and cfgs["s3-ultralong"].rope.factor == 4.0
    yarn = load_config("s3-ultralong", [f"mixture={fake_mixture}", "rope.scaling=yarn", "tensorboard=false"])
    assert yarn.rope.scaling == "yarn"


def test_overrides_reach_nested_fields_with_their_types(fake_mixture):
    cfg = load_config("lora", [f"mixture={fake_mixture}", "max_steps=8", "output_dir=runs/x", "llm.lr=2e-4",
                               "data.packing=true", "resume=true", "save_every=4", "seed=3", "vision.train=yes",
                               "tensorboard=false"])
    assert (cfg.max_steps, cfg.output_dir, cfg.llm.lr, cfg.data.packing) == (8, "runs/x", 2e-4, True)
    assert (cfg.resume, cfg.save_every, cfg.seed, cfg.vision.train) == ("auto", 4, 3, True)
    assert cfg.lora.rank == 16, "untouched fields keep the recipe's value"
    assert parse_overrides(["a.b.c=1", "d=x y"]) == {"a": {"b": {"c": 1}}, "d": "x y"}


def test_every_problem_is_reported_at_once_with_the_fix(tmp_path):
    with pytest.raises(ValueError) as e:
        load_config("lora", [f"mixture={tmp_path / 'nope'}", "max_step=8", "llm.lr=fast", "data.max_frames=3",
                             "method=qlora", "rope.scaling=yarn", "data.tokens_per_batch=100", "lora.rnak=4",
                             "resume=/no/such/ckpt"])
    msg = str(e.value)
    for part in ("unknown key max_step; did you mean max_steps?", "llm.lr: 'fast' is not a float",
                 "data.max_frames 3 must be even", "method 'qlora' is not one of lora, full",
                 "rope.factor 1.0 must be > 1 with rope.scaling=yarn", "tokens_per_batch 100 < data.max_length 8192",
                 "unknown key lora.rnak; did you mean lora.rank?", "no manifest.parquet", "densevid mix",
                 "resume /no/such/ckpt", "resume=auto"):
        assert part in msg, part
    with pytest.raises(ValueError, match="for merger-only training use method=full"):
        load_config("lora", ["mixture=x", "llm.train=false"])


def test_yarn_with_lora_is_refused_with_the_way_out(fake_mixture):
    with pytest.raises(ValueError, match="use method=full"):
        load_config("lora", [f"mixture={fake_mixture}", "rope.scaling=yarn", "rope.factor=4", "tensorboard=false"])


def test_cli_prints_the_resolved_config_and_reports_bad_overrides(fake_mixture, capsys):
    import yaml

    assert main(["train", "s0-align", f"mixture={fake_mixture}", "max_steps=8", "--output-dir", "runs/o",
                 "tensorboard=false", "--print-config"]) == EXIT_OK
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["max_steps"] == 8 and printed["output_dir"] == "runs/o" and printed["merger"]["train"] is True
    assert printed["method"] == "full" and printed["llm"]["train"] is False
    assert main(["train", "lora", "mixture=", "max_steps=0", "log_every=0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "mixture is empty" in err and "max_steps 0 must be >= 1" in err and "log_every 0 must be >= 1" in err
    assert main(["train", "no-such-recipe"]) == EXIT_USAGE
    assert "presets: lora, full, s0-align" in capsys.readouterr().err
