"""A sample's chat as stored (``samples.messages``: JSON text) read back, the same way by every reader:
training, evaluation, export and the report."""

from __future__ import annotations

import json


def read_messages(stored: str | list) -> list[dict]:
    """The turns of a stored chat, each ``{"role", "content": [{"type", ...}, ...]}`` (a plain-text content
    becomes one text part). Raises ValueError naming what is wrong with it."""
    try:
        turns = json.loads(stored) if isinstance(stored, (str, bytes)) else stored
    except json.JSONDecodeError as e:
        raise ValueError(f"messages are not JSON ({e}): {str(stored)[:80]!r}; rebuild the samples with "
                         "`densevid tasks`") from None
    if not isinstance(turns, list):
        raise ValueError(f"messages must be a list of turns, not {type(turns).__name__}: {str(stored)[:80]!r}")
    return [_turn(k, t) for k, t in enumerate(turns)]


def _turn(k: int, turn) -> dict:
    if not isinstance(turn, dict) or not isinstance(turn.get("role"), str) or "content" not in turn:
        raise ValueError(f"turn {k} must be an object with a role and a content: {str(turn)[:80]!r}")
    content = turn["content"]
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(p, dict) and "type" in p for p in content):
        raise ValueError(f"turn {k} ({turn['role']}): content must be a text or a list of parts with a type: "
                         f"{str(content)[:80]!r}")
    return {**turn, "content": [dict(p) for p in content]}


def turn_text(turn: dict) -> str:
    """The text parts of one turn, joined."""
    return "".join(p.get("text") or "" for p in turn["content"] if p["type"] == "text")
