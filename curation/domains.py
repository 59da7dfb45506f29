"""Domain labels per video: a manifest first, then rules, then the folder; anything else is unlabeled.

A manifest is CSV, JSONL or Parquet with a ``uri`` column and any of ``domain``, ``source``, ``license``.
A ``uri`` may be absolute, relative to the videos root, or a bare file name. The manifest itself may be on
object storage.
"""

from __future__ import annotations

import contextlib
import fnmatch
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from curation import storage
from curation.storage import is_url

UNLABELED = "unlabeled"
# Generated evaluation haystacks: kept in `videos` (samples point at them) but never split or captioned.
EVAL_ONLY_DOMAINS = frozenset({"needle"})
MANIFEST_COLUMNS = ("uri", "domain", "source", "license")


def load_manifest(path: str | Path) -> dict[str, dict]:
    """uri -> {domain, source, license} from a manifest at a path or a URL; DuckDB reads all three formats."""
    import duckdb

    path = str(path) if is_url(str(path)) else Path(path).expanduser()
    if not storage.exists(path):
        raise FileNotFoundError(f"manifest {path} not found")
    readers = {".csv": "read_csv_auto", ".jsonl": "read_json_auto", ".json": "read_json_auto",
               ".parquet": "read_parquet"}
    suffix = PurePosixPath(str(path)).suffix.lower()
    reader = readers.get(suffix)
    if reader is None:
        raise ValueError(f"manifest {path}: use a .csv, .jsonl or .parquet file")
    with _readable(path, suffix) as local:
        quoted = str(local).replace("'", "''")
        rel = duckdb.sql(f"SELECT * FROM {reader}('{quoted}')")
        cols = [c.lower() for c in rel.columns]
        if "uri" not in cols:
            raise ValueError(f"manifest {path} has columns {rel.columns}; it needs a 'uri' column "
                             f"(and any of domain, source, license)")
        rows = rel.fetchall()
    out = {}
    for row in rows:
        rec = dict(zip(cols, row))
        out[str(rec["uri"])] = {k: (str(rec[k]) if rec.get(k) is not None else None) for k in MANIFEST_COLUMNS[1:]}
    return out


@contextlib.contextmanager
def _readable(path, suffix: str):
    """A local file DuckDB can read: the path itself, or a copy of the object (DuckDB reads buckets only
    through its httpfs extension, which comes from DuckDB's servers, not a package registry)."""
    if not is_url(str(path)):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="densevid-manifest-") as d:
        local = Path(d) / f"manifest{suffix}"
        local.write_bytes(storage.read_object(path))
        yield local


def parse_rule(text: str) -> tuple[str, str]:
    """``'*kitchen*=egocentric'`` -> (glob, domain)."""
    if "=" not in text:
        raise ValueError(f"domain rule {text!r} must look like GLOB=DOMAIN, e.g. '*/ego4d/*=egocentric'")
    pattern, domain = text.rsplit("=", 1)
    return pattern.strip(), domain.strip()


@dataclass
class DomainResolver:
    root: Path
    manifest: dict[str, dict] = field(default_factory=dict)
    rules: list[tuple[str, str]] = field(default_factory=list)

    def lookup(self, path: Path) -> dict:
        """{domain, source, license} for one file."""
        rec = self._from_manifest(path)
        if rec and rec.get("domain"):
            return rec
        base = rec or {"source": None, "license": None}
        for pattern, domain in self.rules:
            if fnmatch.fnmatch(str(path), pattern) or fnmatch.fnmatch(self._rel(path), pattern):
                return {**base, "domain": domain}
        return {**base, "domain": self._from_folder(path)}

    def _rel(self, path: Path) -> str:
        if is_url(str(self.root)):  # object keys: no symlinks to resolve
            root = str(self.root).rstrip("/") + "/"
            return str(path)[len(root):] if str(path).startswith(root) else path.name
        try:
            return str(path.resolve().relative_to(self.root.resolve()))
        except ValueError:
            return path.name

    def _from_manifest(self, path: Path) -> dict | None:
        resolved = str(path) if is_url(str(path)) else str(path.resolve())
        for key in (resolved, str(path), self._rel(path), path.name):
            if key in self.manifest:
                return self.manifest[key]
        return None

    def _from_folder(self, path: Path) -> str:
        parts = Path(self._rel(path)).parts
        return parts[0] if len(parts) > 1 else UNLABELED
