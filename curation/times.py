"""Time on the source video's clock, in one place.

- A :class:`FrameSpan` (frame indices + the stream's fps) is the stored truth; seconds derive from it.
- The times Qwen3-VL's processor writes before each temporal patch (``<3.0 seconds>``).
- The one renderer of time text (``<12.0 - 17.5 seconds>``, ``<12.0 seconds>``, ``<00:00:12 - 00:00:17>``)
  and its parser. Generation, training targets and evaluation all go through these.
- Moving a text's times to a clip's clock (exports that cut clips), with the same renderers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

STYLES = ("seconds", "hms")


@dataclass(frozen=True)
class FrameSpan:
    """Frames ``[start_frame, end_frame)`` of a stream running at ``fps``."""

    start_frame: int
    end_frame: int
    fps: float

    def __post_init__(self):
        if self.fps <= 0:
            raise ValueError(f"fps {self.fps} must be > 0")
        if self.end_frame < self.start_frame:
            raise ValueError(f"frame span [{self.start_frame}, {self.end_frame}) ends before it starts")

    @property
    def start_s(self) -> float:
        return frame_s(self.start_frame, self.fps)

    @property
    def end_s(self) -> float:
        return frame_s(self.end_frame, self.fps)

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


def frame_s(frame: int, fps: float) -> float:
    """Seconds at which frame ``frame`` starts: index / fps."""
    return frame / fps


def frame_times(indices: list[int], fps: float) -> list[float]:
    return [frame_s(i, fps) for i in indices]


def group_times(indices: list[int], fps: float, temporal_patch: int = 2) -> list[float]:
    """The time Qwen3-VL's processor writes before each temporal patch: the mean of its frames' times
    (the last frame repeats to fill the final patch, as the processor does)."""
    idx = list(indices)
    while len(idx) % temporal_patch:
        idx.append(idx[-1])
    return [sum(idx[i : i + temporal_patch]) / temporal_patch / fps for i in range(0, len(idx), temporal_patch)]


# --- time text ------------------------------------------------------------------------------------------


def _hms(t_s: float) -> str:
    t = int(t_s)
    return f"{t // 3600:02d}:{t % 3600 // 60:02d}:{t % 60:02d}"


def render_span(start_s: float, end_s: float, style: str = "seconds") -> str:
    """``<12.0 - 17.5 seconds>`` (or ``<00:00:12 - 00:00:17>`` with style ``hms``)."""
    if style == "hms":
        return f"<{_hms(start_s)} - {_hms(end_s)}>"
    _check_style(style)
    return f"<{start_s:.1f} - {end_s:.1f} seconds>"


def render_time(t_s: float, style: str = "seconds") -> str:
    """``<12.5 seconds>`` (or ``<00:00:12>``): one instant, as the processor writes it before a patch."""
    if style == "hms":
        return f"<{_hms(t_s)}>"
    _check_style(style)
    return f"<{t_s:.1f} seconds>"


# How prompts tell the model the answer format, in the same words the renderers write.
SPAN_HINT = "<start - end seconds>"
TIME_HINT = "<t seconds>"


# --- the answer pattern of a span (schema-constrained generation) ----------------------------------------

MAX_DIGITS = 6  # integer digits of an answered time: up to 999999.9 s


def _digits(n: int) -> str:
    return "[0-9]" if n == 1 else f"[0-9]{{{n}}}"


def _int_upto(n: int) -> str:
    """Alternatives matching the integers 0..n written without leading zeros."""
    s = str(n)
    alts = ["0"] + [f"[1-9]{_digits(k - 1)}" if k > 1 else "[1-9]" for k in range(1, len(s))]
    for i, c in enumerate(s):  # as long as n: the same first i digits, then a smaller one, then any
        low = 1 if i == 0 else 0
        if int(c) - 1 >= low:
            rest = len(s) - i - 1
            alts.append(s[:i] + f"[{low}-{int(c) - 1}]" + (_digits(rest) if rest else ""))
    return "|".join(alts + ([s] if n else []))


def time_pattern(max_s: float) -> str:
    """A time as the renderers write it (one decimal, no leading zero) from 0.0 up to ``max_s`` rounded
    down to a tenth, at most ``MAX_DIGITS`` integer digits."""
    if max_s < 0:
        raise ValueError(f"max_s {max_s} must be >= 0")
    whole, tenth = divmod(min(int(max_s * 10 + 1e-6), 10 ** (MAX_DIGITS + 1) - 1), 10)
    alts = [rf"({_int_upto(whole - 1)})\.[0-9]"] if whole else []
    return "(" + "|".join(alts + [rf"{whole}\.[0-{tenth}]"]) + ")"


def span_pattern(max_s: float) -> str:
    """``<a - b seconds>`` as render_span writes it (style "seconds"), both times in [0, max_s]: the answer
    stays short and on the clock of the frames it is asked over."""
    number = time_pattern(max_s)
    return rf"^<{number} - {number} seconds>$"


def answer_tokens() -> int:
    """New tokens enough for the longest answer ``span_pattern`` allows, quotes and end token included
    (every token is at least one character)."""
    return len(json.dumps(f"<{'9' * MAX_DIGITS}.9 - {'9' * MAX_DIGITS}.9 seconds>")) + 1


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"time style {style!r} is unknown; choose one of {', '.join(STYLES)}")


_NUM = r"(\d+(?:\.\d+)?)"
_CLOCK = r"(\d+):(\d{2}):(\d{2})"
_SPAN_SECONDS = re.compile(rf"<\s*{_NUM}\s*-\s*{_NUM}\s*seconds\s*>")
_SPAN_HMS = re.compile(rf"<\s*{_CLOCK}\s*-\s*{_CLOCK}\s*>")


def parse_spans(text: str) -> list[tuple[float, float]]:
    """Every ``<a - b seconds>`` or ``<HH:MM:SS - HH:MM:SS>`` in ``text``, in order of appearance."""
    found = [(m.start(), (float(m.group(1)), float(m.group(2)))) for m in _SPAN_SECONDS.finditer(text)]
    for m in _SPAN_HMS.finditer(text):
        h1, m1, s1, h2, m2, s2 = (int(g) for g in m.groups())
        found.append((m.start(), (float(h1 * 3600 + m1 * 60 + s1), float(h2 * 3600 + m2 * 60 + s2))))
    return [span for _, span in sorted(found)]


def parse_span(text: str) -> tuple[float, float] | None:
    """The first time span in ``text``; None when there is none."""
    spans = parse_spans(text)
    return spans[0] if spans else None


# --- moving text to a clip's clock ------------------------------------------------------------------------

_TIME_SECONDS = re.compile(rf"<\s*{_NUM}\s*seconds\s*>")
_TIME_HMS = re.compile(rf"<\s*{_CLOCK}\s*>")
# one pass over every time in a text: spans first, so an instant never matches half of a span
_ANY_TIME = re.compile("|".join(f"(?P<{name}>{rx.pattern})" for name, rx in
                                (("span_s", _SPAN_SECONDS), ("span_hms", _SPAN_HMS),
                                 ("time_s", _TIME_SECONDS), ("time_hms", _TIME_HMS))))
HMS_RESOLUTION_S = 1.0  # hms text keeps whole seconds only


class TimeOutsideClip(ValueError):
    """A time in a text that does not fall inside the clip it is moved to."""


def _clock_s(h: str, m: str, s: str) -> float:
    return float(int(h) * 3600 + int(m) * 60 + int(s))


def _times_of(match: re.Match) -> tuple[str, list[float]]:
    """(kind, values) of one match of ``_ANY_TIME``: kind is span_s, span_hms, time_s or time_hms."""
    kind = match.lastgroup
    groups = [g for g in match.groups()[match.re.groupindex[kind]:] if g is not None]
    if kind == "span_s":
        return kind, [float(groups[0]), float(groups[1])]
    if kind == "span_hms":
        return kind, [_clock_s(*groups[0:3]), _clock_s(*groups[3:6])]
    if kind == "time_s":
        return kind, [float(groups[0])]
    return kind, [_clock_s(*groups[0:3])]


def parse_times(text: str) -> list[float]:
    """Every time in ``text`` in seconds, in order of appearance: both ends of each span and each instant
    (``<12.5 seconds>``, ``<00:00:12>``)."""
    return [t for m in _ANY_TIME.finditer(text) for t in _times_of(m)[1]]


def rebase_times(text: str, offset_s: float, duration_s: float, tolerance_s: float = 0.1) -> str:
    """``text`` with every time moved to a clip's clock: ``offset_s`` (the clip's start on the source clock)
    subtracted, then rendered again by the same renderer in the same style (``<a - b seconds>``,
    ``<t seconds>``, ``<HH:MM:SS - HH:MM:SS>``, ``<HH:MM:SS>``). Times inside JSON strings move too.

    A moved time must lie in ``[0, duration_s]``; rendered text is rounded (0.1 s, or whole seconds for
    hms), so it may pass either end by ``tolerance_s`` (at least the hms resolution for hms text) and is
    then clamped to the clip. Beyond that, :class:`TimeOutsideClip` names the time and the clip.
    """
    if duration_s < 0:
        raise ValueError(f"clip duration {duration_s} s must be >= 0")

    def moved(match: re.Match) -> str:
        kind, values = _times_of(match)
        style = "hms" if kind.endswith("hms") else "seconds"
        tol = max(tolerance_s, HMS_RESOLUTION_S) if style == "hms" else tolerance_s
        out = []
        for t in values:
            r = t - offset_s
            if r < -tol or r > duration_s + tol:
                raise TimeOutsideClip(
                    f"time {t:g} s in {match.group(0)!r} is {r:.3f} s on the clip's clock, outside the clip "
                    f"[0, {duration_s:.3f}] s (clip starts at {offset_s:.3f} s on the source clock, tolerance "
                    f"{tol:g} s); the text does not belong to this clip")
            out.append(min(max(r, 0.0), duration_s))
        return render_span(*out, style) if kind.startswith("span") else render_time(out[0], style)

    return _ANY_TIME.sub(moved, text)
