"""Frames + chat messages -> Qwen3-VL model inputs, through the real processor.

Frames are sampled by our code; the processor gets ``VideoMetadata(fps=source_fps, frames_indices=...)``
and ``do_sample_frames=False`` so the ``<t seconds>`` it writes are on the source video's clock.
"""

from __future__ import annotations

import numpy as np


def video_metadata(indices: list[int], fps: float, n_frames: int, width: int, height: int):
    from transformers.video_utils import VideoMetadata

    return VideoMetadata(total_num_frames=int(n_frames), fps=float(fps), width=int(width), height=int(height),
                         duration=n_frames / fps, frames_indices=[int(i) for i in indices])


def user_video_message(prompt: str) -> dict:
    return {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}


def assistant_message(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def build_inputs(processor, conversations: list[list[dict]], videos: list[np.ndarray], metadata: list,
                 add_generation_prompt: bool = True, padding_side: str = "left"):
    """Batch of conversations, each with one video, as tensors ready for ``model(**inputs)``."""
    texts = [bare_video_pads(processor, processor.apply_chat_template(
        c, add_generation_prompt=add_generation_prompt, tokenize=False)) for c in conversations]
    processor.tokenizer.padding_side = padding_side
    return processor(text=texts, videos=list(videos), video_metadata=list(metadata), do_sample_frames=False,
                     padding=True, return_tensors="pt")


def bare_video_pads(processor, text: str) -> str:
    """The template's ``<|vision_start|><|video_pad|><|vision_end|>`` as a bare ``<|video_pad|>``.

    The processor wraps every temporal patch in its own vision start/end; transformers before 5.25 kept the
    template's pair around them all as well. A bare pad gives Qwen3-VL's layout whatever the version."""
    tok = processor.tokenizer
    start, end, pad = (getattr(tok, a, d) for a, d in (("vision_start_token", "<|vision_start|>"),
                                                      ("vision_end_token", "<|vision_end|>"),
                                                      ("video_token", "<|video_pad|>")))
    return text.replace(start + pad + end, pad)


def visual_tokens(processor, n_frames: int, height: int, width: int) -> int:
    """Visual tokens the processor will give a clip of ``n_frames`` frames of this size."""
    vp = processor.video_processor
    return int(vp.get_num_of_video_patches(n_frames, height, width)) // (vp.merge_size ** 2)
