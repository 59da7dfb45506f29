"""Versioned prompt files: ``<task>_v<N>.txt``. A row records the version it was made with."""

from pathlib import Path

_HERE = Path(__file__).parent


def load_prompt(name: str) -> tuple[str, str]:
    """Return (version, template) for ``name`` like ``caption_v1``."""
    path = _HERE / f"{name}.txt"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in _HERE.glob("*.txt")))
        raise FileNotFoundError(f"prompt {name!r} not found in {_HERE}; known prompts: {known}")
    return name, path.read_text().strip()
