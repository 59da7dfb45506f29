"""Fine-tune recipes for the complete model (vision encoder, merger, LLM): data, loop, checkpoints."""
