"""What the command does when the system refuses, when it is interrupted, with mistyped options, and what its
help shows."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq

from densevid.cli import main
from densevid.exits import EXIT_SYSTEM


def _empty_mixture(root):
    mixture = root / "dataset" / "mixtures" / "m"
    mixture.mkdir(parents=True)
    pq.write_table(pa.table({"sample_id": pa.array([], pa.string())}), mixture / "manifest.parquet")
    return mixture


def test_an_export_the_system_refuses_is_one_line_and_its_own_exit_status(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder under a file cannot be made, even by root (chmod would not stop root)
    out = blocker / "export"
    code = main(["-q", "export", str(_empty_mixture(tmp_path)), "--format", "swift", "--out", str(out)])
    err = capsys.readouterr().err
    assert (code, EXIT_SYSTEM) == (4, 4)
    assert err == f"densevid export: cannot access {out}: Not a directory\n"


def test_a_read_only_disk_reads_cannot_write(tmp_path):
    import errno
    import os

    from densevid.cli import os_error_line

    e = OSError(errno.EROFS, os.strerror(errno.EROFS), "/x")
    assert os_error_line("export", e) == "densevid export: cannot write /x: Read-only file system"
    assert os_error_line("sql", OSError("Failed to open local file 'a'.\nDetail: [errno 13]")) == \
        "densevid sql: Failed to open local file 'a'. Detail: [errno 13]"


class _Unreadable:
    """A DataLoader dataset whose one item cannot be read, as a vanished or forbidden video."""

    def __len__(self):
        return 1

    def __getitem__(self, i):
        import errno
        import os

        raise OSError(errno.EACCES, os.strerror(errno.EACCES), "/videos/a.mp4")


def test_an_os_error_in_a_dataloader_worker_is_the_workers_last_line():
    import pytest
    from torch.utils.data import DataLoader

    from densevid.cli import os_error_line

    with pytest.raises(OSError) as caught:
        next(iter(DataLoader(_Unreadable(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)  # torch re-raises it with the worker's traceback
    assert os_error_line("train", caught.value) == \
        "densevid train: PermissionError: [Errno 13] Permission denied: '/videos/a.mp4'"


def _mixture_of_every_sample(built_dataset):
    from curation.store import Dataset
    from mixtures.balance import build_mixture
    from mixtures.recipe import MixRecipe

    cfg, _ = built_dataset
    return build_mixture(Dataset(cfg.data), MixRecipe(name="interrupt", split="", holdout=(), balance_by=()))


def test_ctrl_c_during_training_is_one_line_and_status_130(built_dataset, tiny_model, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "densevid.cli", "train", "lora", f"model={tiny_model}",
           f"mixture={_mixture_of_every_sample(built_dataset)}", f"output_dir={tmp_path / 'run'}", "max_steps=100000",
           "log_every=1", "save_every=0", "tensorboard=false", "data.num_workers=2", "data.max_batch_size=2"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    # a session of its own, so the signal goes to the whole group as a terminal's Ctrl-C does (DataLoader workers too)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=env, start_new_session=True)
    try:
        for line in proc.stdout:
            if line.startswith("step "):  # inside the training loop
                break
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == "interrupted; rerun the same command to resume"
    assert err.count("interrupted") == 1


def test_options_are_taken_by_their_full_names_only(tmp_path, capsys):
    import pytest

    from densevid.cli import parser

    ap = parser()
    (sub,) = [a for a in ap._actions if a.dest == "cmd"]
    assert [name for name, p in sub.choices.items() if p.allow_abbrev] == []
    for argv, left in ((["run", "--videos", "v", "--data", "d", "--video", "w"], "--video w"),
                       (["split", "--data", "d", "--min-seg", "1"], "--min-seg 1")):
        with pytest.raises(SystemExit) as stop:
            ap.parse_args(argv)
        assert stop.value.code == 2
        assert f"unrecognized arguments: {left}" in capsys.readouterr().err
    mixture = _empty_mixture(tmp_path)
    with pytest.raises(SystemExit) as stop:  # options after the recipe are parsed again, with the same rule
        main(["train", "lora", f"mixture={mixture}", "--max-step", "3", "--print-config"])
    assert stop.value.code == 2 and "unrecognized arguments: --max-step" in capsys.readouterr().err


def test_nothing_is_written_before_the_options_are_checked(tmp_path, capsys):
    from densevid.exits import EXIT_USAGE

    data = tmp_path / "d"
    assert main(["run", "--videos", str(tmp_path / "nope"), "--data", str(data)]) == EXIT_USAGE
    assert not data.exists()
    assert f"--videos {tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    assert main(["split", "--data", str(tmp_path / "typo")]) == EXIT_USAGE
    assert not (tmp_path / "typo").exists()
    assert f"--data {tmp_path / 'typo'} is no dataset yet" in capsys.readouterr().err
    for argv in (["compact"], ["eval-grounding"], ["sql", "SELECT 1"]):
        assert main(argv + ["--data", str(tmp_path / "typo")]) == EXIT_USAGE
        assert not (tmp_path / "typo").exists(), argv
        err = capsys.readouterr().err
        assert err == f"error: {tmp_path / 'typo'} is not a densevid dataset (no catalog.duckdb, no tables)\n"


def _help(argv, capsys) -> str:
    import pytest

    with pytest.raises(SystemExit):
        main(argv + ["--help"])
    return capsys.readouterr().out


def test_help_shows_real_metavars_and_which_options_are_required(capsys):
    train = _help(["train"], capsys)
    for shown in ("--mixture DIR", "--model MODEL", "--output-dir DIR", "--max-steps N", "same as mixture=DIR"):
        assert shown in train, shown
    assert "FLAG_" not in train
    mix = _help(["mix"], capsys)
    assert "--name NAME" in mix and "--split SPLIT" in mix and "FLAG_" not in mix
    for cmd in ("demo", "ingest", "split", "caption", "dense", "ground", "verify", "tasks", "run", "sql", "export",
                "report", "round", "eval", "eval-gate", "import"):
        assert "FLAG_" not in _help([cmd], capsys), cmd
    for cmd in ("run", "ingest"):
        usage = _help([cmd], capsys).split("\n\n")[0]
        assert re.search(r"(?<!\[)--videos DIR", usage) and "[--videos" not in usage, usage
        assert "--data DIR" in usage


def test_readme_passes_training_fields_one_way():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    train_lines = [line for line in readme.splitlines() if "densevid train " in line or "densevid.cli train " in line]
    assert len(train_lines) >= 5
    flags = re.compile(r"\s--(mixture|model|output-dir|max-steps|lr|seed)\b")
    assert [line for line in train_lines if flags.search(line)] == []
    assert all("mixture=" in line for line in train_lines if " train lora" in line)


def test_demo_with_no_training_steps_stops_before_it_writes(tmp_path, capsys):
    from densevid.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--teacher-steps", "0"]) == 2
    assert "--teacher-steps 0 must be >= 1" in capsys.readouterr().err and not (tmp_path / "demo").exists()
