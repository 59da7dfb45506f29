"""Mixture recipes on a small hand-made samples table: exact counts for every unit, target, temperature,
budget, filter and cap, computed by hand from the table below."""

import json
import math

import pyarrow.parquet as pq
import pytest

from curation.store import Dataset
from mixtures.balance import build_mixtures, max_error, pool_sql
from mixtures.recipe import load_mix_recipe
from mixtures.shares import rake, temperature_shares

# domain a: videos a0..a2 (100 s, source yt), 10 samples each of 10 s and 100 tokens; 20 dense_caption, 10 tg.
# domain b: videos b0, b1 (60 s, source cam), 5 samples each of 20 s and 50 tokens; 5 dense_caption, 5 tg.
# held out: 2 samples of b in val, 1 of a in test.


def _sample(i, domain, task, video, dur, tokens, split="train"):
    return dict(sample_id=f"s{i:03d}", task=task, video_id=video, uri=f"/v/{video}.mp4", clip_start_s=0.0,
                clip_end_s=float(dur), clip_start_frame=0, clip_end_frame=dur * 10, video_n_frames=dur * 10,
                frame_indices=[0, 1], fps=10.0, messages="[]", domain=domain, split=split, n_text_tokens=tokens - 20,
                n_visual_tokens=20, code_version="test")


def _video(video, domain, source, duration):
    return dict(video_id=video, uri=f"/v/{video}.mp4", uris=[], domain=domain, source=source, license="",
                duration_s=float(duration), fps=10.0, n_frames=duration * 10, width=64, height=48, codec="h264",
                rotation=0, variable_fps=False, bytes=1, code_version="test")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    ds = Dataset(tmp_path_factory.mktemp("mix") / "d")
    rows = []
    for i in range(30):
        rows.append(_sample(i, "a", "dense_caption" if i < 20 else "temporal_grounding", f"a{i % 3}", 10, 100))
    for i in range(10):
        rows.append(_sample(30 + i, "b", "dense_caption" if i < 5 else "temporal_grounding", f"b{i % 2}", 20, 50))
    rows += [_sample(40, "b", "dense_caption", "b9", 20, 50, "val"), _sample(41, "b", "dense_caption", "b9", 20, 50, "val"),
             _sample(42, "a", "dense_caption", "a9", 10, 100, "test")]
    ds.write("samples", rows)
    ds.write("videos", [_video(f"a{k}", "a", "yt", 100) for k in (0, 1, 2, 9)] +
             [_video(f"b{k}", "b", "cam", 60) for k in (0, 1, 9)])
    return ds


def mix(ds, preset=None, **overrides):
    overrides.setdefault("name", "t")
    return build_mixtures(ds, load_mix_recipe(preset, overrides))


def per(built, dim="domain", key="samples"):
    return {r["group"]: r[key] for r in built.report["dimensions"][dim] if r[key]}


def manifest(built):
    return pq.read_table(built.path / "manifest.parquet").to_pylist()


def test_natural_takes_every_sample_of_the_split(ds):
    main, val, test = mix(ds, "natural")
    assert per(main) == {"a": 30, "b": 10}
    assert (val.name, per(val), test.name, per(test)) == ("t-val", {"b": 2}, "t-test", {"a": 1})


def test_equal_samples_per_domain_shrinks_to_the_smallest(ds):
    main = mix(ds, "balanced")[0]
    assert per(main) == {"a": 10, "b": 10}
    assert max_error(main.report) == 0


def test_hours_and_tokens_count_their_unit(ds):
    # hours: a holds 300 s, b 200 s; equal shares -> 200 s each = 20 samples of a, 10 of b
    hours = mix(ds, "balanced", unit="hours")[0]
    assert per(hours) == {"a": 20, "b": 10}
    assert per(hours, key="selected") == pytest.approx({"a": 200 / 3600, "b": 200 / 3600})
    # tokens: a holds 3000, b 500; equal shares -> 500 each = 5 samples of a, 10 of b
    assert per(mix(ds, "balanced", unit="tokens")[0]) == {"a": 5, "b": 10}


def test_temperature_flattens_by_the_root_of_size(ds):
    # T=2: shares proportional to sqrt(30) : sqrt(10); b is short, so a gets 10 * sqrt(3) = 17.3 -> 17
    assert per(mix(ds, temperature=2.0)[0]) == {"a": 17, "b": 10}
    assert per(mix(ds, temperature=1.0)[0]) == {"a": 30, "b": 10}
    assert temperature_shares({"x": 9, "y": 1}, 2.0) == pytest.approx({"x": 0.75, "y": 0.25})


def test_explicit_targets_are_weights(ds):
    # a : b = 1 : 3; b's 10 samples bind, so a gets 10 / 3 = 3.3 -> 3
    main = mix(ds, targets={"domain": {"a": 1, "b": 3}})[0]
    assert per(main) == {"a": 3, "b": 10}
    assert {r["group"]: r["target"] for r in main.report["dimensions"]["domain"]} == {"a": 0.25, "b": 0.75}


def test_domain_and_task_targets_are_raked_from_the_natural_mix(ds):
    # cells (a,dc)=20 (a,tg)=10 (b,dc)=5 (b,tg)=5; raking keeps the odds ratio 20*5/(10*5) = 2, so
    # x (x - .1) = 2 (.5 - x)(.6 - x): x = (2.1 - sqrt(2.01)) / 2 for (a,dc)
    x = (2.1 - math.sqrt(2.01)) / 2
    shares = {("a", "dense_caption"): x, ("a", "temporal_grounding"): 0.5 - x,
              ("b", "dense_caption"): 0.6 - x, ("b", "temporal_grounding"): x - 0.1}
    mass = {("a", "dense_caption"): 20, ("a", "temporal_grounding"): 10, ("b", "dense_caption"): 5,
            ("b", "temporal_grounding"): 5}
    got = rake(mass, {0: {"a": 0.5, "b": 0.5}, 1: {"dense_caption": 0.6, "temporal_grounding": 0.4}})
    assert got == pytest.approx(shares, abs=1e-6)
    total = 5 / shares[("b", "dense_caption")]  # (b, dc) binds
    expected = {cell: math.floor(s * total + 0.5) for cell, s in shares.items()}
    main = mix(ds, targets={"domain": {"a": 0.5, "b": 0.5}, "task": {"dense_caption": 0.6, "temporal_grounding": 0.4}})[0]
    cells = {}
    for row in manifest(main):
        cells[(row["domain"], row["task"])] = cells.get((row["domain"], row["task"]), 0) + 1
    assert cells == expected == {("a", "dense_caption"): 7, ("a", "temporal_grounding"): 3,
                                 ("b", "dense_caption"): 5, ("b", "temporal_grounding"): 5}


def test_targets_that_cannot_hold_together_say_so(ds):
    with pytest.raises(ValueError, match="cannot all hold"):
        mix(ds, targets={"domain": {"a": 0.5, "b": 0.5}, "source": {"yt": 0.8, "cam": 0.2}})  # a is all yt


def test_upsampling_fills_a_short_group_with_numbered_copies(ds):
    main = mix(ds, "balanced", budget=40, shortfall="upsample", max_repeat=3)[0]
    assert per(main) == {"a": 20, "b": 20}
    rows = manifest(main)
    b_repeats = sorted(r["repeat"] for r in rows if r["domain"] == "b")
    assert b_repeats == [0] * 10 + [1] * 10, "every b sample once, then each a second time"
    assert main.report["repeated_rows"] == 10
    # the budget beyond what max_repeat allows: b holds at most 30 (3 copies), so 30 + 30
    capped = mix(ds, "balanced", budget=1000, shortfall="upsample", max_repeat=3)[0]
    assert per(capped) == {"a": 30, "b": 30} and capped.report["planned_total"] == 60


def test_shrink_keeps_shares_under_a_budget(ds):
    assert per(mix(ds, "balanced", budget=8)[0]) == {"a": 4, "b": 4}
    natural = mix(ds, "natural", budget=20)[0]  # no dimension: the first 20 in hash order, any domain
    assert natural.report["rows"] == 20 and sum(per(natural).values()) == 20


def test_filters_see_the_videos_columns(ds):
    # a's videos are 100 s long, b's 60 s
    main = mix(ds, "balanced", filter="video_duration_s >= 100 AND task = 'dense_caption'")[0]
    assert per(main) == {"a": 20}
    filtered = {f["domain"]: (f["split"], f["filter"], f["cap"]) for f in main.report["filtered"]}
    assert filtered == {"a": (30, 20, 20), "b": (10, 0, 0)}
    assert per(mix(ds, "balanced", balance_by=["source"])[0], "source") == {"cam": 10, "yt": 10}


def test_per_video_cap(ds):
    main = mix(ds, "natural", max_per_video=4)[0]
    assert per(main) == {"a": 12, "b": 8}
    videos = {}
    for row in manifest(main):
        videos[row["video_id"]] = videos.get(row["video_id"], 0) + 1
    assert set(videos.values()) == {4}


def test_selection_is_seeded_deterministic_and_its_sql_reruns(ds):
    first = {r["sample_id"] for r in manifest(mix(ds, "balanced", name="s0")[0])}
    again = mix(ds, "balanced", name="s0b")[0]
    assert {r["sample_id"] for r in manifest(again)} == first
    other = {r["sample_id"] for r in manifest(mix(ds, "balanced", name="s1", seed=1)[0])}
    assert len(other) == len(first) and other != first
    saved = json.loads((again.path / "recipe.json").read_text())
    assert ds.sql(saved["sql"]).to_pylist() == manifest(again)
    assert saved["temperature"] == "inf" and load_mix_recipe(None, {"temperature": saved["temperature"]}).temperature == math.inf


def test_report_files(ds):
    main = mix(ds, "balanced", name="files")[0]
    report = json.loads((main.path / "balance.json").read_text())
    assert report["rows"] == 20 and report["unit"] == "samples" and report["dataset"] == str(ds.root)
    assert [(r["group"], r["before"], r["target"], r["achieved"]) for r in report["dimensions"]["domain"]] == \
        [("a", 0.75, 0.5, 0.5), ("b", 0.25, 0.5, 0.5)]
    assert (main.path / "balance.png").read_bytes()[:4] == b"\x89PNG"


def test_dry_run_writes_nothing(ds):
    built = build_mixtures(ds, load_mix_recipe("balanced", {"name": "dry"}), dry_run=True)
    assert built[0].path is None and built[0].report["rows"] == 20
    assert not (ds.root / "mixtures" / "dry").exists()


@pytest.mark.parametrize("overrides, message", [
    ({"targets": {"domain": {"zz": 1}}}, "zz has no samples in split 'train'"),
    ({"filter": "no_such_column > 1"}, "no_such_column"),
    ({"split": "nosplit", "holdout": []}, "no samples in split 'nosplit'"),
])
def test_bad_recipes_name_the_problem(ds, overrides, message):
    with pytest.raises(ValueError, match=message):
        mix(ds, **overrides)


def test_every_recipe_problem_at_once():
    with pytest.raises(ValueError) as e:
        load_mix_recipe(None, {"unit": "minutes", "shortfall": "upsample", "max_repeat": 0, "temperature": 0,
                               "balance_by": ["colour"], "filter": "1; DROP", "holdout": ["train"],
                               "max_dropped_share": 0})
    text = str(e.value)
    for part in ("unit 'minutes'", "needs a budget", "max_repeat 0", "temperature 0", "balance_by 'colour'",
                 "remove the ';'", "includes split 'train'", "max_dropped_share 0 must be in (0, 1]"):
        assert part in text


def test_a_domain_without_the_targeted_task_cannot_hold(tmp_path):
    """Domain balancing plus targets.task={dense_caption: 1} with a domain that has only grounding samples:
    raking divided by zero; it is the "cannot all hold" report, naming the domain."""
    small = Dataset(tmp_path / "d")
    small.write("samples", [_sample(i, "a", "dense_caption", "a0", 10, 100) for i in range(4)] +
                [_sample(10 + i, "c", "temporal_grounding", "c0", 10, 100) for i in range(4)])
    with pytest.raises(ValueError, match="cannot all hold at once: domain c has samples only in groups"):
        mix(small, "balanced", targets={"task": {"dense_caption": 1}})
    assert not (small.root / "mixtures").exists()


def test_a_held_out_split_without_the_targeted_groups_fails_before_anything_is_written(ds):
    """val holds only dense captions; targeting grounding used to write the main mixture, then fail on max()
    of an empty sequence."""
    with pytest.raises(ValueError, match="cannot all hold at once in split 'val': none of the targets.task groups "
                                         r"\(temporal_grounding\) has samples there"):
        mix(ds, "natural", name="tg-only", targets={"task": {"temporal_grounding": 1}})
    assert not (ds.root / "mixtures" / "tg-only").exists()
    assert per(mix(ds, "natural", name="tg-train", holdout=[], targets={"task": {"temporal_grounding": 1}})[0],
               "task") == {"temporal_grounding": 15}


def _segment(seg, video, a, b):
    return dict(segment_id=seg, video_id=video, idx=0, start_s=a / 10, end_s=b / 10, start_frame=a, end_frame=b)


def test_keep_is_decided_per_sample_by_the_share_of_its_clip_that_quality_drops(tmp_path):
    """A black tail used to drop every whole-video sample of its video. Video w: 20% black at the end, so
    its dense caption keeps (under max_dropped_share 0.25) and only the tail's own segment sample drops;
    video h: half black, so its dense caption drops too."""
    d = Dataset(tmp_path / "d")
    spans = {"w": [(0, 30), (30, 60), (60, 80), (80, 100)], "h": [(0, 50), (50, 100)]}
    black = {"w3", "h1"}
    d.write("segments", [_segment(f"{v}{k}", v, a, b) for v, s in spans.items() for k, (a, b) in enumerate(s)])
    d.write("quality_signals", [dict(segment_id=f"{v}{k}", video_id=v, duration_s=(b - a) / 10, width=64, height=48,
                                     quality_keep=f"{v}{k}" not in black, quality_reason="black" * (f"{v}{k}" in black))
                                for v, s in spans.items() for k, (a, b) in enumerate(s)])
    rows = []
    for v, s in spans.items():
        rows.append(dict(_sample(len(rows), "x", "dense_caption", v, 10, 100), sample_id=f"dense_{v}"))
        rows += [dict(_sample(len(rows), "x", "segment_caption", v, 10, 100), sample_id=f"seg_{v}{k}",
                      clip_start_frame=a, clip_end_frame=b) for k, (a, b) in enumerate(s)]
    d.write("samples", rows)
    kept = {r["sample_id"] for r in manifest(mix(d, "natural", holdout=[], filter="keep")[0])}
    assert kept == {"dense_w", "seg_w0", "seg_w1", "seg_w2", "seg_h0"}
    strict = {r["sample_id"] for r in manifest(mix(d, "natural", name="strict", holdout=[], filter="keep",
                                                   max_dropped_share=0.1)[0])}
    assert strict == kept - {"dense_w"}
    shares = d.sql(pool_sql(load_mix_recipe("natural", {"holdout": []})) + " SELECT sample_id, dropped_share FROM pool")
    assert {r["sample_id"]: r["dropped_share"] for r in shares.to_pylist()}["dense_w"] == pytest.approx(0.2)


def test_a_split_without_some_domains_warns_in_the_summary_balance_json_and_report(tmp_path, capsys):
    """Splits are per video: with one video per domain, train held only sports; the mixture said share 1.000,
    error 0 and nothing else. Now balance.json, the printed summary and the report name the missing domains."""
    from densevid.cli import main
    from report.build import write_report

    small = Dataset(tmp_path / "d")
    small.write("samples", [_sample(i, "sports", "dense_caption", "v1", 10, 100) for i in range(3)] +
                [_sample(10, "cooking", "dense_caption", "v2", 10, 100, "val"),
                 _sample(11, "news", "temporal_grounding", "v3", 10, 100, "test")])
    small.write("videos", [_video("v1", "sports", "yt", 100), _video("v2", "cooking", "yt", 100),
                           _video("v3", "news", "yt", 100)])
    assert main(["mix", "balanced", "--data", str(small.root)]) == 0
    out = capsys.readouterr().out
    report = json.loads((small.root / "mixtures" / "balanced" / "balance.json").read_text())
    assert report["missing_domains"] == ["cooking", "news"] and report["missing_tasks"] == ["temporal_grounding"]
    assert report["warnings"] == [
        "split 'train' has no samples of domains cooking, news (the dataset has them in test, val); this mixture "
        "covers domains sports only",
        "split 'train' has no samples of tasks temporal_grounding (the dataset has them in test); this mixture "
        "covers tasks dense_caption only"]
    assert f"warning: {report['warnings'][0]}" in out and f"warning: {report['warnings'][1]}" in out
    val = json.loads((small.root / "mixtures" / "balanced-val" / "balance.json").read_text())
    assert val["missing_domains"] == ["news", "sports"] and val["missing_tasks"] == ["temporal_grounding"]
    assert f"warning: {val['warnings'][0]}" in out

    site = tmp_path / "site"
    write_report(small.root, site, progress=False, thumbnails=False)
    index = (site / "index.html").read_text()
    assert '<td class="failure">lacks domains cooking, news; lacks tasks temporal_grounding</td>' in index
    page = (site / "mixtures" / "balanced.html").read_text()
    assert '<p class="failure warning">warning: split &#x27;train&#x27; has no samples of domains cooking, news' in page
