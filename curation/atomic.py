"""Writing a file whole or not at all: into a hidden temporary file beside it, then a rename.

A reader (or a rerun after a kill) sees the old file or the new one, never half of one. The temporary
name carries the process and thread, so concurrent writers of the same file never share one. On object
storage (a URL path) there is no rename: the file is written to a local temporary file and committed by
one final upload, which makes the object appear whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from curation import storage


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to; renamed onto ``path`` when the block ends without
    an error, removed when it raises."""
    if storage.is_url(str(path)):
        with _uploaded(path) as tmp:
            yield tmp
        return
    path = Path(path)
    tmp = temp_path(path)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _uploaded(path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="densevid-put-") as d:
        tmp = Path(d) / Path(str(path)).name
        yield tmp
        storage.put_file(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path
