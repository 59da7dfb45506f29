"""Outside a terminal (a log, CI, a pipe) tables keep every cell whole and progress is a line per event."""

from __future__ import annotations

import os
import subprocess
import sys


def _broken_videos(root):
    videos = root / "v" / "broken"
    videos.mkdir(parents=True)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "noise.mp4").write_bytes(bytes(range(256)) * 20)
    return root / "v"


def test_a_logged_run_prints_whole_tables_and_one_line_per_event(tmp_path, capsys):
    from densevid.cli import main

    data = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    run = subprocess.run([sys.executable, "-m", "densevid.cli", "ingest", "--videos", str(_broken_videos(tmp_path)),
                          "--data", str(data)], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    assert run.returncode == 3
    assert "┃ stage  ┃ seconds ┃ written ┃ nothing to write ┃ skipped (done) ┃ failed ┃ why           ┃" in run.stdout
    assert "│ ingest │" in run.stdout and "│ 2      │ VideoError x2 │" in run.stdout
    assert "…" not in run.stdout
    assert "\r" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == "ingest: 2 items"
    assert lines[-1].startswith("ingest: 2/2 items in ") and lines[-1].endswith(" s")
    assert sorted(line.split(": ")[2].split(" failed")[0] for line in lines[1:-1]) == sorted(
        r["item_id"] for r in _failures(data)), "each warning on a line of its own"

    # a long value is printed whole: sql output in a log is not cut at 80 characters
    (message,) = [r["message"] for r in _failures(data) if "noise.mp4" in r["message"]]
    assert len(message) > 100
    assert main(["sql", "--data", str(data), "SELECT message FROM failures WHERE message LIKE '%noise%'"]) == 0
    assert message in capsys.readouterr().out


def _failures(data):
    from curation.store import Dataset

    return Dataset(data).rows("failures")


def test_sql_into_a_closed_pipe_ends_quietly(tmp_path):
    """`densevid sql ... | head -1`: the reader goes away; no 'Broken pipe' line, no 'Exception ignored'."""
    data = tmp_path / "d"
    subprocess.run([sys.executable, "-m", "densevid.cli", "ingest", "--videos", str(_broken_videos(tmp_path)),
                    "--data", str(data)], stdin=subprocess.DEVNULL, capture_output=True)
    sql = subprocess.Popen([sys.executable, "-m", "densevid.cli", "sql", "--data", str(data),
                            "SELECT range AS n FROM range(200000)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sql.stdout.readline()
    sql.stdout.close()  # as `head -1` does
    err = sql.stderr.read().decode()
    assert sql.wait(timeout=120) == 0 and err == "", err
