"""`densevid report` through its parser and dispatch, as densevid/cli.py wires every subcommand module."""

from __future__ import annotations

import argparse

import pytest

from densevid import report_cli
from densevid.exits import EXIT_OK


def _parser():
    ap = argparse.ArgumentParser(prog="densevid")
    ap.add_argument("-q", "--quiet", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    report_cli.add_parsers(sub)
    return ap


def test_report_command_writes_the_site_and_prints_its_path(report_dataset, tmp_path, capsys):
    out = tmp_path / "site"
    args = _parser().parse_args(["-q", "report", "--data", str(report_dataset), "--out", str(out)])
    assert report_cli.dispatch(args) == EXIT_OK
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith(str(out.resolve() / "index.html")) and "reused" in line and " 0 reused" in line
    assert report_cli.dispatch(args) == EXIT_OK
    assert "pages 0 written" in capsys.readouterr().out


def test_no_thumbnails_draws_boxes_on_empty_frames(report_dataset, tmp_path, capsys):
    out = tmp_path / "site"
    args = _parser().parse_args(["-q", "report", "--data", str(report_dataset), "--out", str(out), "--no-thumbnails"])
    assert report_cli.dispatch(args) == EXIT_OK
    assert "thumbnails 0 cut" in capsys.readouterr().out and not (out / "thumbs").exists()
    html = "".join(p.read_text() for p in (out / "videos").glob("*.html"))
    assert 'class="box"' in html and "<img" not in html


def test_other_commands_are_not_ours():
    assert report_cli.dispatch(argparse.Namespace(cmd="sql")) is None


def test_a_folder_that_is_not_a_dataset_is_named_with_the_way_out(tmp_path):
    args = _parser().parse_args(["report", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "site")])
    with pytest.raises(FileNotFoundError, match="not a dataset .*densevid run --videos"):
        report_cli.dispatch(args)
    assert not (tmp_path / "nothing").exists()
