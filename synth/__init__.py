"""Generated data: captions, dense captions, grounding, training samples and procedural videos."""
