import json
import subprocess
import sys

from densevid.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, main


def test_sql_prints_json_and_csv(built_dataset, capsys):
    cfg, _ = built_dataset
    q = "SELECT domain, count(*) AS n FROM videos GROUP BY domain ORDER BY domain"
    assert main(["sql", "--data", str(cfg.data), q, "--format", "json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"domain": "cinematic", "n": 1}, {"domain": "egocentric", "n": 1}, {"domain": "instructional", "n": 1},
                    {"domain": "needle", "n": 2}]
    assert main(["sql", "--data", str(cfg.data), q, "--format", "csv"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[:2] == ['"domain","n"', '"cinematic",1']


def test_sql_is_read_only(built_dataset, capsys):
    cfg, _ = built_dataset
    code = main(["sql", "--data", str(cfg.data), "CREATE TABLE x AS SELECT 1"])
    assert code == EXIT_USAGE
    assert "read-only" in capsys.readouterr().err.lower()


def test_bad_split_options_are_all_reported_with_the_fix(tmp_path, capsys):
    code = main(["split", "--data", str(tmp_path / "d"), "--detector", "magic", "--min-segment-s", "-1",
                 "--trim-s", "-2"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "magic" in err and "min_segment_s -1" in err and "trim_s -2" in err


def test_failed_items_give_a_distinct_exit_status(tmp_path):
    videos = tmp_path / "v" / "broken"
    videos.mkdir(parents=True)
    (videos / "empty.mp4").write_bytes(b"")
    assert main(["-q", "ingest", "--videos", str(tmp_path / "v"), "--data", str(tmp_path / "d")]) == EXIT_SOME_FAILED


def test_mix_writes_manifest_recipe_and_balance(built_dataset, tmp_path):
    cfg, _ = built_dataset
    assert main(["mix", "--data", str(cfg.data), "--name", "cli", "--split", ""]) == EXIT_OK
    out = cfg.data / "mixtures" / "cli"
    report = json.loads((out / "balance.json").read_text())
    after = {r["domain"]: r["samples"] for r in report["after"]}
    assert len(set(after.values())) == 1, "every domain gets the same number of samples"
    assert (out / "manifest.parquet").exists() and json.loads((out / "recipe.json").read_text())["sql"]


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "densevid.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("demo", "ingest", "split", "caption", "dense", "ground", "tasks", "run", "sql", "mix", "train"):
        assert cmd in out.stdout


def test_mix_rejects_values_that_would_break_the_sql(built_dataset, capsys):
    cfg, _ = built_dataset
    assert main(["mix", "--data", str(cfg.data), "--split", "te'st", "--name", "../x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "split \"te'st\"" in err and "name '../x'" in err
