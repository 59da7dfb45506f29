"""The dataset store: one folder of Parquet files per table, a DuckDB catalog of views over them.

Parquet is the source of truth. Every write is atomic (temporary file, then rename; on object storage one
final upload) and every row carries a deterministic key, so a stage can skip keys already written and a
killed job reruns cleanly. The root is a local folder or an fsspec URL (``s3://bucket/ds``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation import CODE_VERSION, storage
from curation.atomic import atomic_path, atomic_write_text

_ENTRY = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("summary", pa.string()), ("details", pa.string())])
_BOX = pa.struct(
    [("t_s", pa.float64()), ("x1", pa.int32()), ("y1", pa.int32()), ("x2", pa.int32()), ("y2", pa.int32())]
)

SCHEMAS: dict[str, pa.Schema] = {
    "videos": pa.schema(
        [
            ("video_id", pa.string()),
            ("uri", pa.string()),
            ("uris", pa.list_(pa.string())),
            ("domain", pa.string()),
            ("source", pa.string()),
            ("license", pa.string()),
            ("duration_s", pa.float64()),
            ("fps", pa.float64()),
            ("n_frames", pa.int64()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("codec", pa.string()),
            ("rotation", pa.int32()),
            ("variable_fps", pa.bool_()),
            ("bytes", pa.int64()),
            ("code_version", pa.string()),
        ]
    ),
    "segments": pa.schema(
        [
            ("segment_id", pa.string()),
            ("video_id", pa.string()),
            ("idx", pa.int32()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("start_frame", pa.int64()),
            ("end_frame", pa.int64()),
            ("detector", pa.string()),
            ("detector_params", pa.string()),
            ("cut_score", pa.float64()),
            ("motion", pa.float64()),
            ("luma", pa.float64()),
            ("frozen_frac", pa.float64()),
            ("black_frac", pa.float64()),
            ("signature", pa.binary()),  # near-duplicate signature (curation.quality.segment_signature)
            ("code_version", pa.string()),
        ]
    ),
    "quality_signals": pa.schema(
        [
            ("segment_id", pa.string()),
            ("video_id", pa.string()),
            ("duration_s", pa.float64()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("motion", pa.float64()),
            ("frozen_frac", pa.float64()),
            ("black_frac", pa.float64()),
            ("flat_frac", pa.float64()),
            ("sharpness", pa.float64()),
            ("border_top", pa.float64()),
            ("border_bottom", pa.float64()),
            ("border_left", pa.float64()),
            ("border_right", pa.float64()),
            ("quality_keep", pa.bool_()),
            ("quality_reason", pa.string()),
            ("thresholds", pa.string()),
            ("code_version", pa.string()),
        ]
    ),
    "duplicates": pa.schema(
        [
            ("segment_id", pa.string()),
            ("video_id", pa.string()),
            ("dup_group", pa.string()),
            ("matched", pa.string()),
            ("similarity", pa.float64()),
            ("other_groups", pa.list_(pa.string())),  # groups it also matched: they stay apart but share its split
            ("code_version", pa.string()),
        ]
    ),
    # each video's train/val/test split, assigned once (curation/splits.py); near-duplicate families share one
    "splits": pa.schema(
        [
            ("video_id", pa.string()),
            ("split", pa.string()),
            ("family", pa.string()),  # the family's key when assigned: its smallest video id
            ("how", pa.string()),  # hash (a new family), family (joined its family's split), samples (kept theirs)
            ("code_version", pa.string()),
        ]
    ),
    "captions": pa.schema(
        [
            ("segment_id", pa.string()),
            ("model", pa.string()),
            ("prompt_version", pa.string()),
            ("video_id", pa.string()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("summary", pa.string()),
            ("details", pa.string()),
            ("raw_output", pa.string()),
            ("frames_used", pa.list_(pa.int64())),
            ("model_revision", pa.string()),
            ("decoding", pa.string()),
            ("code_version", pa.string()),
        ]
    ),
    "dense_captions": pa.schema(
        [
            ("video_id", pa.string()),
            ("model", pa.string()),
            ("prompt_version", pa.string()),
            ("entries", pa.list_(_ENTRY)),
            ("rendered", pa.string()),
            ("renderer", pa.string()),
            ("storyline", pa.string()),
            ("code_version", pa.string()),
        ]
    ),
    "grounding": pa.schema(
        [
            ("record_id", pa.string()),
            ("video_id", pa.string()),
            ("segment_id", pa.string()),
            ("phrase", pa.string()),
            ("action", pa.string()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("boxes", pa.list_(_BOX)),
            ("source", pa.string()),
            ("model", pa.string()),
            ("code_version", pa.string()),
        ]
    ),
    # the gate's verdict on a model grounding record, per verifying model (synth/verify.py)
    "verdicts": pa.schema(
        [
            ("record_id", pa.string()),
            ("model", pa.string()),
            ("video_id", pa.string()),
            ("segment_id", pa.string()),
            ("passed", pa.bool_()),
            ("form_ok", pa.bool_()),
            ("caption_ok", pa.bool_()),
            ("cycle_ok", pa.bool_()),
            ("unique_ok", pa.bool_()),  # null in verdicts made before the uniqueness check
            ("reasons", pa.list_(pa.string())),
            ("span_s", pa.float64()),
            ("max_jump_per_s", pa.float64()),
            ("missing_words", pa.list_(pa.string())),
            ("cycle_answer", pa.string()),
            ("cycle_tiou", pa.float64()),
            ("unique_answer", pa.string()),
            ("unique_overlap", pa.float64()),
            ("thresholds", pa.string()),
            ("model_revision", pa.string()),
            ("decoding", pa.string()),
            ("code_version", pa.string()),
        ]
    ),
    "samples": pa.schema(
        [
            ("sample_id", pa.string()),
            ("task", pa.string()),
            ("video_id", pa.string()),
            ("uri", pa.string()),
            ("clip_start_s", pa.float64()),
            ("clip_end_s", pa.float64()),
            ("clip_start_frame", pa.int64()),
            ("clip_end_frame", pa.int64()),
            ("video_n_frames", pa.int64()),
            ("frame_indices", pa.list_(pa.int64())),
            ("fps", pa.float64()),
            ("messages", pa.string()),
            ("domain", pa.string()),
            ("split", pa.string()),
            ("n_text_tokens", pa.int64()),
            ("n_visual_tokens", pa.int64()),
            ("origin", pa.string()),  # where the answer comes from: ground_truth or model
            ("model", pa.string()),  # the model that made the answer ("" for ground truth)
            ("passed_gate", pa.bool_()),  # a model grounding record's verdict (null where no gate applies)
            ("code_version", pa.string()),
        ]
    ),
    # one row per finished round of the loop: teacher labels a pool, the gate filters, a student trains
    "rounds": pa.schema(
        [
            ("round", pa.int64()),
            ("teacher", pa.string()),
            ("teacher_revision", pa.string()),
            ("student", pa.string()),
            ("student_revision", pa.string()),
            ("student_init", pa.string()),  # the weights the student started from
            ("mixture", pa.string()),
            ("pool", pa.string()),  # the SQL filter over videos that chose the pool
            ("pool_videos", pa.int64()),
            ("label_failures", pa.int64()),  # items of the labelling stages that failed (`failures` rows)
            ("records", pa.int64()),  # the teacher's grounding records over the pool
            ("gate", pa.string()),  # on or off (every model record used)
            ("gate_pass_rate", pa.float64()),
            ("gate_check_rates", pa.string()),  # JSON: pass rate per check
            ("gate_truth", pa.string()),  # JSON: the gate against hidden truth (null without truth)
            ("mixture_samples", pa.int64()),
            ("model_samples", pa.int64()),
            ("truth_samples", pa.int64()),
            ("grounding_miou", pa.float64()),
            ("grounding_r05", pa.float64()),
            ("dense_f1_05", pa.float64()),
            ("needle_accuracy", pa.float64()),
            ("eval", pa.string()),  # JSON: every score of the held-out evaluation
            ("label_s", pa.float64()),
            ("mix_s", pa.float64()),
            ("train_s", pa.float64()),
            ("eval_s", pa.float64()),
            ("finished_at", pa.float64()),
            ("config", pa.string()),
            ("code_version", pa.string()),
        ]
    ),
    # ``variant`` as in finished (the model, for model stages): one model's failure is not another's
    "failures": pa.schema(
        [
            ("stage", pa.string()),
            ("variant", pa.string()),
            ("item_id", pa.string()),
            ("error_type", pa.string()),
            ("message", pa.string()),
            ("raw", pa.string()),
            ("created_at", pa.float64()),
        ]
    ),
    # failures whose item a later run of the same stage completed; the failures rows stay as history
    "resolved": pa.schema([("stage", pa.string()), ("variant", pa.string()), ("item_id", pa.string()),
                           ("resolved_at", pa.float64())]),
    # items a stage completed without writing a row, so a rerun skips them (data tables hold data only)
    "finished": pa.schema(
        [
            ("stage", pa.string()),
            ("variant", pa.string()),
            ("item_id", pa.string()),
            ("finished_at", pa.float64()),
            ("code_version", pa.string()),
        ]
    ),
}

KEYS: dict[str, tuple[str, ...]] = {
    "videos": ("video_id",),
    "segments": ("segment_id",),
    "quality_signals": ("segment_id",),
    "duplicates": ("segment_id",),
    "splits": ("video_id",),
    "captions": ("segment_id", "model", "prompt_version"),
    "dense_captions": ("video_id", "model"),
    "grounding": ("record_id",),
    "verdicts": ("record_id", "model"),
    "samples": ("sample_id",),
    "rounds": ("round",),
    "failures": ("stage", "variant", "item_id"),
    "resolved": ("stage", "variant", "item_id"),
    "finished": ("stage", "variant", "item_id"),
}

TABLES = tuple(SCHEMAS)

# Views over the tables. `quality`: every segment with its signals (null where `quality` has not judged it:
# it passes), its near-duplicate group and the verdict: keep when it passes and is its group's pick (among the
# members that pass: the longest, then most pixels, then first id), so dedup works without `quality` too.
VIEWS = {
    "quality": """
WITH base AS (
  SELECT s.segment_id, s.video_id, coalesce(q.duration_s, s.end_s - s.start_s) AS duration_s,
    coalesce(q.width, v.width) AS width, coalesce(q.height, v.height) AS height,
    q.* EXCLUDE (segment_id, video_id, duration_s, width, height), coalesce(q.quality_keep, TRUE) AS passes,
    d.dup_group, d.similarity
  FROM segments s LEFT JOIN videos v ON v.video_id = s.video_id
    LEFT JOIN quality_signals q ON q.segment_id = s.segment_id
    LEFT JOIN duplicates d ON d.segment_id = s.segment_id),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY dup_group
    ORDER BY passes DESC, duration_s DESC, width * height DESC, segment_id) AS dup_rank
  FROM base)
SELECT * EXCLUDE (dup_rank, passes, quality_keep, quality_reason),
  passes AND (dup_group IS NULL OR dup_rank = 1) AS keep,
  concat_ws(',', nullif(quality_reason, ''),
            CASE WHEN dup_group IS NOT NULL AND dup_rank > 1 THEN 'duplicate' END) AS reason
FROM ranked""",
}
# failures still to fix: those whose item no later run of their stage and variant completed (rows written
# before failures had a variant have none: '')
VIEWS["open_failures"] = """
SELECT f.* FROM failures f
WHERE NOT EXISTS (SELECT 1 FROM resolved r WHERE r.stage = f.stage AND coalesce(r.variant, '') = coalesce(f.variant, '')
                  AND r.item_id = f.item_id)"""


def stable_id(*parts: object, n: int = 16) -> str:
    """A deterministic id from its parts, so reruns produce the same keys."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:n]


def atomic_write_parquet(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


EMPTY_PART = "part-empty.parquet"
RUNS_DIR = "stage_runs"  # the last run of each stage and variant, one JSON file each (not a table)
COMPACTION_JOURNAL = "_compaction.json"
COMPACTION_EPOCH = "_compaction.epoch"  # rewritten by every finished swap, so a reader can tell one ran


COMPACTION_LOCK = ".compacting"
STALE_LOCK_S = 3600.0


@contextlib.contextmanager
def _compaction_lock(d: Path):
    """One compactor per table at a time, across processes and nodes (an exclusive create on the shared
    folder, or a conditional put on a bucket); a lock left by a killed process is taken over after an hour."""
    lock = d / COMPACTION_LOCK
    if storage.is_url(str(lock)):
        with _object_lock(lock) as locked:
            yield locked
        return
    try:
        if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_S:
            lock.unlink(missing_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        yield False
        return
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield True
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def _object_lock(lock):
    fs, inner = storage.filesystem(str(lock))
    with contextlib.suppress(FileNotFoundError):
        modified = fs.info(inner).get("LastModified")
        if modified is not None and time.time() - modified.timestamp() > STALE_LOCK_S:
            fs.rm_file(inner)
    if not storage.create_exclusive(lock, str(os.getpid()).encode()):
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(inner)


def _names(d) -> list[str]:
    """File names in a folder or under a bucket prefix (one LIST request)."""
    if not storage.is_url(str(d)):
        return [p.name for p in d.iterdir()] if d.is_dir() else []
    return list(_listing(d))


def _listing(d) -> dict[str, int]:
    """Name -> size of the objects under a bucket prefix, from one LIST request."""
    fs, inner = storage.filesystem(str(d))
    try:
        return {e["name"].rsplit("/", 1)[-1]: int(e.get("size") or 0) for e in fs.ls(inner, detail=True)}
    except FileNotFoundError:
        return {}


# folders beside the tables that stay small (manifests, run notes, haystacks, round checkpoints): a dataset
# holding only these is listed whole in one go; anything else (exported clips, a report site) may hold
# thousands of objects, and then each table folder is listed on its own
SMALL_FOLDERS = frozenset({"mixtures", "stage_runs", "needle_videos", "loop"})


def _tree_listing(root) -> dict[str, dict[str, int]]:
    """Folder (relative to ``root``) -> {name: size} of the objects of the tables under a bucket prefix: the
    top level, then one recursive listing (one LIST per 1,000 objects) instead of one per table folder, unless
    a folder that may be large sits beside the tables."""
    fs, inner = storage.filesystem(str(root))
    try:
        top = [e for e in fs.ls(inner, detail=True) if e.get("type") == "directory"]
    except FileNotFoundError:
        return {}
    folders = {e["name"].rstrip("/").rsplit("/", 1)[-1] for e in top}
    if not folders - set(SCHEMAS) <= SMALL_FOLDERS:
        return {table: _listing(root / table) for table in sorted(folders & set(SCHEMAS))}
    try:
        found = fs.find(inner, detail=True)
    except FileNotFoundError:
        return {}
    out: dict[str, dict[str, int]] = {}
    for path, info in found.items():
        folder, _, name = path[len(inner) + 1:].rpartition("/")
        out.setdefault(folder, {})[name] = int(info.get("size") or 0)
    return out


def _parquet_files(d) -> list:
    if not storage.is_url(str(d)):
        return list(d.glob("*.parquet"))
    return [d / n for n in _names(d) if n.endswith(".parquet")]


SMALL_OBJECT = 4 << 20  # bytes an object may have to be read whole in one GET


def read_parquet(path, size: int | None = None, **kwargs) -> pa.Table:
    """One Parquet file, local or on object storage. An object listed with at most SMALL_OBJECT bytes is read
    whole in one GET, which costs less than the HEADs and range reads of reading its columns in place."""
    if not storage.is_url(str(path)):
        return pq.read_table(path, **kwargs)
    if size is not None and size <= SMALL_OBJECT:
        return pq.read_table(pa.BufferReader(storage.read_object(path)), **kwargs)
    fs, inner = storage.filesystem(str(path))
    return pq.read_table(inner, filesystem=fs, **kwargs)


def _table_keys(t: pa.Table, cols: list[str]) -> set[tuple]:
    return set(zip(*(t.column(c).to_pylist() for c in cols))) if t.num_rows else set()


def _read_schema(path) -> pa.Schema:
    if not storage.is_url(str(path)):
        return pq.read_schema(path)
    fs, inner = storage.filesystem(str(path))
    with fs.open(inner, "rb") as f:
        return pq.read_schema(f)


def _replace(src, dst) -> None:
    """``os.replace`` or, on object storage, a server-side copy then the source's removal (the copy appears
    whole; a copy interrupted before the removal is done again by whoever finishes the swap)."""
    if not storage.is_url(str(src)):
        os.replace(src, dst)
        return
    storage.copy_object(src, dst)
    _unlink(src)


def _unlink(path) -> None:
    if not storage.is_url(str(path)):
        Path(path).unlink(missing_ok=True)
        return
    fs, inner = storage.filesystem(str(path))
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(inner)


def _exists(path) -> bool:
    if not storage.is_url(str(path)):
        return Path(path).exists()
    fs, inner = storage.filesystem(str(path))
    return fs.exists(inner)


def _write_empty(schema: pa.Schema, path: Path) -> None:
    """A schema-only file with no row groups, so an empty table still has typed columns in DuckDB."""
    with atomic_path(path) as tmp:
        pq.ParquetWriter(tmp, schema).close()


def _read_text(path) -> str:
    """A small file's text; on object storage one GET."""
    if storage.is_url(str(path)):
        return storage.read_object(path).decode()
    return Path(path).read_text()


def _epoch(d: Path) -> str:
    try:
        return _read_text(d / COMPACTION_EPOCH)
    except FileNotFoundError:
        return ""


def _new_epoch(d: Path) -> None:
    atomic_write_text(d / COMPACTION_EPOCH, f"{time.time_ns()}-{os.getpid()}")


class Dataset:
    """A dataset directory: ``<root>/<table>/*.parquet`` plus ``<root>/catalog.duckdb``. ``root`` may be an
    fsspec URL: the same layout under a bucket prefix, with an in-memory catalog (see ``connect``)."""

    def __init__(self, root: str | Path):
        self.remote = storage.is_url(str(root))
        if self.remote:
            self.root = storage.location(root)  # object storage has no folders to create
        else:
            self.root = Path(root).expanduser().resolve()
            self.root.mkdir(parents=True, exist_ok=True)
        self._key_cache: dict[tuple, set[tuple]] = {}
        self._sizes: dict[str, int] = {}  # object sizes from the last listing of each table

    @staticmethod
    def exists(root, table: str = "videos") -> bool:
        """Whether ``root`` holds ``table``, without creating anything (a typo must not become a dataset)."""
        place = storage.location(root)
        if storage.is_url(str(place)):
            return bool(_names(place / table))
        return (Path(place).expanduser() / table).is_dir()

    def table_dir(self, table: str) -> Path:
        if table not in SCHEMAS:
            raise KeyError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
        d = self.root / table
        if not self.remote:
            d.mkdir(exist_ok=True)
        return d

    def files(self, table: str) -> list[Path]:
        """The table's data files, never old and compacted ones together: a listing that overlapped a swap
        (its journal there, or the epoch changed meanwhile) is taken again once the swap is finished."""
        d = self.table_dir(table)
        if self.remote:
            return self._remote_files(d)
        while True:
            if _exists(d / COMPACTION_JOURNAL):
                self._finish_compaction(d)
            epoch = _epoch(d)
            listed = sorted(p for p in _parquet_files(d) if not p.name.startswith(".") and p.name != EMPTY_PART)
            if not _exists(d / COMPACTION_JOURNAL) and _epoch(d) == epoch:
                return listed

    def _remote_files(self, d) -> list:
        """``files`` in three requests (epoch, one LIST that also shows a journal and gives the sizes, epoch
        again)."""
        while True:
            epoch = _epoch(d)
            listed = _listing(d)
            if COMPACTION_JOURNAL in listed:
                self._finish_compaction(d)
                continue
            if _epoch(d) == epoch:
                return self._visible(d, listed)

    def _visible(self, d, listed: dict[str, int]) -> list:
        """The data files among a table folder's listed objects (not hidden, pending or the placeholder)."""
        files = sorted(d / n for n in listed if n.endswith(".parquet") and not n.startswith(".") and n != EMPTY_PART)
        self._sizes.update((str(f), listed[f.name]) for f in files)
        return files

    def all_files(self) -> dict[str, list]:
        """``files`` of every table. On a bucket from one listing of the dataset (see ``_tree_listing``), taken
        between each table's epoch read before and after it (the rule of ``files``): 30 requests instead of 3
        or 4 per table."""
        if not self.remote:
            return {t: self.files(t) for t in TABLES}
        dirs = {t: self.table_dir(t) for t in TABLES}
        while True:
            epochs = {t: _epoch(d) for t, d in dirs.items()}
            listed = _tree_listing(self.root)
            swapping = [t for t in TABLES if COMPACTION_JOURNAL in listed.get(t, {})]
            for t in swapping:
                self._finish_compaction(dirs[t])
            if not swapping and all(_epoch(d) == epochs[t] for t, d in dirs.items()):
                return {t: self._visible(d, listed.get(t, {})) for t, d in dirs.items()}

    def size_of(self, f) -> int | None:
        """A data file's size from the last listing of its table (None when not listed)."""
        return self._sizes.get(str(f))

    def _read_file(self, f, **kwargs) -> pa.Table:
        return read_parquet(f, size=self._sizes.get(str(f)), **kwargs)

    def compact(self, table: str) -> tuple[int, int]:
        """Rewrite a table's files as one file; returns (files before, files after).

        The merged data is written to a hidden file first, then a journal names it and the files it
        replaces; from then on any reader (or a rerun) can finish the swap, so a kill at any point, or a
        reader racing the compactor, never leaves both copies visible nor neither.
        """
        d = self.table_dir(table)
        old = [f for f in self.files(table) if f.name != EMPTY_PART]
        if len(old) <= 1:
            return len(old), len(old)
        with _compaction_lock(d) as locked:
            if not locked:  # another process (a shard, a worker) compacts this table right now
                return len(old), len(old)
            return self._compact_locked(table, d)

    def _compact_locked(self, table: str, d: Path) -> tuple[int, int]:
        old = [f for f in self.files(table) if f.name != EMPTY_PART]
        if len(old) <= 1:
            return len(old), len(old)
        new = d / ("compact-" + stable_id(*(f.name for f in old)) + ".parquet")
        pending = d / f".{new.name}.pending"
        # exactly the files the swap removes: one that another shard writes meanwhile stays beside it
        atomic_write_parquet(pa.concat_tables([self._read_file(f, schema=SCHEMAS[table]) for f in old]), pending)
        journal = {"new": new.name, "pending": pending.name, "old": [f.name for f in old]}
        atomic_write_text(d / COMPACTION_JOURNAL, json.dumps(journal))
        # the epoch changes when the swap starts as well as when it ends: a listing that overlapped any of it
        # reads two epochs, even where a LIST is no snapshot and missed the journal
        _new_epoch(d)
        self._finish_compaction(d)
        return len(old), 1

    @staticmethod
    def _finish_compaction(d: Path) -> None:
        """Idempotent, safe to run from several processes at once."""
        journal_path = d / COMPACTION_JOURNAL
        try:
            journal = json.loads(_read_text(journal_path))
        except FileNotFoundError:
            return  # someone else finished it
        try:
            _replace(d / journal["pending"], d / journal["new"])
        except FileNotFoundError:
            pass  # already moved by another process
        if _exists(d / journal["new"]):
            for name in journal["old"]:
                if name != journal["new"]:
                    _unlink(d / name)
        _new_epoch(d)  # before the journal goes
        _unlink(journal_path)

    def write(self, table: str, rows: list[dict]) -> Path | None:
        """Write rows as one new Parquet file, atomically. Rows whose key is already stored are dropped."""
        if not rows:
            return None
        done = self.keys(table)
        key_cols = KEYS[table]
        fresh, seen = [], set()
        for r in rows:
            k = tuple(r[c] for c in key_cols)
            if k in done or k in seen:
                continue
            seen.add(k)
            fresh.append(r)
        if not fresh:
            return None
        schema = SCHEMAS[table]
        arrow = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in fresh], schema=schema)
        name = "part-" + stable_id(*sorted("|".join(map(str, k)) for k in seen)) + ".parquet"
        path = self.table_dir(table) / name
        atomic_write_parquet(arrow, path)
        self._key_cache[self._stamp(path)] = _table_keys(arrow, list(key_cols))  # never read back
        return path

    def read(self, table: str, columns: list[str] | None = None) -> pa.Table:
        schema = SCHEMAS[table]
        while True:
            files = self.files(table)
            if not files:
                return schema.empty_table() if columns is None else schema.empty_table().select(columns)
            try:
                return pa.concat_tables([self._read_file(f, columns=columns, schema=schema) for f in files])
            except FileNotFoundError:  # compacted away since listed: the merged file holds the same rows
                continue

    def rows(self, table: str, columns: list[str] | None = None) -> list[dict]:
        return self.read(table, columns).to_pylist()

    def keys(self, table: str) -> set[tuple]:
        """Keys stored in a table; cached per file, so a long run reads each file's keys once."""
        while True:
            try:
                return self._keys_once(table)
            except FileNotFoundError:  # compacted away since listed
                continue

    def _keys_once(self, table: str) -> set[tuple]:
        cols = list(KEYS[table])
        out: set[tuple] = set()
        for f in self.files(table):
            stamp = self._stamp(f)
            if stamp not in self._key_cache:
                # with today's schema: a key column added since reads as null in older files ('' for a variant)
                keys = self._read_file(f, columns=cols, schema=SCHEMAS[table])
                if "variant" in cols:
                    keys = keys.set_column(cols.index("variant"), "variant", pc.fill_null(keys["variant"], ""))
                self._key_cache[stamp] = _table_keys(keys, cols)
            out |= self._key_cache[stamp]
        return out

    def _stamp(self, f) -> tuple:
        # an object is never rewritten with other keys (its name is a hash of them): the name is enough
        return (str(f),) if self.remote else (str(f), f.stat().st_mtime_ns)

    def fail(self, stage: str, item_id: str, error: BaseException | str, raw: str = "", variant: str = "") -> dict:
        """Record a failure row; returns it so callers can count and log it."""
        error_type = type(error).__name__ if isinstance(error, BaseException) else "Invalid"
        row = dict(stage=stage, variant=variant, item_id=item_id, error_type=error_type, message=str(error),
                   raw=raw[:20000], created_at=time.time())
        # A retried item that fails again replaces nothing: failures keep the first message per key.
        self.write("failures", [row])
        return row

    def open_failure_ids(self, stage: str, variant: str = "") -> set[str]:
        """Items of ``stage`` and ``variant`` with a failure that no later run of theirs closed."""
        def ids(table: str) -> set[str]:
            return {k[2] for k in self.keys(table) if k[:2] == (stage, variant)}

        return ids("failures") - ids("resolved")

    def resolve(self, stage: str, item_ids, variant: str = "") -> int:
        """Close the open failures of ``stage`` and ``variant`` among ``item_ids`` (items it has completed since);
        returns how many it closed."""
        fixed = sorted(self.open_failure_ids(stage, variant) & set(item_ids))
        now = time.time()
        self.write("resolved", [dict(stage=stage, variant=variant, item_id=i, resolved_at=now) for i in fixed])
        return len(fixed)

    def open_failure_counts(self) -> dict[str, int]:
        """Open failures per stage."""
        rows = self.sql("SELECT stage, count(*) AS n FROM open_failures GROUP BY stage ORDER BY stage").to_pylist()
        return {r["stage"]: r["n"] for r in rows}

    def finish(self, stage: str, variant: str, item_ids: list[str]) -> None:
        """Record items that a stage completed with nothing to write."""
        now = time.time()
        rows = [dict(stage=stage, variant=variant, item_id=i, finished_at=now, code_version=CODE_VERSION) for i in item_ids]
        self.write("finished", rows)

    def finished(self, stage: str, variant: str) -> set[str]:
        """Items of this stage and variant that completed with nothing to write."""
        return {k[2] for k in self.keys("finished") if k[0] == stage and k[1] == variant}

    def record_run(self, stage: str, variant: str, run: dict) -> None:
        """Keep the last run of a stage and variant (when, how long, items, counts) in
        ``<root>/stage_runs/``, so a run that found nothing to do is known to have happened."""
        d = self.root / RUNS_DIR
        if not self.remote:
            d.mkdir(exist_ok=True)
        record = dict(stage=stage, variant=variant, **run, code_version=CODE_VERSION)
        atomic_write_text(d / f"{stage}-{stable_id(variant, n=12)}.json", json.dumps(record, default=str))

    def last_runs(self) -> list[dict]:
        """The last recorded run of each stage and variant, by stage and variant."""
        d = self.root / RUNS_DIR
        runs = []
        for p in sorted(d / n for n in _names(d) if n.endswith(".json") and not n.startswith(".")):
            try:
                runs.append(json.loads(p.read_text()))
            except (OSError, ValueError):  # unreadable: that run is not known
                continue
        return sorted(runs, key=lambda r: (r.get("stage", ""), r.get("variant", "")))

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.duckdb"

    def refresh_catalog(self) -> Path:
        """(Re)build catalog.duckdb: one view per table over its Parquet files. On object storage there is
        no file to build: each connection builds its catalog (``connect``)."""
        import duckdb

        if self.remote:
            return self.catalog_path

        for table, schema in SCHEMAS.items():
            # kept beside the data: every view has every column of today's schema, also over files
            # written before a column was added
            placeholder = self.table_dir(table) / EMPTY_PART
            if not _exists(placeholder) or not _read_schema(placeholder).equals(schema):
                _write_empty(schema, placeholder)
        with atomic_path(self.catalog_path) as tmp:
            self._write_catalog(duckdb.connect(str(tmp)))
        return self.catalog_path

    def _write_catalog(self, con) -> None:
        try:
            # explicit file lists: no glob, so '[', '*' or '?' in the dataset path mean nothing special
            for table in SCHEMAS:
                paths = [*self.files(table), self.table_dir(table) / EMPTY_PART]
                files = ", ".join("'" + str(f).replace("'", "''") + "'" for f in paths)
                con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{files}], union_by_name=true)")
            for view, query in VIEWS.items():
                con.execute(f"CREATE VIEW {view} AS {query}")
            con.execute("CREATE TABLE _catalog AS SELECT ? AS root, ? AS files, ? AS built_at",
                        [str(self.root), self._signature(), time.time()])
        finally:
            con.close()

    def connect(self, read_only: bool = True):
        """Open the catalog; rebuilt first when missing or when the dataset moved. On object storage the
        catalog is an in-memory DuckDB over the bucket's Parquet (``curation.remote_catalog``)."""
        import duckdb

        if self.remote:
            from curation.remote_catalog import connect_remote

            return connect_remote(self)
        if not self.catalog_path.exists() or self._catalog_state() != (str(self.root), self._signature()):
            self.refresh_catalog()
        return duckdb.connect(str(self.catalog_path), read_only=read_only)

    def _signature(self) -> str:
        """The tables and the Parquet files their views should cover (finishing any interrupted compaction
        first); a table added in a later version changes it, so an older catalog is rebuilt."""
        tables = "\n".join(f"{t}/" + ",".join(f.name for f in self.files(t)) for t in SCHEMAS)
        return tables + "\nviews/" + stable_id(*VIEWS.values())

    def _catalog_state(self) -> tuple[str, str] | None:
        import duckdb

        try:
            con = duckdb.connect(str(self.catalog_path), read_only=True)
            try:
                return tuple(con.execute("SELECT root, files FROM _catalog").fetchone())
            finally:
                con.close()
        except Exception:
            return None

    def sql(self, query: str, params: list | None = None):
        """Run a read-only query over the catalog; returns a pyarrow Table."""
        con = self.connect(read_only=True)
        try:
            return to_arrow(con.sql(query, params=params or None))
        finally:
            con.close()

    def counts(self) -> dict[str, int]:
        return {t: self.read(t, list(KEYS[t][:1])).num_rows for t in TABLES}


def to_arrow(result) -> pa.Table:
    """DuckDB renamed its Arrow fetch across releases; accept both spellings."""
    fetch = getattr(result, "to_arrow_table", None) or getattr(result, "fetch_arrow_table")
    out = fetch()
    return out.read_all() if hasattr(out, "read_all") else out
