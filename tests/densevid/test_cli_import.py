"""`densevid import`: a one-screen summary and the exit statuses of the other commands (0, 3 some failed, 2)."""

import json

import pytest

from densevid.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main
from synth.videos import render_video


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    videos = tmp_path_factory.mktemp("cli_import_videos")
    render_video(videos / "clips" / "CHA01.mp4", "clips", 6.0, 0, size=(64, 48), n_scenes=2, n_fades=0)
    data = tmp_path_factory.mktemp("cli_import") / "dataset"
    assert main(["-q", "ingest", "--videos", str(videos), "--data", str(data)]) == EXIT_OK
    return data


def test_import_prints_rows_written_and_failures_and_exits_3(data, tmp_path, capsys):
    path = tmp_path / "charades.txt"
    path.write_text("CHA01 1.0 2.5##person opens a door.\nCHA01 2.0 30.0##person sits.\nNOPE 0 1##person eats.\n")
    assert main(["import", "--format", "charades-sta", str(path), "--data", str(data)]) == EXIT_SOME_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"import charades-sta {path}: 3 lines or entries"
    assert out[1].split() == ["grounding", "1", "written", "0", "already", "stored"]
    assert out[3].split() == ["failures", "2", "written", "0", "already", "stored"]
    assert out[4] == "failed: OutsideVideo x1, UnknownVideo x1"
    assert out[5].startswith("  charades.txt:line 2: span [2.000, 30.000] s is outside the video's [0, 6.000] s")
    assert out[6].startswith("  charades.txt:line 3: no ingested video is named NOPE")

    assert main(["import", "--format", "charades-sta", str(path), "--data", str(data)]) == EXIT_SOME_FAILED
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == ["grounding", "0", "written", "1"]
    assert main(["sql", "--data", str(data), "SELECT phrase, action, start_s, end_s, model FROM grounding",
                 "--format", "json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == [
        {"phrase": "the person", "action": "open a door", "start_s": 1.0, "end_s": 2.5, "model": "charades-sta"}]


def test_a_clean_file_exits_0(data, tmp_path, capsys):
    path = tmp_path / "clean.txt"
    path.write_text("CHA01 0.5 1.5##person smiles.\n")
    assert main(["import", "--format", "charades-sta", str(path), "--data", str(data)]) == EXIT_OK
    assert "failed" not in capsys.readouterr().out


def test_bad_options_and_unreadable_files_exit_2(data, tmp_path, capsys):
    path = tmp_path / "anet.json"
    path.write_text("{not json")
    assert main(["import", "--format", "activitynet", str(path), "--data", str(data)]) == EXIT_USAGE
    assert "anet.json: not JSON" in capsys.readouterr().err
    assert main(["import", "--format", "activitynet", str(tmp_path / "missing.json"), "--data", str(data)]) == EXIT_USAGE
    assert main(["import", "--format", "charades-sta", str(path), "--data", str(tmp_path / "nothing")]) == EXIT_USAGE
    assert "run densevid ingest" in capsys.readouterr().err
    (tmp_path / "map.csv").write_text("id,video\n")
    assert main(["import", "--format", "charades-sta", str(path), "--data", str(data), "--map",
                 str(tmp_path / "map.csv")]) == EXIT_USAGE
    assert "a map needs annotation_id and video_id (or uri)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["import", "--format", "vidstg", str(path), "--data", str(data)])
    assert e.value.code == EXIT_USAGE
