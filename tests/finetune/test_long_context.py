"""Long context: attention without an L x L mask, logits only at labelled positions, the long-video frame
budget, and the s2-long / s3-ultralong presets on long generated samples."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from curation.frames import FramePolicy, sample_indices
from finetune import attention
from finetune.config import load_config
from finetune.data import IGNORE, Collate, ManifestDataset, frame_budget, packed_positions
from finetune.metrics import read_metrics
from finetune.train import build_model, labelled_loss, train
from model.inputs import visual_tokens
from model.loader import load_model

QUIET = dict(log=lambda *_: None)
LONG_S, LONG_SIZE = 150.0, (256, 192)  # 300 frames at 2 fps, 48 visual tokens per frame pair


def _encoded(rows, processor, n=4):
    ds = ManifestDataset(rows[:n], processor, 4096)
    return [ds[i] for i in range(n)]


def _model(path, impl):
    from transformers import Qwen3VLForConditionalGeneration

    return Qwen3VLForConditionalGeneration.from_pretrained(path, **attention.model_kwarg(impl)).eval()


# --- logits only where labels are -------------------------------------------------------------------------


def test_labelled_logits_give_the_full_computations_loss_and_gradients(rows, tiny_model):
    lm = load_model(tiny_model, device="cpu")
    # timestamp answers: a few tokens after a long video prompt (box-list answers can be as long as the prompt)
    items = _encoded([r for r in rows if r["task"] == "temporal_grounding"], lm.processor)
    batch = Collate(lm.processor.tokenizer.pad_token_id)(items)
    inputs, n = batch["inputs"], batch["stats"]["label_tokens"]
    model = lm.model.train()
    full = model(**inputs, num_items_in_batch=n, use_cache=False)
    full.loss.backward()
    g_full = model.lm_head.weight.grad.clone()
    model.zero_grad()
    kept = labelled_loss(model, inputs, n)
    kept.backward()
    assert abs(full.loss.item() - kept.item()) < 1e-5, (full.loss.item(), kept.item())
    assert torch.allclose(g_full, model.lm_head.weight.grad, atol=1e-6)
    assert full.logits.shape[:2] == inputs["input_ids"].shape  # every position before
    kept_rows = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False,
                      logits_to_keep=torch.nn.functional.pad(inputs["labels"], (0, 1), value=IGNORE)[:, 1:] != IGNORE)
    assert kept_rows.logits.shape[0] == n < inputs["input_ids"].numel() / 2  # only the answer tokens now


# --- attention for packed rows ----------------------------------------------------------------------------


def _packed_and_padded(rows, processor):
    items = _encoded(rows, processor)
    pad = processor.tokenizer.pad_token_id
    return Collate(pad)(items), Collate(pad, packing=True)(items)


def test_sdpa_varlen_packed_loss_and_gradients_equal_the_padded_batch(rows, tiny_model):
    model = _model(tiny_model, "sdpa_varlen").train()
    ref = _model(tiny_model, "sdpa").train()
    padded, packed = _packed_and_padded(rows, load_model(tiny_model, device="cpu").processor)
    n = padded["stats"]["label_tokens"]
    a = labelled_loss(ref, padded["inputs"], n)
    b = labelled_loss(model, packed_positions(model.model, dict(packed["inputs"])), n)
    assert abs(a.item() - b.item()) < 1e-5, (a.item(), b.item())
    a.backward()
    b.backward()
    for (name, p), q in zip(ref.named_parameters(), model.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name
    # sdpa_varlen on padded rows (right padding) is the padded sdpa batch too
    c = labelled_loss(model, padded["inputs"], n)
    assert abs(a.item() - c.item()) < 1e-5


def test_no_implementation_but_sdpa_builds_an_l_by_l_mask_for_a_packed_row(rows, tiny_model):
    from transformers.masking_utils import create_causal_mask
    from transformers.modeling_flash_attention_utils import _is_packed_sequence, prepare_fa_kwargs_from_position_ids

    model = _model(tiny_model, "sdpa_varlen")
    _, packed = _packed_and_padded(rows, load_model(tiny_model, device="cpu").processor)
    lens = packed["inputs"]["pack_lengths"].tolist()
    inputs = packed_positions(model.model, dict(packed["inputs"]))
    text = inputs["position_ids"][0]  # the row the text model (and flash attention) reads
    length = text.shape[1]
    # flash_attention_2's variable-length path: positions restart at each sample -> cu_seqlens = sample bounds
    assert _is_packed_sequence(text, 1)
    (cu, _), (longest, _) = prepare_fa_kwargs_from_position_ids(text)
    bounds = torch.cumsum(torch.tensor([0] + lens), 0)
    assert cu.tolist() == bounds.tolist() and int(longest) == max(lens)
    assert attention.segments(text, None, 0, length) == list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    embeds = torch.zeros(1, length, 8)
    config = model.config.text_config
    masks = {}
    for impl in ("sdpa", "flash_attention_2", attention.VARLEN_KEY):
        config._attn_implementation = impl
        masks[impl] = create_causal_mask(config=config, inputs_embeds=embeds, attention_mask=None, cache=None,
                                         position_ids=text)
    assert tuple(masks["sdpa"].shape) == (1, 1, length, length)
    assert masks["flash_attention_2"] is None and masks[attention.VARLEN_KEY] is None
    # sdpa's dense mask is block diagonal: a sample sees nothing of the one before it
    assert not masks["sdpa"][0, 0, lens[0], : lens[0]].any() and masks["sdpa"][0, 0, lens[0], lens[0]]


def test_flex_attention_block_mask_gives_the_padded_loss_on_cpu_forward(rows, tiny_model):
    model = _model(tiny_model, "flex_attention")
    ref = _model(tiny_model, "sdpa")
    assert model.config.text_config._attn_implementation == attention.FLEX_KEY
    assert model.config.vision_config._attn_implementation == "sdpa"
    padded, packed = _packed_and_padded(rows, load_model(tiny_model, device="cpu").processor)
    n = padded["stats"]["label_tokens"]
    with torch.no_grad():
        a = labelled_loss(ref, padded["inputs"], n)
        b = labelled_loss(model, packed_positions(model.model, dict(packed["inputs"])), n)
    assert abs(a.item() - b.item()) < 1e-5, (a.item(), b.item())


# --- config: the choice, the rejections, the presets ------------------------------------------------------


def test_dense_masks_and_impossible_attention_are_rejected_with_the_fix(fake_mixture, monkeypatch):
    base = [f"mixture={fake_mixture}", "tensorboard=false"]
    with pytest.raises(ValueError) as e:
        load_config("s2-long", base + ["attn_implementation=sdpa", "max_dense_mask_gib=4"])
    msg = str(e.value)
    assert "a packed row of data.tokens_per_batch=32768 tokens: 5.0 GiB > max_dense_mask_gib 4.0" in msg
    assert "sdpa_varlen" in msg and "flash_attention_2" in msg and "lower data.tokens_per_batch" in msg
    with pytest.raises(ValueError, match="attn_implementation 'flash' is not one of auto, sdpa"):
        load_config("s2-long", base + ["attn_implementation=flash"])
    cfg = load_config("s3-ultralong", base)
    assert cfg.attn_implementation == "auto" and cfg.attention_problems(cuda=False) == []
    cfg.attn_implementation = "sdpa"  # 256K packed: 320 GiB of mask, rejected on any machine
    assert "320.0 GiB" in cfg.attention_problems(cuda=False)[0]
    cfg.attn_implementation = "flash_attention_2"
    problems = cfg.attention_problems(cuda=False)
    assert any("needs a CUDA GPU and the flash-attn package" in p and "on CPU sdpa_varlen" in p for p in problems)
    assert any("bf16 only" in p for p in problems), "fp32 on CPU"
    cfg.precision = "bf16"
    assert not any("bf16 only" in p for p in cfg.attention_problems(cuda=True))
    cfg.attn_implementation = "flex_attention"
    assert "no FlexAttention backward" in cfg.attention_problems(cuda=False)[0]
    assert cfg.attention_problems(cuda=True) == []
    assert attention.resolve("auto", cuda=False) == "sdpa_varlen"
    for flash, expected in ((True, "flash_attention_2"), (False, "flex_attention")):  # on a GPU, flash-attn first
        monkeypatch.setattr(attention, "has_flash_attn", lambda flash=flash: flash)
        assert attention.resolve("auto", cuda=True) == expected
    monkeypatch.undo()
    kw = attention.model_kwarg("flash_attention_2")["attn_implementation"]
    assert kw == {"": "flash_attention_2", "text_config": "flash_attention_2", "vision_config": "flash_attention_2"}


def test_long_presets_sample_frames_as_the_builders_do_and_checkpoint_both_towers(fake_mixture, tiny_model):
    policy = FramePolicy()  # the sample builders' budget (synth.tasks, curation.frames)
    for preset in ("s2-long", "s3-ultralong"):
        cfg = load_config(preset, [f"mixture={fake_mixture}", "tensorboard=false", f"model={tiny_model}"])
        assert (cfg.data.max_frames, cfg.data.target_fps) == (policy.max_frames, policy.target_fps)
        assert cfg.data.max_frame_tokens * 32 * 32 == policy.max_pixels
        assert cfg.gradient_checkpointing and cfg.data.packing and cfg.attn_implementation == "auto"
    model, _ = build_model(cfg)
    layers = list(model.model.visual.blocks) + list(model.model.language_model.layers)
    assert len(layers) == 4 and all(layer.gradient_checkpointing for layer in layers)


# --- long generated samples -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_mixture(tmp_path_factory, tiny_model):
    """Two generated 150 s videos, one dense-caption sample each, stored with 64 frames as the pipeline does."""
    from model.loader import load_processor
    from synth.videos import render_video

    root = tmp_path_factory.mktemp("long")
    processor = load_processor(tiny_model)
    rows = []
    for k in range(2):
        path = root / f"long{k}.mp4"
        render_video(path, "cinematic", LONG_S, seed=10 + k, fps=4.0, size=LONG_SIZE, n_scenes=6, n_fades=0)
        n, fps = int(LONG_S * 4), 4.0
        idx = sample_indices(0, n, fps, FramePolicy(max_frames=64))
        answer = " ".join(f"<{a:.1f} - {a + 25:.1f} seconds> a shape moves." for a in range(0, int(LONG_S), 25))
        msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        rows.append(dict(sample_id=f"long{k}", task="dense_caption", video_id=f"v{k}", uri=str(path),
                         clip_start_s=0.0, clip_end_s=LONG_S, clip_start_frame=0, clip_end_frame=n, video_n_frames=n,
                         frame_indices=idx, fps=fps, messages=json.dumps(msgs), domain="cinematic", split="train",
                         n_text_tokens=len(processor.tokenizer("Describe the video." + answer)["input_ids"]),
                         n_visual_tokens=visual_tokens(processor, len(idx), LONG_SIZE[1], LONG_SIZE[0]),
                         source="", repeat=0))
    mix = root / "mixture"
    mix.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), mix / "manifest.parquet")
    return mix, rows


def test_long_samples_take_2_fps_up_to_2048_frames_at_the_per_frame_cap(long_mixture, tiny_model):
    from model.loader import load_processor

    _, rows = long_mixture
    processor = load_processor(tiny_model)
    ds = ManifestDataset(rows, processor, 65536, max_frames=2048, target_fps=2.0, max_frame_tokens=768)
    sample = ds[0]
    t, h, w = sample["video_grid_thw"][0].tolist()
    assert t == LONG_S * 2 / 2, "150 s at 2 fps: 300 frames, 150 frame pairs"
    assert (h // 2) * (w // 2) == (LONG_SIZE[1] // 32) * (LONG_SIZE[0] // 32) == 48  # native size under the cap
    n = int(sample["input_ids"].shape[0])
    assert n > 8000 and ds.lengths()[0] == pytest.approx(n, rel=0.02)
    stored = ManifestDataset(rows, processor, 65536)[0]  # the 64 frames stored with the sample
    assert stored["video_grid_thw"][0, 0] == 32 and int(stored["input_ids"].shape[0]) < n / 3
    # a small cap shrinks each frame, not the frame count
    capped = ManifestDataset(rows, processor, 65536, max_frames=2048, max_frame_tokens=12)[0]["video_grid_thw"][0]
    assert capped[0] == 150 and (capped[1] // 2) * (capped[2] // 2) <= 12
    assert frame_budget(processor, 2048, 0) is processor and processor.video_processor.max_video_tokens == 16


@pytest.mark.parametrize("preset", ["s2-long", "s3-ultralong"])
def test_long_presets_train_on_long_samples(preset, long_mixture, tiny_model, tmp_path):
    mix, _ = long_mixture
    cfg = load_config(preset, [f"model={tiny_model}", f"mixture={mix}", f"output_dir={tmp_path / 'run'}",
                               "max_steps=3", "log_every=1", "save_every=0", "tensorboard=false",
                               "data.num_workers=0", "data.max_length=16384", "data.tokens_per_batch=20000",
                               "optim.grad_accum=1", "optim.warmup_steps=1", "llm.lr=3e-3", "merger.lr=3e-3",
                               "vision.lr=1e-3"])
    result = train(cfg, **QUIET)
    metrics = read_metrics(cfg.output_dir)
    assert [m["samples"] for m in metrics] == [2, 2, 2] and result["dropped"] == {}
    assert all(m["tokens"] > 16000 and m["padding_fraction"] == 0 for m in metrics), "one packed row of 2 samples"
    losses = [m["loss"] for m in metrics]
    assert all(math.isfinite(x) for x in losses) and losses[2] < losses[0] - 0.1, losses
