"""vLLM inference backend (GPU, throughput): same prompts, same schemas, same frames as transformers.

Import-guarded: CPU installs and CI never import vllm. Install with ``pip install 'densevid[vllm]'``.
"""

from __future__ import annotations

import json
from pathlib import Path

from model.structured import Decoding, Generated, token_budget


def available() -> bool:
    try:
        import vllm  # noqa: F401
    except ImportError:
        return False
    return True


class VllmEngine:
    """Wraps ``vllm.LLM``; frames are passed pre-sampled with their metadata, as with transformers."""

    def __init__(self, model_id: str, max_model_len: int = 32768, gpu_memory_utilization: float = 0.85):
        if not available():
            raise ValueError("backend 'vllm' needs vLLM on a GPU machine: pip install 'densevid[vllm]'")
        if (Path(str(model_id)) / "adapter_config.json").exists():
            raise ValueError(f"{model_id} is a LoRA adapter; for vLLM fold it into its base first: "
                             f"densevid merge-lora {model_id} {model_id}-merged")
        from vllm import LLM

        self.llm = LLM(model=str(model_id), max_model_len=max_model_len, limit_mm_per_prompt={"video": 1},
                       gpu_memory_utilization=gpu_memory_utilization,
                       mm_processor_kwargs={"do_sample_frames": False})
        self.processor = self.llm.get_tokenizer()

    def generate_json(self, processor, prepared: list[dict], schemas: list[dict], decoding: Decoding) -> list[Generated]:
        """``prepared`` rows hold conversation, frames (n, h, w, 3) and VideoMetadata, as for transformers;
        one schema per row."""
        requests = []
        for p in prepared:
            text = processor.apply_chat_template(p["conversation"], add_generation_prompt=True, tokenize=False)
            md = dict(p["metadata"].__dict__) if hasattr(p["metadata"], "__dict__") else dict(p["metadata"])
            requests.append({"prompt": text, "multi_modal_data": {"video": [(p["frames"], md)]}})
        params = [_sampling(s, decoding) for s in schemas]
        outs = self.llm.generate(requests, sampling_params=params, use_tqdm=False)
        return [Generated(o.outputs[0].text, truncated=o.outputs[0].finish_reason == "length") for o in outs]


_ENGINES: dict = {}


def shared_engine(model_id: str, max_model_len: int = 32768, gpu_memory_utilization: float = 0.85) -> VllmEngine:
    """One engine per process, reused by every stage that asks for the same model and options (creating a
    second ``LLM`` in the same process would claim the GPU's memory share again). One is kept at a time."""
    key = (str(model_id), max_model_len, gpu_memory_utilization)
    if key not in _ENGINES:
        for old in _ENGINES.values():
            del old.llm
        _ENGINES.clear()
        _ENGINES[key] = VllmEngine(model_id, max_model_len, gpu_memory_utilization)
    return _ENGINES[key]


def _sampling(schema: dict, decoding: Decoding):
    from vllm import SamplingParams

    kwargs = dict(max_tokens=decoding.max_new_tokens or token_budget([schema]), seed=decoding.seed,
                  temperature=decoding.temperature if decoding.do_sample else 0.0, top_p=decoding.top_p)
    try:  # vLLM >= 0.10.2
        from vllm.sampling_params import StructuredOutputsParams

        return SamplingParams(structured_outputs=StructuredOutputsParams(json=json.dumps(schema)), **kwargs)
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return SamplingParams(guided_decoding=GuidedDecodingParams(json=schema), **kwargs)
