"""The training recipe on the tiny model and real decoded frames: presets, freezing, packing, drops, resume,
checkpoints, metrics, LoRA merge, YaRN."""

import json
import math

import pytest
import torch

from finetune.config import load_config
from finetune.data import IGNORE, Collate, ManifestDataset, frame_indices, packed_positions
from finetune.metrics import read_metrics
from finetune.modules import group_of, param_groups
from finetune.train import build_model, train
from model.loader import load_model

QUIET = dict(log=lambda *_: None)


def _cfg(recipe, overrides, *extra):
    return load_config(recipe, overrides + list(extra))


def _trainable_groups(model):
    groups = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[group_of(name)] = groups.get(group_of(name), 0) + p.numel()
    return groups


EXPECTED_GROUPS = {"lora": {"llm"}, "full": {"vision", "merger", "llm"}, "s0-align": {"merger"},
                   "s1-multimodal": {"vision", "merger", "llm"}, "s2-long": {"vision", "merger", "llm"},
                   "s3-ultralong": {"vision", "merger", "llm"}}


@pytest.mark.parametrize("preset", list(EXPECTED_GROUPS))
def test_each_preset_runs_a_few_steps_on_the_demo_data(preset, overrides):
    fewer = ["optim.grad_accum=1"] if preset == "s3-ultralong" else []  # 4 micro-batches a step: slow here
    cfg = _cfg(preset, overrides, "max_steps=2", "merger.lr=1e-3", "vision.lr=1e-4", *fewer)
    result = train(cfg, **QUIET)
    metrics = read_metrics(cfg.output_dir)
    assert [m["step"] for m in metrics] == [0, 1]
    assert all(math.isfinite(m["loss"]) and m["tokens"] > 0 and 0 <= m["padding_fraction"] < 1 for m in metrics)
    model, _ = build_model(cfg)
    assert set(_trainable_groups(model)) == EXPECTED_GROUPS[preset]
    assert result["trainable"] == sum(_trainable_groups(model).values())


def test_s0_align_moves_only_the_merger_and_deepstack_mergers(overrides):
    cfg = _cfg("s0-align", overrides)
    model, processor = build_model(cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("deepstack_merger_list.0" in n for n in names) and any("visual.merger." in n for n in names)
    assert all("merger" in n for n in names)
    assert [g["lr"] for g in param_groups(model, cfg)] == [1e-3, 1e-3]


def test_lora_targets_and_merger_through_modules_to_save(overrides):
    cfg = _cfg("lora", overrides, "vision.train=true", "merger.train=true", "vision.lr=1e-5", "merger.lr=1e-4")
    model, _ = build_model(cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("visual.blocks.0.attn.qkv.lora_A" in n for n in names)
    assert any("language_model.layers.1.mlp.down_proj.lora_B" in n for n in names)
    assert any("visual.merger.modules_to_save" in n for n in names)
    assert any("deepstack_merger_list.1.modules_to_save" in n for n in names)
    assert not any("patch_embed" in n for n in names)
    lrs = {g["name"]: g["lr"] for g in param_groups(model, cfg)}
    assert lrs["vision"] == 1e-5 and lrs["merger"] == 1e-4 and lrs["llm"] == 2e-3


def _encoded(rows, processor, n=4, max_length=4096):
    ds = ManifestDataset(rows[:n], processor, max_length)
    return [ds[i] for i in range(n)]


def test_packing_gives_the_loss_of_the_padded_batch(rows, tiny_model):
    lm = load_model(tiny_model, device="cpu")
    items = _encoded(rows, lm.processor)
    pad = lm.processor.tokenizer.pad_token_id
    padded, packed = Collate(pad)(items), Collate(pad, packing=True)(items)
    assert packed["inputs"]["input_ids"].shape[0] == 1 and padded["inputs"]["input_ids"].shape[0] == 4
    assert packed["stats"]["label_tokens"] == padded["stats"]["label_tokens"]
    n = padded["stats"]["label_tokens"]
    with torch.no_grad():
        a = lm.model(**padded["inputs"], num_items_in_batch=n, use_cache=False).loss
        b = lm.model(**packed_positions(lm.model.model, dict(packed["inputs"])), num_items_in_batch=n,
                     use_cache=False).loss
        # without restarting positions the samples would see each other: a different loss
        joined = {k: v for k, v in packed["inputs"].items() if not k.startswith("pack_")}
        c = lm.model(**joined, num_items_in_batch=n, use_cache=False).loss
    assert abs(a.item() - b.item()) < 1e-5, (a.item(), b.item())
    # a random tiny model moves the loss little, but 10x more than the packed/padded tolerance above
    assert abs(a.item() - c.item()) > 1e-4, (a.item(), c.item())


def test_too_long_samples_are_dropped_and_counted_never_cut(rows, tiny_model, overrides):
    lm = load_model(tiny_model, device="cpu")
    ds = ManifestDataset(rows, lm.processor, max_length=300)
    items = [ds[i] for i in range(len(rows))]
    dropped = [s for s in items if "dropped" in s]
    kept = [s for s in items if "dropped" not in s]
    assert dropped and kept and all(s["dropped"] == "too_long" and "> max_length 300" in s["why"] for s in dropped)
    video_pad = lm.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    for s in kept:  # every kept sample holds its whole vision block
        assert int((s["input_ids"] == video_pad).sum()) == int(s["video_grid_thw"].prod(-1).sum()) // 4
        assert int(s["input_ids"].shape[0]) <= 300
    result = train(_cfg("lora", overrides, "data.max_length=300", "data.tokens_per_batch=1200", "max_steps=4"), **QUIET)
    assert result["dropped"].get("too_long", 0) >= 1
    assert read_metrics(result["output_dir"])[-1]["dropped"] == result["dropped"]["too_long"]


def test_frames_are_resampled_with_the_captioners_sampler(rows, tiny_model):
    from curation.frames import FramePolicy, sample_indices

    row = max(rows, key=lambda r: r["clip_end_s"] - r["clip_start_s"])
    idx = frame_indices(row, max_frames=4)
    start, end = round(row["clip_start_s"] * row["fps"]), round(row["clip_end_s"] * row["fps"])
    assert idx == sample_indices(start, end, row["fps"], FramePolicy(max_frames=4)) and len(idx) == 4
    lm = load_model(tiny_model, device="cpu")
    sample = ManifestDataset([row], lm.processor, 4096, max_frames=4)[0]
    assert int(sample["video_grid_thw"][0, 0]) == 2, "4 frames -> 2 temporal patches"
    assert (sample["labels"] != IGNORE).sum() > 0


def test_vision_lora_gets_gradients_with_reentrant_checkpointing(rows, overrides):
    cfg = _cfg("lora", overrides, "vision.train=true", "gradient_checkpointing=true", "checkpoint_reentrant=true")
    model, processor = build_model(cfg)
    batch = Collate(processor.tokenizer.pad_token_id)(_encoded(rows, processor, n=2))["inputs"]
    model.train()
    model(**batch, use_cache=False).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_B" in n}
    vision = {n: g for n, g in grads.items() if "visual.blocks" in n}
    assert vision and all(g is not None and g.abs().sum() > 0 for g in vision.values())
    assert all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "language_model" in n)

    # the same without making the vision input require grad: the ViT adapters get nothing
    cfg_plain = _cfg("lora", overrides, "vision.train=true")
    plain, _ = build_model(cfg_plain)
    plain.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    plain.train()
    plain(**batch, use_cache=False).loss.backward()
    starved = [p.grad for n, p in plain.named_parameters() if "lora_B" in n and "visual.blocks" in n]
    assert all(g is None or g.abs().sum() == 0 for g in starved)


def test_killed_run_resumes_to_the_same_losses(overrides, tmp_path):
    common = overrides + ["max_steps=6", "save_every=2", "data.num_workers=1", "data.tokens_per_batch=700",
                          "data.max_length=700"]
    whole = train(_cfg("lora", common, f"output_dir={tmp_path / 'whole'}"), **QUIET)

    class Killed(Exception):
        pass

    def kill_after_step_4(step, record):
        if step == 4:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        train(_cfg("lora", common, f"output_dir={out}"), on_step=kill_after_step_4, **QUIET)
    ckpt = out / "checkpoints" / "step-000004"
    for name in ("model/adapter_model.safetensors", "model/adapter_config.json", "model/processor_config.json",
                 "model/tokenizer_config.json", "optimizer.pt", "scheduler.pt", "rng-rank0.pt", "state.json"):
        assert (ckpt / name).exists(), name
    state = json.loads((ckpt / "state.json").read_text())
    assert state["step"] == 4 and len(state["data_position"]) == 2
    assert [m["step"] for m in read_metrics(out)] == [0, 1, 2, 3, 4], "the killed run logged past its checkpoint"

    resumed = train(_cfg("lora", common, f"output_dir={out}", "resume=auto"), **QUIET)
    a, b = read_metrics(tmp_path / "whole"), read_metrics(out)
    assert [m["step"] for m in b] == [0, 1, 2, 3, 4, 5]
    gap = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b))
    assert gap < 1e-5, ([x["loss"] for x in a], [y["loss"] for y in b])
    assert len(set(m["loss"] for m in a)) > 3, "steps see different batches"
    assert resumed["losses"] == pytest.approx(whole["losses"][4:], abs=1e-5)


def test_metrics_validation_loss_and_tensorboard(overrides, mixture, tmp_path):
    cfg = _cfg("lora", overrides, f"val_mixture={mixture}", "val_every=2", "val_samples=6", "tensorboard=true",
               "max_steps=3", "log_every=2")
    train(cfg, **QUIET)
    metrics = read_metrics(cfg.output_dir)
    assert [m["step"] for m in metrics] == [0, 1, 2]  # logged: every 2nd step, validation steps, the last
    for key in ("loss", "lr", "lr_llm", "tokens_per_s", "padding_fraction", "grad_norm", "samples"):
        assert all(key in m for m in metrics), key
    assert "val_loss" not in metrics[0] and math.isfinite(metrics[1]["val_loss"]) and "val_loss" in metrics[2]
    assert metrics[1]["val_loss"] != metrics[2]["val_loss"], "the model moved between validations"
    events = list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100


def test_merge_lora_writes_a_checkpoint_the_loader_opens(overrides, tmp_path, rows):
    from densevid.cli import EXIT_OK, main

    cfg = _cfg("lora", overrides, "vision.train=true", "merger.train=true", "merger.lr=1e-2", "vision.lr=1e-2",
               "max_steps=2")
    train(cfg, **QUIET)
    merged = tmp_path / "merged"
    assert main(["merge-lora", cfg.output_dir, str(merged)]) == EXIT_OK
    assert not (merged / "adapter_config.json").exists()
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer_config.json"):
        assert (merged / name).exists(), name
    adapter, full = load_model(cfg.output_dir, device="cpu"), load_model(merged, device="cpu")
    batch = Collate(full.processor.tokenizer.pad_token_id)(_encoded(rows, full.processor, n=2))["inputs"]
    with torch.no_grad():
        a, b = adapter.model(**batch).logits, full.model(**batch).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()


def test_yarn_option_trains_and_is_saved_with_the_checkpoint(overrides):
    cfg = _cfg("s3-ultralong", overrides, "rope.scaling=yarn", "rope.factor=4", "max_steps=1")
    train(cfg, **QUIET)
    saved = json.loads((__import__("pathlib").Path(cfg.output_dir) / "config.json").read_text())["text_config"]
    assert saved["rope_parameters"]["rope_type"] == "yarn" and saved["rope_parameters"]["factor"] == 4.0
    assert saved["rope_parameters"]["mrope_interleaved"] is True
    assert saved["max_position_embeddings"] == 4 * saved["rope_parameters"]["original_max_position_embeddings"]
    lm = load_model(cfg.output_dir, device="cpu")
    assert lm.model.model.language_model.rotary_emb.rope_type == "yarn"


def test_a_manifest_without_clip_frames_is_refused_with_the_way_out(rows, tiny_model):
    from model.loader import load_processor

    old = dict(rows[0], clip_start_frame=None, clip_end_frame=None, video_n_frames=None)
    with pytest.raises(ValueError, match="rebuild the samples"):
        ManifestDataset([old], load_processor(tiny_model), 4096)
