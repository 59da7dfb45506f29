"""densevid export: each format read the way its trainer reads it, with Qwen's own video reader and the
Qwen3-VL processor; the times of the targets are on the clock of the `<t seconds>` markers the model sees."""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.frames import sample_indices
from curation.store import SCHEMAS, Dataset
from curation.times import parse_times
from curation.video import read_frames
from synth.tasks import messages_json, st_grounding_answer

FPS = 24.0
N_FRAMES = 240  # 10 s
CUT_FRAME = 156  # red before, blue from here: 6.5 s on the source clock
CLIP = (96, 216)  # 4.0 s .. 9.0 s: the cut is at 2.5 s on the clip's clock
RED, BLUE = (220, 40, 40), (40, 80, 230)
TG_PROMPT = "When does the screen turn blue? Answer with the time span as <start - end seconds>."
ST_PROMPT = ("Between <00:00:05 - 00:00:08>, when and where is the blue screen? Give the time span as "
             "<start - end seconds> and, at a few times <t seconds>, its box.")
ST_ANSWER = st_grounding_answer("the blue screen", 6.5, 9.0, [
    dict(t_s=6.5, x1=0, y1=0, x2=1000, y2=1000), dict(t_s=8.25, x1=0, y1=0, x2=1000, y2=1000)])
DENSE = "<0.0 - 6.5 seconds> A red screen. <6.5 - 10.0 seconds> A blue screen."


def write_two_colour_video(path: Path) -> None:
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=int(FPS))
        s.width, s.height, s.pix_fmt = 160, 128, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "20", "g": "48"}
        for f in range(N_FRAMES):
            img = np.empty((128, 160, 3), np.uint8)
            img[:] = RED if f < CUT_FRAME else BLUE
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)


def sample_row(sample_id, task, video_id, uri, start, end, prompt, answer, repeat=0):
    row = {f.name: None for f in SCHEMAS["samples"]}
    row.update(sample_id=sample_id, task=task, video_id=video_id, uri=str(uri), clip_start_s=start / FPS,
               clip_end_s=end / FPS, clip_start_frame=start, clip_end_frame=end, video_n_frames=N_FRAMES,
               frame_indices=sample_indices(start, end, FPS), fps=FPS, messages=messages_json(prompt, answer),
               domain="demo", split="train", n_text_tokens=20, n_visual_tokens=64, code_version="test")
    return dict(row, repeat=repeat, weight=1.5)  # an unknown extra column rides along


def write_manifest(mixture: Path, rows: list[dict], drop: tuple[str, ...] = ()) -> Path:
    mixture.mkdir(parents=True)
    table = pa.Table.from_pylist(rows)
    pq.write_table(table.drop_columns(list(drop)), mixture / "manifest.parquet")
    return mixture


@pytest.fixture(scope="module")
def mixture(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("exp") / "dataset"
    (root / "videos").mkdir(parents=True)
    video = root / "videos" / "cut.mp4"
    write_two_colour_video(video)
    broken = root / "videos" / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    rows = [
        sample_row("s_tg", "temporal_grounding", "v_cut", video, *CLIP, TG_PROMPT, "<6.5 - 9.0 seconds>"),
        sample_row("s_tg", "temporal_grounding", "v_cut", video, *CLIP, TG_PROMPT, "<6.5 - 9.0 seconds>", repeat=1),
        sample_row("s_st", "spatio_temporal_grounding", "v_cut", video, *CLIP, ST_PROMPT, ST_ANSWER),
        sample_row("s_broken", "temporal_grounding", "v_broken", broken, 24, 72, TG_PROMPT, "<1.5 - 2.0 seconds>"),
        sample_row("s_whole", "dense_caption", "v_cut", video, 0, N_FRAMES, "Describe this video.", DENSE),
        sample_row("s_outside", "temporal_grounding", "v_cut", video, 0, 96, TG_PROMPT, "<6.5 - 9.0 seconds>"),
    ]
    assert json.loads(rows[0]["messages"]) == [  # the stored chat the export starts from
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": TG_PROMPT}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<6.5 - 9.0 seconds>"}]}]
    return write_manifest(root / "mixtures" / "mix", rows)


@pytest.fixture(scope="module")
def exported(mixture, tmp_path_factory):
    from mixtures.export import export_mixture

    out = tmp_path_factory.mktemp("out") / "export"
    return export_mixture(mixture, out, "qwen,llamafactory,swift,hf", progress=False)


# --- what each trainer reads -----------------------------------------------------------------------------


def _split_video(text: str, video: str) -> list[dict]:
    """A human text with `<video>` as content items, as qwen-vl-finetune's _build_messages splits it."""
    content = []
    for seg in re.split(r"(<video>)", text):
        if seg == "<video>":
            content.append({"type": "video", "video": video})
        elif seg.strip():
            content.append({"type": "text", "text": seg.strip()})
    return content


def consumer_view(fmt: str, out: Path, index: int) -> tuple[str, list[dict]]:
    """(video file, chat with the video item) of exported record ``index``, resolved by the trainer's rules."""
    if fmt == "qwen":
        scope = {"data_dict": {}}
        exec((out / "qwen_data_dict.py").read_text(), scope)  # the snippet a user pastes into data/__init__.py
        (entry,) = scope["data_dict"].values()
        rec = json.loads(Path(entry["annotation_path"]).read_text())[index]
        video = str((Path(entry["data_path"]) / rec["video"]).resolve())  # their _make_abs_paths
        chat = [{"role": "user", "content": _split_video(t["value"], video)} if t["from"] == "human" else
                {"role": "assistant", "content": [{"type": "text", "text": t["value"]}]} for t in rec["conversations"]]
        return video, chat
    if fmt in ("llamafactory", "swift"):
        if fmt == "llamafactory":
            (entry,) = json.loads((out / "dataset_info.json").read_text()).values()
            assert entry["formatting"] == "sharegpt"
            rec = json.loads((out / entry["file_name"]).read_text())[index]
            cols, tags = entry["columns"], entry["tags"]
            media_dir = str(out)  # media_dir defaults to dataset_dir, the export folder
        else:
            rec = json.loads((out / "swift.jsonl").read_text().splitlines()[index])
            cols = {"messages": "messages", "videos": "videos"}
            tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
            media_dir = str(out)  # ROOT_IMAGE_DIR
        (path,) = rec[cols["videos"]]
        video = os.path.join(media_dir, path)
        assert os.path.isfile(video)
        turns = rec[cols["messages"]]
        assert sum(t[tags["content_tag"]].count("<video>") for t in turns) == 1
        chat = [{"role": "user", "content": _split_video(t[tags["content_tag"]], video)}
                if t[tags["role_tag"]] == tags["user_tag"] else
                {"role": "assistant", "content": [{"type": "text", "text": t[tags["content_tag"]]}]} for t in turns]
        return video, chat
    from datasets import load_dataset

    rec = load_dataset(str(out), split="train", cache_dir=str(out.parent / "hf_cache"))[index]
    video = os.path.join(str(out), rec["video"])
    chat = [{"role": m["role"], "content": [{"type": "video", "video": video} if c["type"] == "video" else
                                            {"type": "text", "text": c["text"]} for c in m["content"]]}
            for m in rec["messages"]]
    return video, chat


def model_view(processor, chat: list[dict]):
    """What the model gets: Qwen's reader at its default fps, then the processor; markers and sampled frames."""
    from qwen_vl_utils import process_vision_info

    prompt = [m for m in chat if m["role"] == "user"]
    _, videos, kwargs = process_vision_info(prompt, return_video_kwargs=True, return_video_metadata=True,
                                            image_patch_size=16)
    (video, meta), = videos
    text = processor.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], videos=[video], video_metadata=[meta], do_resize=False, return_tensors="pt",
                       **kwargs)
    decoded = processor.tokenizer.decode(inputs["input_ids"][0])
    markers = [float(t) for t in re.findall(r"<(\d+(?:\.\d+)?) seconds><\|vision_start\|>", decoded)]
    return video, meta, markers


def is_blue(frame) -> bool:
    r, _, b = np.asarray(frame, np.float32).reshape(3, -1).mean(axis=1)  # CHW
    return b > r


@pytest.mark.parametrize("fmt", ["qwen", "llamafactory", "swift", "hf"])
def test_each_trainer_sees_the_cut_at_the_rebased_time(fmt, exported, tiny_model):
    from model.loader import load_processor

    processor = load_processor(tiny_model)
    video, chat = consumer_view(fmt, exported.out, 0)
    assert video == str(exported.out / "clips" / "v_cut" / "96-216.mp4")
    answer = chat[-1]["content"][0]["text"]
    assert answer == "<2.5 - 5.0 seconds>"  # 6.5 - 9.0 s on the source clock, minus the clip's 4.0 s
    frames, meta, markers = model_view(processor, chat)
    fps, idx = meta["fps"], list(meta["frames_indices"])
    assert fps == FPS and meta["total_num_frames"] == CLIP[1] - CLIP[0]
    times = [i / fps for i in idx]
    step = times[1] - times[0]
    # the markers are the processor's pair means on the clip's clock, from 0 to the clip's length
    assert markers == pytest.approx([round((times[i] + times[i + 1]) / 2, 1) for i in range(0, len(times), 2)], abs=1e-9)
    assert 0 <= markers[0] and markers[-1] <= (CLIP[1] - CLIP[0]) / FPS
    # every time in the target is on the markers' clock ...
    for t in parse_times(answer):
        assert markers[0] - step <= t <= markers[-1] + step
    # ... and the source-clock time would not be
    assert 6.5 > markers[-1] + step
    # the colour changes at the rebased time, within one sampled-frame step
    blue = [is_blue(f) for f in frames]
    first = blue.index(True)
    assert not any(blue[:first]) and all(blue[first:])
    start = parse_times(answer)[0]
    assert times[first - 1] < start <= times[first] and times[first] - times[first - 1] <= step + 1e-9
    # the marker of the first patch that shows blue is within one patch of the answer's start
    group = first // 2
    assert abs(markers[group] - start) <= 2 * step


@pytest.mark.parametrize("fmt", ["qwen", "llamafactory", "swift", "hf"])
def test_json_answers_and_hms_prompts_are_on_the_clip_clock(fmt, exported, tiny_model):
    from model.loader import load_processor

    video, chat = consumer_view(fmt, exported.out, 2)  # s_st: same clip, one file
    assert video == str(exported.out / "clips" / "v_cut" / "96-216.mp4")
    answer = json.loads(chat[-1]["content"][0]["text"])
    assert answer["time"] == "<2.5 - 5.0 seconds>"
    assert [b["time"] for b in answer["boxes"]] == ["<2.5 seconds>", "<4.2 seconds>"]  # 6.5, 8.25 - 4.0
    prompt = next(c["text"] for c in chat[0]["content"] if c["type"] == "text")
    assert prompt.startswith("Between <00:00:01 - 00:00:04>, when and where")
    assert "<start - end seconds>" in prompt and "<t seconds>" in prompt  # format hints stay as they were
    _, _, markers = model_view(load_processor(tiny_model), chat)
    for t in parse_times(chat[-1]["content"][0]["text"]) + parse_times(prompt):
        assert markers[0] - 1.0 <= t <= markers[-1] + 1.0


def test_the_clip_is_frame_accurate(exported, mixture):
    clip = mixture.parent.parent / "clips" / "v_cut" / "96-216.mp4"
    assert clip.exists() and os.path.samefile(clip, exported.out / "clips" / "v_cut" / "96-216.mp4")
    k = CUT_FRAME - CLIP[0]
    frames = read_frames(clip, [0, k - 1, k, CLIP[1] - CLIP[0] - 1])
    src = read_frames(mixture.parent.parent / "videos" / "cut.mp4", [CLIP[0], CUT_FRAME - 1, CUT_FRAME, CLIP[1] - 1])
    colour = [tuple(int(v) for v in f[64, 80]) for f in frames]
    assert [c[2] > c[0] for c in colour] == [False, False, True, True]
    assert np.abs(frames.astype(int) - src.astype(int)).max() <= 6  # the same pictures, re-encoded


def test_repeated_rows_export_once_each_and_share_one_clip(exported):
    qwen = json.loads((exported.out / "qwen.json").read_text())
    assert len(qwen) == 4 and qwen[0] == qwen[1]
    assert [r["video"] for r in qwen[:3]] == ["clips/v_cut/96-216.mp4"] * 3
    assert len(json.loads((exported.out / "llamafactory.json").read_text())) == 4
    assert len((exported.out / "swift.jsonl").read_text().splitlines()) == 4
    assert sorted(p.name for p in (exported.out / "clips").rglob("*.mp4")) == ["96-216.mp4"]
    assert exported.rows == {"qwen": 4, "llamafactory": 4, "swift": 4, "hf": 4}
    assert (exported.rows_in, exported.clips_cut, exported.clips_reused) == (6, 1, 0)


def test_whole_video_samples_keep_their_uri_and_times(exported, mixture):
    video = str((mixture.parent.parent / "videos" / "cut.mp4").resolve())
    qwen = json.loads((exported.out / "qwen.json").read_text())[3]
    assert qwen == {"video": video, "conversations": [{"from": "human", "value": "<video>\nDescribe this video."},
                                                      {"from": "gpt", "value": DENSE}]}
    lf = json.loads((exported.out / "llamafactory.json").read_text())[3]
    assert lf == {"messages": [{"role": "user", "content": "<video>Describe this video."},
                               {"role": "assistant", "content": DENSE}], "videos": [video]}
    assert json.loads((exported.out / "swift.jsonl").read_text().splitlines()[3]) == lf


def test_hf_folder_loads_with_declared_features(exported):
    from datasets import load_dataset

    from mixtures.export import hf_features

    ds = load_dataset(str(exported.out), cache_dir=str(exported.out.parent / "hf_cache_features"))
    assert list(ds) == ["train"]
    train = ds["train"]
    assert train.features == hf_features()
    assert train["sample_id"] == ["s_tg", "s_tg", "s_st", "s_whole"]
    assert train["repeat"] == [0, 1, 0, 0]
    assert train["clip"] == [True, True, True, False]
    assert train["time_offset_s"] == [4.0, 4.0, 4.0, 0.0]
    assert (train["source_start_s"][0], train["source_end_s"][0], train["n_frames"][0]) == (4.0, 9.0, 120)
    assert train["messages"][0] == [
        {"role": "user", "content": [{"type": "video", "text": None}, {"type": "text", "text": TG_PROMPT}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<2.5 - 5.0 seconds>"}]}]
    assert train["messages"][3][1]["content"][0]["text"] == DENSE
    card = (exported.out / "README.md").read_text()
    assert card.startswith("---\nconfigs:\n- config_name: default\n")
    assert exported.files["hf"][-1] == exported.out / "README.md"


def test_bad_rows_become_failures_and_the_rest_is_exported(exported, mixture):
    ds = Dataset(mixture.parent.parent)
    rows = {r["item_id"]: r for r in ds.sql("SELECT * FROM failures WHERE stage = 'export'").to_pylist()}
    assert set(rows) == {"s_broken", "s_outside"}
    assert rows["s_broken"]["error_type"] == "VideoError" and "broken.mp4" in rows["s_broken"]["message"]
    assert rows["s_outside"]["error_type"] == "TimeOutsideClip"
    assert "time 6.5 s in '<6.5 - 9.0 seconds>'" in rows["s_outside"]["message"]
    assert "outside the clip [0, 4.000] s" in rows["s_outside"]["message"]
    assert exported.n_failed == 2 and exported.stats.counts["rows_exported"] == 4
    assert not (mixture.parent.parent / "clips" / "v_broken").exists() or not any(
        (mixture.parent.parent / "clips" / "v_broken").glob("*.mp4"))


def test_second_export_reuses_clips_and_writes_the_same_bytes(exported, mixture):
    from mixtures.export import export_mixture

    files = sorted(p for p in exported.out.rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    clip = mixture.parent.parent / "clips" / "v_cut" / "96-216.mp4"
    stamp = clip.stat().st_mtime_ns
    again = export_mixture(mixture, exported.out, "qwen,llamafactory,swift,hf", progress=False)
    assert (again.clips_cut, again.clips_reused) == (0, 1)
    assert clip.stat().st_mtime_ns == stamp
    assert sorted(p for p in exported.out.rglob("*") if p.is_file()) == files
    assert {p: p.read_bytes() for p in files} == before


def test_cli_exit_status_and_summary(mixture, tmp_path, capsys):
    from densevid import export_cli
    from densevid.cli import main
    from densevid.exits import EXIT_SOME_FAILED, EXIT_USAGE

    ap = argparse.ArgumentParser(prog="densevid")
    ap.add_argument("-q", "--quiet", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    export_cli.add_parsers(sub)
    args = ap.parse_args(["-q", "export", str(mixture), "--format", "qwen,swift", "--out", str(tmp_path / "o")])
    assert export_cli.dispatch(args) == EXIT_SOME_FAILED
    out = capsys.readouterr().out
    assert "clips cut 0, reused 1; failed samples 2" in out
    assert 'data_dict["densevid_mix"] = DENSEVID_MIX' in out
    # no dataset card without hf
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["clips", "qwen.json", "qwen_data_dict.py",
                                                                   "swift.jsonl"]
    assert export_cli.dispatch(argparse.Namespace(cmd="train")) is None
    with pytest.raises(ValueError, match="unknown export format.*'parquet'.*choose from qwen, llamafactory, swift, hf"):
        export_cli.dispatch(ap.parse_args(["export", str(mixture), "--format", "qwen,parquet", "--out", "x"]))
    # densevid's main makes that a one-line message and the usage exit status, 2
    assert main(["export", str(mixture), "--format", "qwen,parquet", "--out", str(tmp_path / "x")]) == EXIT_USAGE == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown export format(s) 'parquet'; choose from") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_manifest_without_repeat_column(mixture, tmp_path):
    from mixtures.export import export_mixture

    rows = pq.read_table(mixture / "manifest.parquet").to_pylist()
    other = write_manifest(mixture.parent / "plain", [r for r in rows if r["sample_id"] == "s_whole"],
                           drop=("repeat", "weight"))
    result = export_mixture(other, tmp_path / "plain", "hf", progress=False)
    assert result.n_failed == 0 and result.rows == {"hf": 1}
    from datasets import load_dataset

    train = load_dataset(str(tmp_path / "plain"), split="train", cache_dir=str(tmp_path / "hf_cache"))
    assert train["repeat"] == [0] and train["video"][0] == rows[4]["uri"]


def test_a_sample_exported_after_it_failed_is_no_longer_an_open_failure(tmp_path):
    from mixtures.export import export_mixture

    root = tmp_path / "dataset"
    video = root / "videos" / "cut.mp4"
    mixture = write_manifest(root / "mixtures" / "mix", [
        sample_row("s_whole", "dense_caption", "v_cut", video, 0, N_FRAMES, "Describe this video.", DENSE)])
    first = export_mixture(mixture, tmp_path / "out", "swift", progress=False)  # the video is not there yet
    opened = lambda: Dataset(root).sql("SELECT item_id FROM open_failures").column("item_id").to_pylist()
    assert first.n_failed == 1 and opened() == ["s_whole"]
    video.parent.mkdir(parents=True, exist_ok=True)
    write_two_colour_video(video)
    again = export_mixture(mixture, tmp_path / "out", "swift", progress=False)
    assert (again.n_failed, again.rows["swift"]) == (0, 1)
    assert opened() == [] and [f["item_id"] for f in Dataset(root).rows("failures")] == ["s_whole"]
