"""Where datasets and videos live: a local path, or any fsspec URL (``s3://bucket/ds``, ``gs://...``).

A local path stays a ``pathlib.Path``; a URL becomes a ``upath.UPath`` (the pathlib API over fsspec), so
code that joins, lists and reads paths works on both. Credentials and the endpoint come from the usual
environment variables (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...)
and from ``configure`` (the CLI's ``--storage-option key=value``), which is kept in the environment so that
worker processes (a process pool, Ray workers) open the same storage.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

OPTIONS_ENV = "DENSEVID_STORAGE_OPTIONS"  # JSON {key: value}; set by configure, read by every process
CACHE_ENV = "DENSEVID_VIDEO_CACHE_BYTES"
DEFAULT_CACHE_BYTES = 8 << 30
READ_BLOCK = 4 << 20  # range reads of this size when PyAV reads a remote video


class StorageError(OSError):
    """A bucket or object that cannot be reached; the message names the URL and the way out."""


def is_url(text: str | os.PathLike) -> bool:
    """True for a URL with a scheme other than ``file``; ``C:\\x`` and plain paths are local."""
    s = str(text)
    scheme, sep, _ = s.partition("://")
    return bool(sep) and len(scheme) > 1 and scheme.isidentifier() and scheme != "file"


def is_remote(path) -> bool:
    return is_url(str(path))


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, value); a value that reads as JSON (``true``, ``3``, ``{...}``) is that value."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--storage-option {text!r} must look like key=value, e.g. endpoint_url=http://127.0.0.1:9000")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def configure(options: dict) -> None:
    """Storage options for every URL this process and its workers open (merged over earlier ones)."""
    merged = {**json.loads(os.environ.get(OPTIONS_ENV) or "{}"), **options}
    os.environ[OPTIONS_ENV] = json.dumps(merged)


# what a worker on another node needs to open the same storage: the options and the usual credential variables
WORKER_ENV = (OPTIONS_ENV, CACHE_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
              "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE",
              "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT")


def worker_env() -> dict[str, str]:
    """The storage variables set in this process, for workers that do not inherit its environment (Ray)."""
    return {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}


# another process's writes must show in the next listing: no cached directory listings
_DEFAULTS = {"use_listings_cache": False}


def storage_options() -> dict:
    try:
        return {**_DEFAULTS, **json.loads(os.environ.get(OPTIONS_ENV) or "{}")}
    except ValueError as e:
        raise ValueError(f"{OPTIONS_ENV} is not JSON ({e}); unset it or pass --storage-option key=value") from e


def location(text: str | os.PathLike):
    """A local ``Path`` (``~`` expanded) or, for a URL, a ``UPath`` carrying the storage options."""
    if not is_url(str(text)):
        return Path(text).expanduser()
    if hasattr(text, "storage_options"):  # already a UPath: keep its options
        return text
    try:
        from upath import UPath
    except ImportError as e:
        raise ValueError(f"{text}: object storage needs pip install 'densevid[s3]' (fsspec, s3fs, universal_pathlib)") from e
    return UPath(str(text).rstrip("/"), **storage_options())


def filesystem(url: str):
    """(fsspec filesystem, path inside it) for a URL. fsspec keeps one instance per protocol and options
    and makes a new one in a forked child (an async client cannot cross a fork)."""
    import fsspec

    fs = fsspec.filesystem(str(url).split("://", 1)[0], **storage_options())
    return fs, fs._strip_protocol(str(url))


def explain(url: str, error: BaseException) -> str:
    """One line for an error of the storage: which URL, what went wrong, what to check."""
    text = f"{type(error).__name__}: {error}"
    low = text.lower()
    if "nosuchbucket" in low or "bucket does not exist" in low or "specified bucket does not" in low:
        return f"{url}: no such bucket; create it or fix the URL"
    if "could not connect" in low or "connect timeout" in low or "name or service" in low or "connection" in low:
        return (f"{url}: cannot reach the storage endpoint ({text}); check AWS_ENDPOINT_URL or "
                f"--storage-option endpoint_url=...")
    if "accessdenied" in low or "forbidden" in low or "invalidaccesskeyid" in low or "signaturedoesnotmatch" in low \
            or isinstance(error, PermissionError):
        return f"{url}: access denied ({text}); check the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    return f"{url}: {text}"


def check_reachable(path) -> str | None:
    """None when ``path``'s bucket (or folder) can be listed, else the one line that says why not."""
    if not is_remote(path):
        return None
    fs, inner = _impatient(str(path))
    bucket = inner.split("/", 1)[0]
    try:
        fs.ls(bucket, refresh=True)
        return None
    except FileNotFoundError:
        return f"{path}: no such bucket {bucket!r}; create it or fix the URL"
    except Exception as e:  # botocore and aiohttp raise many types
        return explain(str(path), e)


def require_reachable(path) -> None:
    """Raise ValueError with ``check_reachable``'s line when ``path``'s bucket cannot be listed."""
    problem = check_reachable(path)
    if problem:
        raise ValueError(problem)


def exists(place) -> bool:
    """A local path, an object, or a prefix with objects under it."""
    if not is_url(str(place)):
        return Path(place).expanduser().exists()
    fs, inner = filesystem(str(place))
    return fs.exists(inner)


def _impatient(url: str):
    """A filesystem that tries once: a check must not wait out a minute of retries on a wrong endpoint."""
    import fsspec

    protocol = url.split("://", 1)[0]
    options = storage_options()
    if protocol in ("s3", "s3a"):
        config = {**options.get("config_kwargs", {}), "retries": {"max_attempts": 1}, "connect_timeout": 5}
        options = {**options, "config_kwargs": config}
    fs = fsspec.filesystem(protocol, skip_instance_cache=True, **options)
    return fs, fs._strip_protocol(url)


def read_object(url) -> bytes:
    """An object's bytes in one GET (a missing one raises FileNotFoundError). s3fs would first ask for the
    size, to read a large object in parallel: a HEAD, and on a missing key a LIST as well."""
    fs, inner = filesystem(str(url))
    if "max_concurrency" in inspect.signature(getattr(fs, "_cat_file", fs.cat_file)).parameters:  # s3fs, lately
        return fs.cat_file(inner, max_concurrency=1)
    return fs.cat_file(inner)


def put_file(local: str | Path, dst) -> None:
    """Upload a finished local file as ``dst`` in one PUT (or one multipart upload): the object appears whole
    when the upload completes, and not at all when it fails."""
    fs, inner = filesystem(str(dst))
    fs.put_file(str(local), inner)


def create_exclusive(dst, data: bytes) -> bool:
    """Create ``dst`` only if it does not exist (S3 ``If-None-Match: *``); False when it exists."""
    fs, inner = filesystem(str(dst))
    try:
        with fs.open(inner, "xb") as f:
            f.write(data)
        return True
    except FileExistsError:
        return False


def copy_object(src, dst) -> None:
    """A server-side copy: ``dst`` appears whole, never half written."""
    fs, a = filesystem(str(src))
    fs.copy(a, fs._strip_protocol(str(dst)))


def open_input(uri: str | os.PathLike, immutable_size: int | None = None):
    """A readable binary file for PyAV and hashing: a local path as is, a URL as a file-like object that
    fetches byte ranges on demand (no whole-file copy). An object this process has listed or stated (size and
    ETag) is opened without the HEAD that would ask for them, and every read requires that ETag;
    ``immutable_size`` is the listed size of an object never rewritten under its name (a table file)."""
    if not is_url(uri):
        return str(uri)
    from fsspec.spec import AbstractBufferedFile

    fs, inner = filesystem(str(uri))
    known = {"size": int(immutable_size)} if immutable_size is not None else _known.get(str(uri))
    if not known or (immutable_size is None and "ETag" not in known):
        # without an ETag nothing would catch an object replaced since: s3fs states it (a HEAD) and reads
        # with If-Match
        return fs.open(inner, "rb", block_size=READ_BLOCK, cache_type="readahead")
    f = fs.open(inner, "rb", block_size=READ_BLOCK, cache_type="readahead", size=known["size"])
    if isinstance(f, AbstractBufferedFile):  # s3fs asks for the details (a HEAD) before its first range read
        f.details = {**known, "name": inner, "type": "file"}
    if "ETag" in known and hasattr(f, "read_kw"):  # s3fs adds If-Match only when it stated the object itself
        f.read_kw = {**f.read_kw, "IfMatch": known["ETag"]}
    return f


# size and ETag of the objects this process has listed or stated, so that opening or sizing one again needs
# no HEAD; every listing and stat refreshes them
_known: dict[str, dict] = {}


def remember(uri, info: dict) -> None:
    """Keep an object's size (and ETag) from a listing or a stat."""
    _known[str(uri)] = {"size": int(info.get("size") or 0),
                        **({"ETag": info["ETag"]} if info.get("ETag") else {})}


def size_of(uri) -> int:
    """A file's size; for an object, what this process last listed or stated of it, else one HEAD."""
    if not is_url(uri):
        return os.stat(uri).st_size
    if str(uri) not in _known:
        fs, inner = filesystem(str(uri))
        remember(uri, fs.info(inner))
    return _known[str(uri)]["size"]


def stamp_of(uri) -> tuple:
    """(size, version) of a file: a local mtime, an object's ETag (always one HEAD); changes when the
    content does."""
    if not is_url(uri):
        st = os.stat(uri)
        return st.st_size, st.st_mtime
    fs, inner = filesystem(str(uri))
    info = fs.info(inner)
    remember(uri, info)
    return int(info.get("size") or 0), str(info.get("ETag") or info.get("etag") or info.get("mtime") or "")


class VideoCache:
    """Local copies of remote videos for readers that need a path (decord), one per worker process: least
    recently used copies are removed once the copies pass ``limit`` bytes."""

    def __init__(self, folder: Path | None = None, limit: int | None = None):
        self.folder = folder or Path(tempfile.gettempdir()) / f"densevid-video-cache-{os.getpid()}"
        self.limit = limit if limit is not None else int(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_BYTES)
        self._entries: OrderedDict[str, tuple[Path, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.downloads = 0

    def path(self, uri: str) -> Path:
        from curation.store import stable_id

        with self._lock:
            if uri in self._entries:
                self._entries.move_to_end(uri)
                return self._entries[uri][0]
        local = self.folder / (stable_id(uri) + Path(str(uri)).suffix)
        self.folder.mkdir(parents=True, exist_ok=True)
        part = local.with_name(f".{local.name}.{threading.get_ident()}.part")
        fs, inner = filesystem(str(uri))
        try:
            fs.get_file(inner, str(part))
            os.replace(part, local)
        finally:
            part.unlink(missing_ok=True)
        with self._lock:
            self.downloads += 1
            self._entries[uri] = (local, local.stat().st_size)
            self._evict(keep=uri)
        return local

    def _evict(self, keep: str) -> None:
        while sum(n for _, n in self._entries.values()) > self.limit and len(self._entries) > 1:
            uri = next(u for u in self._entries if u != keep)
            path, _ = self._entries.pop(uri)
            path.unlink(missing_ok=True)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            shutil.rmtree(self.folder, ignore_errors=True)


_cache: VideoCache | None = None


def video_cache() -> VideoCache:
    """This process's cache (a forked worker gets a fresh one: the folder is named by process id)."""
    global _cache
    if _cache is None or not str(_cache.folder).endswith(f"-{os.getpid()}"):
        _cache = VideoCache()
    return _cache


def local_path(uri: str | os.PathLike) -> Path:
    """A path a path-only reader can open: the file itself, or this worker's cached copy of the object."""
    return video_cache().path(str(uri)) if is_url(uri) else Path(uri)
