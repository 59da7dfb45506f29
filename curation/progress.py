"""Progress of a long loop: a bar on a terminal; in a log or CI (stderr no terminal) a line per event, since
a bar's carriage returns would run a whole job, and every warning printed meanwhile, into one line."""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

LOG_EVERY_S = 30.0


def progress(iterable=None, *, total: int | None = None, desc: str, unit: str = "item", enabled: bool = True):
    """tqdm on a terminal, ``LineProgress`` elsewhere, nothing when not ``enabled``; both take ``update`` and
    ``close`` and iterate over ``iterable``."""
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if stderr_is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False)
    return LineProgress(iterable, total, desc, unit)


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


class LineProgress:
    """One line when the work starts, one every ``every_s`` seconds while it goes on, one at the end."""

    def __init__(self, iterable, total: int | None, desc: str, unit: str, every_s: float = LOG_EVERY_S):
        self.iterable = iterable
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        self.desc, self.unit, self.every_s = desc, unit, every_s
        self.n, self.closed = 0, False
        self.t0 = self.last = time.monotonic()
        if self.total:
            self._say(f"{self.total} {unit}s")

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._say(f"{self.n}/{self.total} {self.unit}s, {now - self.t0:.0f} s")

    def close(self) -> None:
        if not self.closed and self.total:
            self._say(f"{self.n}/{self.total} {self.unit}s in {time.monotonic() - self.t0:.1f} s")
        self.closed = True

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update()
        self.close()

    def _say(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=sys.stderr, flush=True)
