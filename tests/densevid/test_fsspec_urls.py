"""Storage beyond S3: a gs:// URL opens gcsfs with the command's --storage-option values (no GCS server here, so
nothing is asked of one), and a dataset under memory:// (fsspec's in-process filesystem) goes through
ingest, the tables and the catalog as a local one does."""

import json
import os
import uuid

import fsspec
import gcsfs
from s3server import upload

from curation import storage
from curation.store import Dataset
from densevid import cli
from densevid.cli import EXIT_OK, main

OPTIONS = ["--storage-option", "project=densevid-test", "--storage-option", "token=anon",
           "--storage-option", 'default_location="EUROPE-WEST4"']


def test_a_gs_url_opens_gcsfs_with_the_storage_options_of_the_command(monkeypatch):
    seen = {}

    def look(args):  # what cmd_sql would open, without asking a server
        fs, inner = storage.filesystem(str(args.data))
        seen.update(parsed=args.data.fs, opened=fs, inner=inner, options=storage.storage_options())
        return EXIT_OK

    monkeypatch.setattr(cli, "cmd_sql", look)
    before = os.environ.get(storage.OPTIONS_ENV)
    assert main(["sql", *OPTIONS, "--data", "gs://some-bucket/ds", "SELECT 1"]) == EXIT_OK
    for fs in (seen["parsed"], seen["opened"]):  # the --data path parsed before the options are read, too
        assert isinstance(fs, gcsfs.GCSFileSystem)
        assert (fs.project, fs.credentials.token, fs.default_location) == ("densevid-test", "anon", "EUROPE-WEST4")
    assert seen["inner"] == "some-bucket/ds"
    assert seen["options"] == {"use_listings_cache": False, "project": "densevid-test", "token": "anon",
                               "default_location": "EUROPE-WEST4"}
    assert os.environ.get(storage.OPTIONS_ENV) == before  # the command's options end with it


QUERY = "SELECT domain, count(*) AS n, sum(n_frames) AS frames FROM videos GROUP BY 1 ORDER BY 1"


def _sql(data, capsys) -> list:
    capsys.readouterr()
    assert main(["sql", "--data", data, "--format", "json", QUERY]) == EXIT_OK
    return json.loads(capsys.readouterr().out)


def test_a_dataset_under_memory_url_ingests_and_answers_the_catalog_like_a_local_one(corpus, tmp_path, capsys):
    root = f"memory://densevid-{uuid.uuid4().hex[:8]}"
    videos = upload(corpus, f"{root}/videos")
    try:
        assert main(["-q", "ingest", "--videos", videos, "--data", f"{root}/ds"]) == EXIT_OK
        assert main(["-q", "ingest", "--videos", str(corpus), "--data", str(tmp_path / "ds")]) == EXIT_OK
        got = _sql(f"{root}/ds", capsys)
        assert got == _sql(str(tmp_path / "ds"), capsys)
        assert [r["domain"] for r in got] == ["cinematic", "egocentric", "instructional"]

        ds = Dataset(f"{root}/ds")
        assert {v["uri"] for v in ds.rows("videos")} == {f"{videos}/{p.relative_to(corpus).as_posix()}"
                                                         for p in corpus.rglob("*.mp4")}
        row = dict(stage="x", variant="", item_id="a", error_type="E", message="m", raw="", created_at=1.0)
        ds.write("failures", [row])
        ds.write("failures", [dict(row, item_id="b")])
        assert ds.write("failures", [row]) is None  # a stored key is skipped
        assert ds.compact("failures") == (2, 1)
        assert sorted(r["item_id"] for r in Dataset(f"{root}/ds").rows("failures")) == ["a", "b"]
        assert ds.open_failure_counts() == {"x": 2}
    finally:
        fs, inner = storage.filesystem(root)
        fs.rm(inner, recursive=True)
    assert not fsspec.filesystem("memory").exists(inner)
