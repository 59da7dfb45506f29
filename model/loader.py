"""One loader for captioning and training: a hub id or a local directory, optionally a LoRA adapter."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "Qwen/Qwen3-VL-2B-Instruct"


@dataclass
class LoadedModel:
    model: torch.nn.Module
    processor: object
    model_id: str
    revision: str


@contextmanager
def peft_wrapping():
    """Around PEFT wrapping a model: PEFT reads ``is_gradient_checkpointing``, which transformers 5 deprecates
    with a FutureWarning on every read; only that warning is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def _is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").exists()


def load_processor(model_id: str | Path):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(model_id))
    except OSError as e:
        raise _cannot_load(model_id, e) from e


def _cannot_load(model_id, e: Exception) -> ValueError:
    return ValueError(f"cannot load {model_id}: {str(e).splitlines()[0]}. Pass --model a local checkpoint "
                      "directory, or a hub id on a machine that can reach the hub (`densevid build-tiny --out DIR` "
                      "writes an offline test model)")


def load_model(
    model_id: str | Path = DEFAULT_MODEL,
    dtype: torch.dtype | None = None,
    device: str | None = None,
    revision: str | None = None,
) -> LoadedModel:
    """Load Qwen3-VL and its processor. ``model_id`` may also be a saved LoRA adapter directory."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    path = Path(str(model_id))
    if path.is_dir() and _is_adapter_dir(path):
        from peft import PeftModel

        base_id = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        base = Qwen3VLForConditionalGeneration.from_pretrained(base_id, dtype=dtype)
        with peft_wrapping():
            model = PeftModel.from_pretrained(base, str(path))
        processor = load_processor(path)
    else:
        kwargs = {"revision": revision} if revision else {}
        try:
            model = Qwen3VLForConditionalGeneration.from_pretrained(str(model_id), dtype=dtype, **kwargs)
        except OSError as e:
            raise _cannot_load(model_id, e) from e
        processor = load_processor(model_id)
    model.to(device).eval()
    return LoadedModel(model, processor, str(model_id), revision or _local_revision(path))


_SHARED: dict = {}


def shared_model(model_id: str | Path) -> LoadedModel:
    """The model this process loaded last for the same id and checkpoint, or a fresh load: caption, ground
    and verify of one run (or one Ray worker) load their model once. One model is kept at a time."""
    key = (model_key(model_id), model_revision(model_id))
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = load_model(model_id)
    return _SHARED[key]


def model_key(model_id: str | Path) -> str:
    """How a model is named in tables: local checkpoints by absolute path, hub ids as given."""
    path = Path(str(model_id)).expanduser()
    return str(path.resolve()) if path.exists() else str(model_id)


def model_revision(model_id: str | Path) -> str:
    return _local_revision(Path(str(model_id)))


def _local_revision(path: Path) -> str:
    """A stable revision tag for local checkpoints: hash of the config and weights index."""
    import hashlib

    if not path.is_dir():
        return "main"
    h = hashlib.sha256()
    for name in sorted(p.name for p in path.glob("*.json")):
        h.update((path / name).read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        h.update(str(weights.stat().st_size).encode())
    return "local-" + h.hexdigest()[:12]
