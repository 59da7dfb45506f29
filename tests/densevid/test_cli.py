import json
import subprocess
import sys

import pytest

from curation.scenes import DetectorConfig, SegmentPolicy
from densevid.cli import EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, config_from_args, main, parser
from densevid.pipeline import STAGES, PipelineConfig


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
    assert main(["mix", "--data", str(cfg.data), "--name", "cli", "--split", "", "holdout="]) == EXIT_OK
    out = cfg.data / "mixtures" / "cli"
    report = json.loads((out / "balance.json").read_text())
    after = {r["group"]: r["samples"] for r in report["dimensions"]["domain"]}
    assert len(after) > 1 and len(set(after.values())) == 1, "every domain gets the same number of samples"
    assert (out / "manifest.parquet").exists() and json.loads((out / "recipe.json").read_text())["sql"]
    assert (out / "balance.png").read_bytes()[:4] == b"\x89PNG"


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "densevid.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("demo", "ingest", "split", "caption", "dense", "ground", "tasks", "run", "sql", "mix", "train", "export", "report"):
        assert cmd in out.stdout


def test_mix_rejects_values_that_would_break_the_sql(built_dataset, capsys):
    cfg, _ = built_dataset
    assert main(["mix", "--data", str(cfg.data), "--split", "te'st", "--name", "../x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "split \"te'st\"" in err and "name '../x'" in err


def _help(cmd, capsys) -> str:
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    return capsys.readouterr().out


def test_each_stage_subcommand_shows_the_flags_of_the_fields_it_uses(capsys):
    split, caption, dense, run = (_help(c, capsys) for c in ("split", "caption", "dense", "run"))
    assert "--detector {content,adaptive,threshold,content+threshold,transnetv2}" in split
    assert "--min-segment-s" in split and "--model" not in split and "--videos" not in split
    assert "--batch-size" in caption and "--backend" in caption and "--detector" not in caption
    assert "--renderer {seconds,hms}" in dense and "--batch-size" not in dense and "--data" in dense
    for flag in ("--videos", "--domain-rule", "--model", "--storyline", "--needle-durations", "--detector",
                 "--transnet-threshold", "--trim-s", "--workers", "--shard"):
        assert flag in run, flag


def test_flags_fill_the_pipeline_config_and_default_to_its_fields():
    assert config_from_args(PipelineConfig, parser().parse_args(["run", "--data", "d", "--videos", "v"])) == \
        PipelineConfig(data="d", videos="v")  # strings: a dataset or videos may be a URL (s3://...)
    args = parser().parse_args([
        "run", "--data", "d", "--videos", "v", "--manifest", "m.csv", "--domain-rule", "*/a/*=a", "--domain-rule",
        "*/b/*=b", "--workers", "2", "--shard", "0/2", "--model", "tiny", "--caption-frames", "8", "--sample-frames",
        "32", "--batch-size", "2", "--max-new-tokens", "64", "--backend", "vllm", "--renderer", "hms", "--storyline",
        "--needle-durations", "4,8", "--needle-depths", "", "--detector", "adaptive", "--threshold", "30",
        "--fade-threshold", "10", "--downscale", "2", "--frame-skip", "1", "--min-scene-len-frames", "4",
        "--fallback-window-s", "5", "--min-segment-s", "1", "--max-segment-s", "20", "--trim-s", "0", "-q"])
    assert args.quiet and args.pipeline_stages == STAGES
    assert config_from_args(PipelineConfig, args) == PipelineConfig(
        data="d", videos="v", manifest="m.csv", domain_rules=("*/a/*=a", "*/b/*=b"), workers=2,
        shard="0/2", model="tiny", caption_frames=8, sample_frames=32, batch_size=2, max_new_tokens=64,
        backend="vllm", renderer="hms", storyline=True, needle_durations_s=(4.0, 8.0), needle_depths=(),
        detector=DetectorConfig(detector="adaptive", threshold=30.0, fade_threshold=10.0, downscale=2, frame_skip=1,
                                min_scene_len_frames=4),
        policy=SegmentPolicy(min_segment_s=1.0, max_segment_s=20.0, trim_s=0.0, fallback_window_s=5.0))


def test_a_bad_choice_is_reported_with_the_other_problems(tmp_path, capsys):
    assert main(["dense", "--data", str(tmp_path / "d"), "--renderer", "iso", "--workers", "0"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--renderer 'iso': choose one of seconds, hms" in err and "--workers 0" in err
