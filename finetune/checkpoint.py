"""Checkpoints that resume exactly, and LoRA merging.

``<output_dir>/checkpoints/step-000008/`` holds:

- ``model/``: the adapter (LoRA) or the full weights, with the processor files; ``load_model`` opens it.
- ``optimizer.pt``, ``scheduler.pt``: their state dicts.
- ``rng-rank<r>.pt``: Python, NumPy, torch (and CUDA) RNG states of every process.
- ``state.json``: completed steps, the data position (epoch, batch index) and running counters.

A checkpoint is written under a ``.tmp`` name and renamed when complete, so a kill mid-save leaves the
previous checkpoint as the latest.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

STEP_PREFIX = "step-"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / "checkpoints" / f"{STEP_PREFIX}{step:06d}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = Path(output_dir) / "checkpoints"
    done = sorted(p for p in root.glob(f"{STEP_PREFIX}*") if p.is_dir() and not p.name.endswith(".tmp")
                  and (p / "state.json").exists())
    return done[-1] if done else None


def resolve_resume(resume: str, output_dir: str | Path) -> Path | None:
    """``""``: none; ``"auto"``: the latest complete checkpoint in output_dir (or none); else that folder."""
    if not resume:
        return None
    if resume == "auto":
        return latest_checkpoint(output_dir)
    path = Path(resume)
    if not (path / "state.json").exists():
        raise ValueError(f"resume {path}: not a checkpoint (no state.json); use resume=auto")
    return path


def rng_state() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(accelerator, model, processor, out: Path) -> None:
    """Adapter or full weights (gathered from every process under FSDP) plus processor files."""
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out, state_dict=state, safe_serialization=True)
        processor.save_pretrained(out)


def optimizer_state(accelerator, model, optim) -> dict:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:  # sharded: gather a full state dict
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(model, optim.optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return optim.state_dict()


def load_optimizer_state(accelerator, model, optim, state: dict) -> None:
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(model, optim.optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optim.load_state_dict(state)


def save_checkpoint(accelerator, model, processor, optim, sched, output_dir, step: int, state: dict) -> Path:
    final = checkpoint_dir(output_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    save_model(accelerator, model, processor, tmp / "model")
    optim_state = optimizer_state(accelerator, model, optim)
    torch.save(rng_state(), tmp / f"rng-rank{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        torch.save(optim_state, tmp / "optimizer.pt")
        torch.save(sched.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps(dict(state, step=step), indent=1))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def load_training_state(accelerator, model, optim, sched, ckpt: Path) -> dict:
    """Optimizer, scheduler and RNG from a checkpoint (weights were loaded with the model); returns state.json."""
    load_optimizer_state(accelerator, model, optim, torch.load(ckpt / "optimizer.pt", weights_only=False))
    sched.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    rng = ckpt / f"rng-rank{accelerator.process_index}.pt"
    if not rng.exists():
        raise ValueError(f"{ckpt} has no {rng.name}: it was written by fewer processes; resume with the same "
                         "number of processes")
    set_rng_state(torch.load(rng, weights_only=False))
    return json.loads((ckpt / "state.json").read_text())


def load_adapter_weights(model, adapter_dir: Path) -> None:
    """Every adapter parameter of ``model`` (LoRA weights, trained merger copies) from ``adapter_dir``, or a
    ValueError naming the weights that are missing, unexpected or of another shape."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(adapter_dir / "adapter_model.safetensors")
    # save_embedding_layers=False: "auto" may ask the hub about the base model; embeddings are never adapted here
    wanted = get_peft_model_state_dict(model, save_embedding_layers=False)
    missing = sorted(wanted.keys() - saved.keys())
    unexpected = sorted(saved.keys() - wanted.keys())
    reshaped = sorted(k for k in wanted.keys() & saved.keys() if wanted[k].shape != saved[k].shape)
    if not (missing or unexpected or reshaped):
        unexpected = sorted(set_peft_model_state_dict(model, saved).unexpected_keys)
    if missing or unexpected or reshaped:
        raise ValueError(_adapter_mismatch(adapter_dir, missing, unexpected, reshaped))


def _adapter_mismatch(adapter_dir: Path, missing: list[str], unexpected: list[str], reshaped: list[str]) -> str:
    parts = [f"{len(keys)} weights {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
             for what, keys in (("missing from the file", missing), ("in the file but not in the model", unexpected),
                                ("of another shape", reshaped)) if keys]
    return (f"{adapter_dir}: the adapter does not fit this model: " + "; ".join(parts) + ". Resume with the "
            "LoRA settings it was saved with (model, lora.rank, vision.train, merger.train), or start afresh "
            "with resume='' or another output_dir")


def merge_lora(adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Fold a LoRA adapter into its base: a full checkpoint with processor files, opened like any other."""
    from model.loader import load_model

    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise ValueError(f"{adapter_dir} has no adapter_config.json; pass a LoRA output folder or its checkpoint's "
                         "model/ folder")
    lm = load_model(adapter_dir, dtype=torch.float32, device="cpu")
    merged = lm.model.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    lm.processor.save_pretrained(out)
    return out
