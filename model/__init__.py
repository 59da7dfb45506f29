"""Loading Qwen3-VL, the tiny offline checkpoint, model inputs and structured generation."""
