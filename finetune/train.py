"""The fine-tune recipe for the complete model (LoRA or full), one loop that reads top to bottom.

Single process, ``torchrun`` or ``accelerate launch`` (DDP; FSDP with recipes/accelerate/fsdp.yaml). A
global step is ``grad_accum * world_size`` micro-batches; every loss is a sum over label tokens divided by the
step's label tokens across all processes, so N processes with grad_accum=k give the losses of one process
with grad_accum=N*k.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import random
import signal
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from finetune.config import TrainConfig, dump_yaml


def train(cfg: TrainConfig, log=print, on_step=None) -> dict:
    """Run the recipe; ``on_step(step, record)`` is called after every optimizer step (tests use it)."""
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from finetune import attention
    from finetune import checkpoint as ckpt_io
    from finetune.data import Collate, ManifestDataset, Position, RankBatches, plan_batches
    from finetune.metrics import MetricsLog
    from finetune.modules import count_params, param_groups, use_bf16
    from mixtures.balance import read_manifest

    problems = cfg.problems()
    if problems:
        raise ValueError("bad training config:\n  " + "\n  ".join(problems))
    cuda = torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16(cfg, "cuda" if cuda else "cpu") else "no",
                              cpu=not cuda)
    rank, world, main = accelerator.process_index, accelerator.num_processes, accelerator.is_main_process
    say = log if main else (lambda *_: None)
    out = Path(cfg.output_dir)
    resume_from = ckpt_io.resolve_resume(cfg.resume, out)
    seed_everything(cfg.seed)

    # model: LoRA wrapper or full weights, frozen groups, gradient checkpointing
    model, processor = build_model(cfg, resume_from)
    counts = count_params(model)
    per_group = ", ".join(f"{g} {counts[g + '_trainable']:,}" for g in ("vision", "merger", "llm"))
    say(f"attention {attention.resolve(cfg.attn_implementation)}; method {cfg.method}; "
        f"trainable {counts['trainable']:,} of {counts['total']:,} ({per_group})"
        + (f"; resuming from {resume_from}" if resume_from else ""))

    # data: token-budget batches planned from (seed, epoch); frames decoded in workers
    rows = read_manifest(cfg.mixture)
    dataset = ManifestDataset(rows, processor, cfg.data.max_length, cfg.data.max_frames, cfg.data.target_fps,
                              cfg.data.max_frame_tokens)
    lengths = dataset.lengths()
    plan = functools.lru_cache(maxsize=4)(functools.partial(
        plan_batches, lengths, cfg.data.tokens_per_batch, cfg.data.max_batch_size, cfg.seed,
        packing=cfg.data.packing))
    collate = Collate(processor.tokenizer.pad_token_id, cfg.data.packing)
    per_step = cfg.optim.grad_accum * world

    # optimizer: one group per module (vision, merger, llm); cosine with warmup as a multiplier of each lr
    optim = torch.optim.AdamW(param_groups(model, cfg), betas=cfg.optim.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, functools.partial(lr_scale, cfg=cfg))
    model, optim = accelerator.prepare(model, optim)
    params = [p for p in model.parameters() if p.requires_grad]

    state = dict(data_position=[0, 0], dropped={}, tokens_seen=0, padded_seen=0)
    if resume_from:
        state = ckpt_io.load_training_state(accelerator, model, optim, sched, resume_from)
    start = state.get("step", 0)
    position = tuple(state["data_position"])
    dropped = Counter(state["dropped"] if main else {})  # saved as totals over processes: main holds them
    tokens_seen, padded_seen = state["tokens_seen"], state["padded_seen"]
    loader = DataLoader(dataset, batch_sampler=RankBatches(plan, position, rank, world), collate_fn=collate,
                        num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0,
                        worker_init_fn=leave_interrupts_to_main,
                        generator=torch.Generator().manual_seed(cfg.seed))  # leaves the restored RNG untouched
    batches, tracker = iter(loader), Position(plan, position, per_step)
    val_rows = read_manifest(cfg.val_mixture)[: cfg.val_samples] if cfg.val_mixture and cfg.val_every else []
    metrics = MetricsLog(out, start, cfg.tensorboard, enabled=main)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(dump_yaml(cfg))
    say(f"{len(rows)} samples, {len(plan(0))} micro-batches per epoch, {per_step} per step "
        f"({world} process{'es' if world > 1 else ''} x grad_accum {cfg.optim.grad_accum})")

    losses: list[float] = []
    model.train()
    for step in range(start, cfg.max_steps):
        t0 = time.perf_counter()
        micro = [next(batches) for _ in range(cfg.optim.grad_accum)]
        # the step's label tokens over all processes normalise every micro-batch's summed loss; a micro-batch
        # that is empty on any process (all its samples dropped) is skipped everywhere
        live = reduce(accelerator, torch.tensor([m["inputs"] is not None for m in micro], dtype=torch.float64), "min")
        labels = torch.tensor([m["stats"]["label_tokens"] for m in micro], dtype=torch.float64)
        labels = reduce(accelerator, labels * live, "sum")
        n_items = max(labels.sum().item(), 1.0)
        live_k = [k for k in range(len(micro)) if live[k] > 0]
        loss_sum = torch.zeros((), dtype=torch.float64)
        for k in live_k:
            inputs = model_inputs(micro[k]["inputs"], accelerator, model)
            sync = nullcontext() if k == live_k[-1] else accelerator.no_sync(model)
            with sync:
                loss = labelled_loss(model, inputs, n_items)  # sum / n_items
                accelerator.backward(loss * world)  # DDP averages gradients; the normalised sum is wanted
            loss_sum += loss.detach().double().cpu()
        grad_norm = accelerator.clip_grad_norm_(params, cfg.optim.clip_grad) if cfg.optim.clip_grad > 0 else None
        lrs = {g["name"]: g["lr"] for g in optim.param_groups}
        optim.step()
        sched.step()
        optim.zero_grad(set_to_none=True)
        position = tracker.advance()

        # bookkeeping over all processes: loss, tokens, padding, drops
        stats = [m["stats"] for m in micro]
        for d in (d for m in stats for d in m["dropped"]):
            dropped[d["reason"]] += 1
            if sum(dropped.values()) <= 5:  # the first few by name; all of them in the counts
                log(f"dropped {d['sample_id']}: {d['why']}")
        step_counts = reduce(accelerator, torch.tensor(
            [loss_sum.item(), sum(s["tokens"] for s in stats), sum(s["padded_tokens"] for s in stats),
             sum(s["samples"] for s in stats)], dtype=torch.float64), "sum").tolist()
        step_loss, step_tokens, step_padded, step_samples = step_counts
        tokens_seen, padded_seen = tokens_seen + step_tokens, padded_seen + step_padded
        losses.append(step_loss)
        seconds = time.perf_counter() - t0
        record = dict(step=step, loss=round(step_loss, 6), lr=lrs.get("llm", next(iter(lrs.values()))),
                      **{f"lr_{g}": v for g, v in lrs.items() if not g.endswith("_no_decay")},
                      grad_norm=round(float(grad_norm), 6) if grad_norm is not None else None,
                      tokens=int(step_tokens), tokens_per_s=round(step_tokens / seconds, 1),
                      padding_fraction=round(1 - step_tokens / step_padded, 4) if step_padded else 0.0,
                      samples=int(step_samples), dropped=sum(reduce_counter(accelerator, dropped).values()),
                      epoch=position[0], elapsed_s=round(seconds, 3))
        done = step + 1
        if cfg.val_every and val_rows and (done % cfg.val_every == 0 or done == cfg.max_steps):
            record["val_loss"] = round(validation_loss(cfg, model, accelerator, dataset, val_rows, collate), 6)
        if step % cfg.log_every == 0 or done == cfg.max_steps or "val_loss" in record:
            metrics.write(record)
            say(f"step {step:5d}  loss {step_loss:.4f}  lr {record['lr']:.2e}  tok/s {record['tokens_per_s']:.0f}  "
                f"pad {100 * record['padding_fraction']:.1f}%" + (f"  val {record['val_loss']:.4f}"
                                                                  if "val_loss" in record else ""))
        if cfg.save_every and done % cfg.save_every == 0 and done < cfg.max_steps:
            position_state = dict(data_position=list(position), dropped=dict(reduce_counter(accelerator, dropped)),
                                  tokens_seen=tokens_seen, padded_seen=padded_seen, world_size=world)
            saved = ckpt_io.save_checkpoint(accelerator, model, processor, optim, sched, out, done, position_state)
            say(f"checkpoint {saved}")
        if on_step is not None:
            on_step(step, record)

    # final weights (adapter or full) with processor files in output_dir itself
    ckpt_io.save_model(accelerator, model, processor, out)
    metrics.close()
    dropped = reduce_counter(accelerator, dropped)
    summary = dict(output_dir=str(out), losses=losses, trainable=counts["trainable"], steps=cfg.max_steps,
                   padding_fraction=round(1 - tokens_seen / padded_seen, 4) if padded_seen else 0.0,
                   dropped=dict(dropped), world_size=world)
    if main:
        (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
        say(f"saved {out}; padding {100 * summary['padding_fraction']:.1f}%; dropped {dict(dropped) or 'none'}")
    if world > 1:
        # DDP holds the process group: let go of it first, or gloo's threads can outlive the interpreter and abort
        accelerator.wait_for_everyone()
        del model, optim, sched, params
        accelerator.free_memory()
        gc.collect()
        accelerator.end_training()
    return summary


def build_model(cfg: TrainConfig, resume_from: Path | None = None):
    """Qwen3-VL with the recipe's rope, LoRA or trainable groups; weights from a checkpoint when resuming."""
    from transformers import AutoConfig, Qwen3VLForConditionalGeneration

    from finetune.attention import model_kwarg
    from finetune.checkpoint import load_adapter_weights
    from finetune.modules import enable_checkpointing, set_trainable, weight_dtype, wrap_lora, yarn_rope
    from model.loader import load_processor

    full_from = resume_from / "model" if resume_from is not None and cfg.method == "full" else None
    source = str(full_from or cfg.model)
    config = AutoConfig.from_pretrained(source)
    text = config.text_config
    if cfg.rope.scaling == "yarn" and text.rope_parameters.get("rope_type") != "yarn":
        original = cfg.rope.original_max_position or text.max_position_embeddings
        text.rope_parameters = yarn_rope(text.rope_parameters, cfg.rope.factor, original)
        text.max_position_embeddings = int(original * cfg.rope.factor)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = Qwen3VLForConditionalGeneration.from_pretrained(source, config=config, dtype=weight_dtype(cfg, device),
                                                            **model_kwarg(cfg.attn_implementation))
    model.config.use_cache = False
    if cfg.method == "lora":
        model = wrap_lora(model, cfg)
        if resume_from is not None:
            load_adapter_weights(model, resume_from / "model")
    else:
        set_trainable(model, cfg)
    if cfg.gradient_checkpointing:
        enable_checkpointing(model, cfg.checkpoint_reentrant)
    return model, load_processor(cfg.model)


def lr_scale(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine from 1 down to ``min_lr_ratio`` at ``max_steps``; the warmup takes at most a
    quarter of the run, so a short run still trains at its learning rate."""
    warm = min(cfg.optim.warmup_steps, max(1, cfg.max_steps // 4))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, cfg.max_steps - warm))
    low = cfg.optim.min_lr_ratio
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))


def labelled_loss(model, inputs: dict, n_items: float) -> torch.Tensor:
    """Summed token loss over the labelled positions, divided by ``n_items``; logits only where a label is.

    transformers' ``logits_to_keep`` (a boolean mask) picks the hidden states before ``lm_head``, so a 256K
    row with a few hundred answer tokens projects a few hundred rows onto the vocabulary, not 256K; the
    causal-LM loss transformers uses for this model takes the already shifted labels of the kept positions.
    The value equals the full computation's (tests/finetune/test_long_context.py).
    """
    from transformers.loss.loss_utils import ForCausalLMLoss

    from finetune.data import IGNORE

    inputs = dict(inputs)
    shifted = torch.nn.functional.pad(inputs.pop("labels"), (0, 1), value=IGNORE)[:, 1:]
    keep = shifted != IGNORE
    logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    return ForCausalLMLoss(logits, None, logits.shape[-1], num_items_in_batch=n_items, shift_labels=shifted[keep])


def model_inputs(inputs: dict, accelerator, model) -> dict:
    """Move to the device; a packed row gets per-sample positions from the model's rope index."""
    from finetune.data import packed_positions

    inputs = {k: v.to(accelerator.device) for k, v in inputs.items()}
    if "pack_lengths" in inputs:
        inputs = packed_positions(core_model(accelerator, model), inputs)
    return inputs


def core_model(accelerator, model):
    """The inner ``Qwen3VLModel`` (the one with ``get_rope_index``) under DDP/PEFT wrappers."""
    m = accelerator.unwrap_model(model)
    m = m.get_base_model() if hasattr(m, "get_base_model") else m
    return m.model


@torch.no_grad()
def validation_loss(cfg, model, accelerator, dataset, val_rows, collate) -> float:
    """Mean token loss over the validation rows, batches shared out over processes."""
    from finetune.data import ManifestDataset, plan_batches

    val = ManifestDataset(val_rows, dataset.processor, cfg.data.max_length, cfg.data.max_frames, cfg.data.target_fps,
                          cfg.data.max_frame_tokens)
    batches = plan_batches(val.lengths(), cfg.data.tokens_per_batch, cfg.data.max_batch_size, cfg.seed, 0,
                           packing=cfg.data.packing)
    model.eval()
    total = torch.zeros(2, dtype=torch.float64)
    rank, world = accelerator.process_index, accelerator.num_processes
    for k in range(-(-len(batches) // world)):  # the same number of forwards everywhere (FSDP gathers in each)
        i = rank + k * world
        b = collate([val[j] for j in batches[i if i < len(batches) else 0]])
        if b["inputs"] is None:
            continue
        loss = labelled_loss(model, model_inputs(b["inputs"], accelerator, model), 1.0)
        if i < len(batches):
            total += torch.tensor([loss.item(), b["stats"]["label_tokens"]], dtype=torch.float64)
    model.train()
    total = reduce(accelerator, total, "sum")
    return (total[0] / total[1]).item() if total[1] > 0 else float("nan")


def reduce(accelerator, t: torch.Tensor, op: str) -> torch.Tensor:
    """All-reduce over processes (a no-op in one process); gloo/nccl need the tensor on their device."""
    if accelerator.num_processes == 1:
        return t
    import torch.distributed as dist

    dev = accelerator.device if accelerator.device.type == "cuda" else torch.device("cpu")
    x = t.to(dev)
    dist.all_reduce(x, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MIN)
    return x.cpu()


def reduce_counter(accelerator, counter: Counter) -> Counter:
    keys = ("too_long", "decode_failed")
    summed = reduce(accelerator, torch.tensor([counter.get(k, 0) for k in keys], dtype=torch.float64), "sum")
    return Counter({k: int(v) for k, v in zip(keys, summed.tolist()) if v})


def leave_interrupts_to_main(_worker_id: int) -> None:
    """A DataLoader worker ignores Ctrl-C: the main process stops and ends it; otherwise the signal, sent to
    the whole process group, makes each worker print a KeyboardInterrupt of its own."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
