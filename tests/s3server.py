"""An S3-compatible server on 127.0.0.1 (moto's ThreadedMotoServer) for the object-storage tests."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import uuid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

VOLATILE = {"created_at", "finished_at", "resolved_at"}  # when a run happened, not what it wrote
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint():
    """The server's URL; the AWS variables point every client (and subprocess) at it while the session runs."""
    from moto.server import ThreadedMotoServer

    quiet_server_log()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in [*ENV, "AWS_ENDPOINT_URL", "DENSEVID_STORAGE_OPTIONS"]}
    os.environ.update(ENV, AWS_ENDPOINT_URL=url)
    os.environ.pop("DENSEVID_STORAGE_OPTIONS", None)
    yield url
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture
def bucket(s3_endpoint) -> str:
    """A fresh bucket: ``s3://NAME``."""
    from curation import storage

    name = "densevid-" + uuid.uuid4().hex[:10]
    fs, _ = storage.filesystem(f"s3://{name}")
    fs.mkdir(name)
    return f"s3://{name}"


def upload(folder: Path, url: str) -> str:
    """Every file under ``folder`` to ``url``/..., keeping the layout."""
    from curation import storage

    fs, inner = storage.filesystem(url)
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            fs.put_file(str(p), f"{inner}/{p.relative_to(folder).as_posix()}")
    return url


def comparable_tables(ds, *roots: tuple[str, str]) -> dict[str, list[str]]:
    """Every table's rows as sorted reprs, each ``(root, name)`` of ``roots`` written as its name and the
    VOLATILE columns left out: what a run on a bucket and the same run on disk must share."""
    from curation.store import TABLES

    def plain(v):
        if isinstance(v, str):
            for root, name in roots:
                v = v.replace(str(root), name)
        elif isinstance(v, list):
            v = [plain(x) for x in v]
        elif isinstance(v, dict):
            v = {k: plain(x) for k, x in v.items()}
        return v

    return {t: sorted(repr({k: plain(v) for k, v in sorted(r.items()) if k not in VOLATILE}) for r in ds.rows(t))
            for t in TABLES}


def quiet_server_log() -> None:
    """No line per request on stderr (werkzeug adds its own handler to a logger that has none)."""
    log = logging.getLogger("werkzeug")
    log.setLevel(logging.ERROR)
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())


class RequestLog(logging.Handler):
    """The server's requests, as werkzeug logs them (one line each, before the response is sent), in the form
    ``described`` gives them."""

    def __init__(self):
        super().__init__(level=logging.INFO)
        self.requests: list[str] = []

    def emit(self, record):
        m = re.search(r"(GET|PUT|POST|HEAD|DELETE) (/\S*) HTTP/", record.getMessage())  # colours around it
        if m:
            self.requests.append(described(m.group(1), m.group(2)))


def described(method: str, target: str) -> str:
    """``GET bucket/key``, ``LIST bucket/prefix/`` for a listing, ``<method> bucket/key`` otherwise."""
    url = urlsplit(target)
    path = unquote(url.path).lstrip("/")
    query = parse_qs(url.query)
    if method == "GET" and "list-type" in query:
        return f"LIST {path}/{query.get('prefix', [''])[0]}"
    return f"{method} {path}"


@contextlib.contextmanager
def counted_requests():
    """The list of requests the server answers while the block runs (the server logs nothing otherwise)."""
    log = logging.getLogger("werkzeug")
    handler = RequestLog()
    level, propagate = log.level, log.propagate
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    try:
        yield handler.requests
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate
