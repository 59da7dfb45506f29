"""The pipeline and the commands on an S3 bucket (a local S3 server): the local run's tables, kill and rerun,
sql / mix / export on the bucket, and one clear line for a bucket that cannot be used."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace

from s3server import bucket, comparable_tables, s3_endpoint, upload  # noqa: F401  (fixtures)

from curation import storage
from curation.executors import run_stage
from curation.stages import IngestStage
from curation.store import Dataset
from densevid.cli import main
from densevid.pipeline import run_pipeline



def _plain(ds, videos):
    return comparable_tables(ds, (str(ds.root), "<data>"), (str(videos), "<videos>"))


def test_run_on_a_bucket_gives_the_local_tables_and_sql_mix_export_read_it(built_dataset, corpus, bucket, tmp_path,
                                                                        capsys):
    cfg, _ = built_dataset
    videos, data = upload(corpus, f"{bucket}/videos"), f"{bucket}/ds"
    run_pipeline(replace(cfg, data=data, videos=videos), progress=False)
    remote, local = Dataset(data), Dataset(cfg.data)
    assert _plain(remote, videos) == _plain(local, corpus)
    assert remote.counts()["samples"] > 0 and remote.rows("videos")[0]["uri"].startswith(videos)

    capsys.readouterr()
    assert main(["sql", "--data", data, "--format", "json", "SELECT count(*) AS n FROM samples"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": local.counts()["samples"]}]
    assert main(["mix", "balanced", "--data", data]) == 0
    assert storage.exists(f"{data}/mixtures/balanced/manifest.parquet")
    out = tmp_path / "export"
    assert main(["export", f"{data}/mixtures/balanced", "--out", str(out), "--format", "qwen"]) == 0
    records = json.loads((out / "qwen.json").read_text())
    assert records and all((out / r["video"]).is_file() for r in records)  # clips and sources are local files


def _segments(ds):
    return sorted((r["segment_id"], r["start_frame"], r["end_frame"]) for r in ds.rows("segments"))


def test_a_split_killed_on_a_bucket_reruns_to_the_clean_tables(corpus, bucket):
    videos = upload(corpus, f"{bucket}/videos")
    clean, killed = Dataset(f"{bucket}/clean"), Dataset(f"{bucket}/killed")
    for ds in (clean, killed):
        run_stage(IngestStage(videos=storage.location(videos)), ds, progress=False)
    assert main(["-q", "split", "--data", str(clean.root)]) == 0
    cmd = [sys.executable, "-m", "densevid.cli", "-q", "split", "--data", str(killed.root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while time.time() < deadline and not killed.files("segments"):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < len(_segments(killed)) < len(_segments(clean)), "the kill must land mid-run"
    assert subprocess.run(cmd, stdout=subprocess.DEVNULL, env=os.environ.copy()).returncode == 0
    assert _segments(killed) == _segments(clean)
    assert killed.sql("SELECT count(*) - count(DISTINCT segment_id) AS d FROM segments").to_pylist() == [{"d": 0}]


def test_a_missing_bucket_or_a_wrong_endpoint_is_one_line(s3_endpoint, capsys):
    assert main(["sql", "--data", "s3://no-such-bucket-here/ds", "SELECT 1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: s3://no-such-bucket-here/ds: no such bucket 'no-such-bucket-here'; create it or fix the URL"
    wrong = "endpoint_url=http://127.0.0.1:9"
    assert main(["run", "--storage-option", wrong, "--videos", "s3://b/v", "--data", "s3://b/ds"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "cannot reach the storage endpoint" in line and "--data s3://b/ds" in line]
    assert [line for line in err if "--videos s3://b/v" in line]


def test_a_video_removed_from_the_bucket_mid_run_is_a_failures_row(corpus, bucket):
    videos = upload(corpus, f"{bucket}/videos")
    data = f"{bucket}/ds"
    assert main(["-q", "ingest", "--videos", videos, "--data", data]) == 0
    gone = f"{videos}/cinematic/run.mp4"
    fs, inner = storage.filesystem(gone)
    fs.rm_file(inner)
    assert main(["-q", "split", "--data", data]) == 3
    ds = Dataset(data)
    failures = ds.rows("failures")
    assert [(f["stage"], f["error_type"]) for f in failures] == [("split", "VideoError")]
    assert gone in failures[0]["message"]
    assert {r["video_id"] for r in ds.rows("segments")} == {v["video_id"] for v in ds.rows("videos")
                                                            if v["uri"] != gone}


@contextmanager
def _authenticated(monkeypatch, key_id, secret):
    """The server checks every request's key and signature (moto lets all through unless told)."""
    from moto import settings

    with monkeypatch.context() as m:
        m.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        m.setenv("AWS_ACCESS_KEY_ID", key_id)
        m.setenv("AWS_SECRET_ACCESS_KEY", secret)
        yield


def _objects(url):
    fs, inner = storage.filesystem(url)
    return sorted(fs.find(inner, refresh=True))


def test_denied_credentials_stop_a_command_before_it_writes_in_one_line(corpus, bucket, s3_endpoint, capsys,
                                                                     monkeypatch):
    import botocore.session

    iam = botocore.session.get_session().create_client("iam", endpoint_url=s3_endpoint, region_name="us-east-1")
    user = f"no-rights-{bucket[-10:]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]  # a real key without any policy
    data = f"{bucket}/ds"
    assert main(["-q", "ingest", "--videos", str(corpus), "--data", data]) == 0
    before = _objects(bucket)
    capsys.readouterr()

    with _authenticated(monkeypatch, key["AccessKeyId"], key["SecretAccessKey"]):
        assert main(["sql", "--data", data, "SELECT count(*) FROM videos"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert re.fullmatch(rf"error: {re.escape(data)}: access denied \(PermissionError: [^\n]*Access Denied[^\n]*\); "
                        r"check the credentials \(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY\)\n", captured.err)

    with _authenticated(monkeypatch, key["AccessKeyId"], "not-the-secret"):
        assert main(["-q", "run", "--videos", str(corpus), "--data", f"{bucket}/new"]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith(f"error: bad configuration: --data {bucket}/new: access denied (")
    assert "signature" in captured.err and "check the credentials" in captured.err
    assert _objects(bucket) == before  # nothing written by either command
