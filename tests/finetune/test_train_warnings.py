"""Training and loading an adapter say nothing about deprecated transformers API used on our behalf."""

from __future__ import annotations

import warnings


def test_no_gradient_checkpointing_deprecation_in_train_or_adapter_load(overrides):
    from finetune.config import load_config
    from finetune.train import train
    from model.loader import load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(load_config("lora", overrides + ["max_steps=1"]), log=lambda *_: None)
        load_model(result["output_dir"])  # what eval and captioning with an adapter do
    assert [str(w.message) for w in caught if "is_gradient_checkpointing" in str(w.message)] == []
    assert result["steps"] == 1
