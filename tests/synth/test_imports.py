"""Public annotations come in as ground truth: parsers on real-looking text, then imports into a dataset of
ingested generated videos (exact rows, failures naming file and line, nothing new on a second import), and
the samples the task builders make from the imported rows."""

import json
import shutil

import pytest

from curation.executors import run_stage
from curation.stages import IngestStage
from curation.store import Dataset
from synth.imports import (Malformed, Problem, TOLERANCE_S, import_annotations, load_map, parse_activitynet,
                           parse_charades_sta, parse_hcstvg, xywh_to_grid)
from synth.sentences import split_charades, split_sentence
from synth.tasks import BUILDERS, VideoRows
from synth.videos import render_video

# name -> fps: Charades, ActivityNet (matched without and with the v_ prefix), HC-STVG (25 fps, 200 frames)
VIDEOS = {"CHA01": 24.0, "ANET01": 24.0, "v_ANET02": 24.0, "55_vfjywN5CN0Y": 25.0}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """Four 8-second generated videos, ingested once; each test gets its own copy of the dataset."""
    root = tmp_path_factory.mktemp("import_videos")
    for seed, (name, fps) in enumerate(VIDEOS.items()):
        render_video(root / "movies" / f"{name}.mp4", "movies", 8.0, seed, fps=fps, size=(64, 48), n_scenes=2,
                     n_fades=0)
    data = tmp_path_factory.mktemp("import_ds") / "dataset"
    ds = Dataset(data)
    assert run_stage(IngestStage(videos=root), ds, progress=False).n_failed == 0
    return data


@pytest.fixture
def ds(ingested, tmp_path):
    shutil.copytree(ingested, tmp_path / "dataset")
    return Dataset(tmp_path / "dataset")


def videos_by_name(ds):
    return {v["uri"].rsplit("/", 1)[1].split(".")[0]: v for v in ds.rows("videos")}


def grounding(ds, model):
    rows = ds.sql("SELECT * FROM grounding WHERE model = ? ORDER BY start_s, phrase, action", [model]).to_pylist()
    return [{k: r[k] for k in ("video_id", "segment_id", "phrase", "action", "start_s", "end_s", "boxes", "source")}
            for r in rows]


def failures(ds):
    return {r["item_id"]: r for r in ds.rows("failures") if r["stage"] == "import"}


def n_files(ds):
    return sum(len(ds.files(t)) for t in ("grounding", "dense_captions", "failures"))


# --- phrase and action ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sentence, phrase, action", [
    # Charades-STA (charades_sta_train.txt style)
    ("a person is putting a book on a shelf.", "the person", "put a book on a shelf"),
    ("person turn a light on.", "the person", "turn a light on"),
    ("person begins to play on a phone.", "the person", "begin to play on a phone"),
    ("person sitting on a couch.", "the person", "sit on a couch"),
    ("a person is smiling.", "the person", "smile"),
    ("person opening a door then sits down.", "the person", "open a door then sit down"),
    ("A person holding a broom runs into the room.", "a person holding a broom", "run into the room"),
])
def test_charades_sentences_read_as_when_does_the_person(sentence, phrase, action):
    assert split_charades(sentence) == (phrase, action)


@pytest.mark.parametrize("sentence, phrase, action", [
    # ActivityNet Captions
    ("A man is seen speaking to the camera while holding up a tool.", "a man",
     "speak to the camera while holding up a tool"),
    (" He then picks up a ball and throws it.", "he", "pick up a ball and throw it"),
    ("A young woman is seen standing in a room and leads into her dancing.", "a young woman",
     "stand in a room and lead into her dancing"),
    ("The camera pans around a room.", "the camera", "pan around a room"),
    ("A close up of a cake is shown.", "a close up of a cake", "appear"),
    ("A group of people dance in a circle.", "a group of people", "dance in a circle"),
    # HC-STVG (the repository's sample test.json)
    ("The man in brown clothes pours the contents of the bag into his hand, and then takes out a piece of paper "
     "from the bag and opens it.", "the man in brown clothes",
     "pour the contents of the bag into his hand, and then take out a piece of paper from the bag and open it"),
    ("The man in the hat reaches out and points to the front, then puts his hand down and turns his head.",
     "the man in the hat", "reach out and point to the front, then put his hand down and turn his head"),
    ("The woman in the black dress turns around.", "the woman in the black dress", "turn around"),
    ("The man wearing a hat walks to the door.", "the man wearing a hat", "walk to the door"),
    ("The man who is standing up walks away.", "the man who is standing up", "walk away"),
    ("The man on the left turns his head.", "the man on the left", "turn his head"),
    # no verb at all, and a verb outside the list after a one-word subject
    ("A man and his dog.", "a man and his dog", "appear"),
    ("person zorbs the table.", "person", "zorb the table"),
])
def test_a_sentence_splits_into_subject_and_base_form_verb_phrase(sentence, phrase, action):
    assert split_sentence(sentence) == (phrase, action)


# --- parsers ----------------------------------------------------------------------------------------------------

CHARADES = """\
CHA01 1.5 4.0##person opens a door.
CHA01 0.0 2.5##a person is putting a book on a shelf.
CHA01 2.0 8.6##person sitting on a couch.

CHA01 3.0 12.0##person turn a light on.
NOPE1 0.0 1.0##person eats.
CHA01 zero 2.0##person runs.
CHA01 2.0 1.0##person runs.
CHA01 1.0 2.0 person runs.
CHA01 -0.4 1.0##person stands up.
"""


def test_charades_lines_parse_with_their_line_numbers():
    parsed = parse_charades_sta(CHARADES)
    entries = [p for p in parsed if not isinstance(p, Problem)]
    assert [(e.where, e.key) for e in entries] == [("line 1", "CHA01"), ("line 2", "CHA01"), ("line 3", "CHA01"),
                                                   ("line 5", "CHA01"), ("line 6", "NOPE1"), ("line 10", "CHA01")]
    a = entries[0].annotations[0]
    assert (a.sentence, a.phrase, a.action, a.start_s, a.end_s) == ("person opens a door.", "the person",
                                                                     "open a door", 1.5, 4.0)
    problems = {p.where: str(p.error) for p in parsed if isinstance(p, Problem)}
    assert set(problems) == {"line 7", "line 8", "line 9"}
    assert problems["line 7"].startswith("start 'zero' is not a number")
    assert problems["line 8"] == "span [2.0, 1.0] does not end after it starts"
    assert "no '##'" in problems["line 9"] and "VIDEO START END##sentence" in problems["line 9"]


def test_activitynet_entries_keep_sentence_numbers():
    parsed = parse_activitynet(json.dumps({
        "v_QOlSCBRmfWY": {"duration": 82.73, "timestamps": [[0.83, 19.86], [17.37, 60.81], [56.26, 79.42]],
                          "sentences": ["A young woman is seen standing in a room and leads into her dancing.",
                                        " The girl dances around the room while the camera captures her movements.",
                                        " She continues dancing around the room and ends by laying on the floor."]},
        "v_x": {"duration": 10.0, "timestamps": [[1.0, "late"]], "sentences": ["A dog runs."]},
        "v_y": {"duration": 10.0, "timestamps": [[1.0, 2.0]]},
    }))
    good, bad_sentence, bad_entry = parsed
    assert good.reference and [(a.where, a.start_s, a.end_s, a.phrase) for a in good.annotations] == [
        ("entry v_QOlSCBRmfWY sentence 1", 0.83, 19.86, "a young woman"),
        ("entry v_QOlSCBRmfWY sentence 2", 17.37, 60.81, "the girl"),
        ("entry v_QOlSCBRmfWY sentence 3", 56.26, 79.42, "she")]
    assert good.annotations[2].action == "continue dancing around the room and end by laying on the floor"
    assert isinstance(bad_sentence.annotations[0], Problem)
    assert str(bad_sentence.annotations[0].error) == "end 'late' is not a number"
    assert isinstance(bad_entry, Problem) and bad_entry.where == "entry v_y" and "sentences" in str(bad_entry.error)


def test_hcstvg_tube_from_the_official_fields_v1_and_v2():
    # the first entry is cut from the HC-STVG repository's test.json: boxes are [x, y, w, h] in pixels
    v1 = {"bbox": [[194, 0, 240, 359], [190, 11, 234, 349]], "st_time": 6.501935870542281,
          "ed_time": 11.951935870542554, "img_num": 480, "caption": "The woman in red clothes turns in a circle.",
          "width": 480, "height": 360, "st_frame": 157}
    v2 = {"bbox": [[339, 169, 248, 271]], "st_time": 0.01, "ed_time": 7.17, "img_num": 501,
          "English": "The girl gets up.", "img_size": [480, 656], "st_frame": 1}
    parsed = parse_hcstvg(json.dumps({"55_vfjywN5CN0Y.mp4": v1, "14_wfEOx36N4jA.mp4": v2}))
    (e1,), (e2,) = (p.annotations for p in parsed)
    assert (e1.tube.start_frame, e1.tube.n_frames, e1.tube.aspect) == (156, 480, 480 / 360)
    assert e1.tube.boxes == ((404, 0, 904, 997), (396, 31, 883, 1000))  # 434 / 480, 359 / 360; 360 clipped to 1000
    assert (e1.phrase, e1.action) == ("the woman in red clothes", "turn in a circle")
    assert (e2.tube.start_frame, e2.tube.boxes, e2.sentence) == (0, ((517, 352, 895, 917),), "The girl gets up.")


def test_boxes_clip_to_the_frame_and_one_wholly_outside_is_refused():
    assert xywh_to_grid([576, 432, 128, 96], 640, 480) == (900, 900, 1000, 1000)
    assert xywh_to_grid([-64, 48, 128, 96], 640, 480) == (0, 100, 100, 300)
    with pytest.raises(Malformed, match=r"box 3 \[x, y, w, h\] = \[700, 10, 50, 50\] has no area inside the 640 x 480"):
        xywh_to_grid([700, 10, 50, 50], 640, 480, 3)
    with pytest.raises(Malformed, match="is not"):
        xywh_to_grid([1, 2, 3], 640, 480)


# --- imports into a dataset ----------------------------------------------------------------------------------


def test_charades_import_rows_failures_and_a_second_import_writes_nothing(ds, tmp_path):
    cha = videos_by_name(ds)["CHA01"]
    assert cha["duration_s"] == 8.0
    ds.write("segments", [dict(segment_id="segA", video_id=cha["video_id"], idx=0, start_s=0.0, end_s=4.0,
                               start_frame=0, end_frame=96)])
    path = tmp_path / "charades_sta_test.txt"
    path.write_text(CHARADES)
    result = import_annotations(ds, "charades-sta", path)

    def row(phrase, action, s, e, seg):
        return dict(video_id=cha["video_id"], segment_id=seg, phrase=phrase, action=action, start_s=s, end_s=e,
                    boxes=[], source="ground_truth")

    assert grounding(ds, "charades-sta") == [
        row("the person", "put a book on a shelf", 0.0, 2.5, "segA"),
        row("the person", "stand up", 0.0, 1.0, "segA"),  # -0.4 clamped (within the tolerance)
        row("the person", "open a door", 1.5, 4.0, "segA"),
        row("the person", "sit on a couch", 2.0, 8.0, ""),  # 8.6 clamped to the video's 8.0 s; midpoint 5.0 s
    ]
    got = failures(ds)
    assert set(got) == {f"charades_sta_test.txt:line {n}" for n in (5, 6, 7, 8, 9)}
    assert got["charades_sta_test.txt:line 5"]["error_type"] == "OutsideVideo"
    assert got["charades_sta_test.txt:line 5"]["message"] == (
        "charades_sta_test.txt:line 5: span [3.000, 12.000] s is outside the video's [0, 8.000] s by more than "
        f"the tolerance {TOLERANCE_S:g} s; check that the file is the annotated video (--map), or raise --tolerance-s")
    assert got["charades_sta_test.txt:line 6"]["error_type"] == "UnknownVideo"
    assert "no ingested video is named NOPE1" in got["charades_sta_test.txt:line 6"]["message"]
    assert "--map" in got["charades_sta_test.txt:line 6"]["message"]
    assert got["charades_sta_test.txt:line 7"]["raw"] == "CHA01 zero 2.0##person runs."
    assert (result.written["grounding"], result.written["failures"]) == (4, 5)

    before = n_files(ds)
    again = import_annotations(ds, "charades-sta", path)
    assert (again.written["grounding"], again.written["failures"]) == (0, 0)
    assert (again.stored["grounding"], again.stored["failures"]) == (4, 5) and len(again.failures) == 5
    assert n_files(ds) == before


def test_activitynet_import_writes_reference_dense_captions_and_grounding(ds, tmp_path):
    by_name = videos_by_name(ds)
    path = tmp_path / "val_1.json"
    path.write_text(json.dumps({
        "v_ANET01": {"duration": 8.05, "timestamps": [[2.5, 8.4], [0.0, 3.2]],
                     "sentences": [" He then picks up a ball and throws it.", "A man is seen speaking to the camera."]},
        "ANET02": {"duration": 8.0, "timestamps": [[1.0, 3.0], [2.0, 20.0]],
                   "sentences": ["A woman dances.", "She sits."]},
        "v_MISSING": {"duration": 8.0, "timestamps": [[1.0, 3.0]], "sentences": ["A dog runs."]},
        "v_BAD": {"duration": 8.0, "timestamps": [[1.0, 3.0]], "sentences": []},
    }))
    result = import_annotations(ds, "activitynet", path)
    a1, a2 = by_name["ANET01"]["video_id"], by_name["v_ANET02"]["video_id"]
    assert grounding(ds, "activitynet") == [
        dict(video_id=a1, segment_id="", phrase="a man", action="speak to the camera", start_s=0.0, end_s=3.2,
             boxes=[], source="ground_truth"),
        dict(video_id=a2, segment_id="", phrase="a woman", action="dance", start_s=1.0, end_s=3.0, boxes=[],
             source="ground_truth"),
        dict(video_id=a1, segment_id="", phrase="he", action="pick up a ball and throw it", start_s=2.5, end_s=8.0,
             boxes=[], source="ground_truth"),
    ]
    (dense,) = ds.rows("dense_captions")  # only ANET01: one of ANET02's events failed
    assert (dense["video_id"], dense["model"], dense["renderer"]) == (a1, "reference:activitynet", "seconds")
    assert dense["entries"] == [
        dict(start_s=0.0, end_s=3.2, summary="A man is seen speaking to the camera.", details=""),
        dict(start_s=2.5, end_s=8.0, summary="He then picks up a ball and throws it.", details="")]
    assert dense["rendered"] == ("<0.0 - 3.2 seconds> A man is seen speaking to the camera.\n"
                                 "<2.5 - 8.0 seconds> He then picks up a ball and throws it.")
    got = failures(ds)
    assert {k: v["error_type"] for k, v in got.items()} == {
        "val_1.json:entry ANET02 sentence 2": "OutsideVideo", "val_1.json:entry ANET02 reference": "AnnotationError",
        "val_1.json:entry v_MISSING": "UnknownVideo", "val_1.json:entry v_BAD": "Malformed"}
    assert "v_MISSING or MISSING" in got["val_1.json:entry v_MISSING"]["message"]
    assert "1 of its 2 sentences failed" in got["val_1.json:entry ANET02 reference"]["message"]
    assert (result.written["grounding"], result.written["dense_captions"], result.written["failures"]) == (3, 1, 4)
    again = import_annotations(ds, "activitynet", path)
    assert sum(again.written.values()) == 0 and again.stored["dense_captions"] == 1


HCSTVG_KEY = "55_vfjywN5CN0Y"


def hcstvg_entry(**fields):
    entry = {"bbox": [[64 + 16 * (k // 12), 48, 128, 96] for k in range(48)], "st_time": 1.0, "ed_time": 2.9,
             "img_num": 200, "caption": "The man in the hat reaches out and points to the front.", "width": 640,
             "height": 480, "st_frame": 26}
    return {**entry, **fields}


def test_hcstvg_import_puts_frames_on_the_video_clock_and_boxes_on_the_grid(ds, tmp_path):
    video = videos_by_name(ds)[HCSTVG_KEY]
    assert (video["fps"], video["n_frames"]) == (25.0, 200)
    path = tmp_path / "test_v2.json"
    v2 = {"bbox": [[576, 432, 128, 96]] * 3, "img_num": 200, "English": "The woman in red clothes turns in a circle.",
          "img_size": [480, 640], "st_frame": 101, "st_time": 4.0, "ed_time": 4.1}
    path.write_text(json.dumps({
        f"{HCSTVG_KEY}.mp4": hcstvg_entry(),
        f"{HCSTVG_KEY}.mkv": v2,  # a box partly outside the frame: clipped
        f"{HCSTVG_KEY}.webm": hcstvg_entry(bbox=[[64, 48, 128, 96], [700, 10, 50, 50]]),  # a box wholly outside
        f"{HCSTVG_KEY}.avi": hcstvg_entry(img_num=480),  # made on another encode
        f"{HCSTVG_KEY}.mov": hcstvg_entry(st_frame=180),  # 48 frames from 179: past the end (200 frames)
        "99_unknownvid.mp4": hcstvg_entry(),
    }))
    result = import_annotations(ds, "hc-stvg", path)
    # frames / the video's 25 fps (img_num / 20 would say 10 fps); one box every 12 frames (about 2 per second)
    assert grounding(ds, "hc-stvg") == [
        dict(video_id=video["video_id"], segment_id="", phrase="the man in the hat",
             action="reach out and point to the front", start_s=25 / 25, end_s=73 / 25, source="ground_truth",
             boxes=[dict(t_s=f / 25, x1=x, y1=100, x2=x + 200, y2=300) for f, x in ((25, 100), (37, 125), (49, 150),
                                                                                      (61, 175))]),
        dict(video_id=video["video_id"], segment_id="", phrase="the woman in red clothes", action="turn in a circle",
             start_s=100 / 25, end_s=103 / 25, source="ground_truth",
             boxes=[dict(t_s=4.0, x1=900, y1=900, x2=1000, y2=1000)]),
    ]
    got = failures(ds)
    assert {k: v["error_type"] for k, v in got.items()} == {
        f"test_v2.json:entry {HCSTVG_KEY}.webm": "Malformed", f"test_v2.json:entry {HCSTVG_KEY}.avi": "WrongVideo",
        f"test_v2.json:entry {HCSTVG_KEY}.mov": "OutsideVideo", "test_v2.json:entry 99_unknownvid.mp4": "UnknownVideo"}
    message = {k.rsplit(".", 1)[1]: v["message"] for k, v in got.items()}
    assert "box 1 [x, y, w, h] = [700, 10, 50, 50] has no area inside the 640 x 480 frame" in message["webm"]
    assert "img_num 480 frames, but the video has 200 at 25 fps" in message["avi"]
    assert "span [7.160, 9.080] s is outside the video's [0, 8.000] s" in message["mov"]
    assert result.written["grounding"] == 2
    assert sum(import_annotations(ds, "hc-stvg", path).written.values()) == 0


def test_a_map_matches_annotations_to_videos_by_id_or_uri(ds, tmp_path):
    by_name = videos_by_name(ds)
    (tmp_path / "by_id.csv").write_text(f"annotation_id,video_id\nXYZ99,{by_name['CHA01']['video_id']}\nGONE,nope\n")
    (tmp_path / "by_uri.csv").write_text(f"annotation_id,uri\nQQQ,{by_name['ANET01']['uri']}\n")
    path = tmp_path / "mapped.txt"
    path.write_text("XYZ99 1.0 2.0##person laughs.\nGONE 1.0 2.0##person laughs.\nQQQ 3.0 4.0##person waves.\n")
    import_annotations(ds, "charades-sta", path, mapping=load_map(tmp_path / "by_id.csv"))
    import_annotations(ds, "charades-sta", path, mapping=load_map(tmp_path / "by_uri.csv"))
    rows = grounding(ds, "charades-sta")
    assert [(r["video_id"], r["action"], r["start_s"]) for r in rows] == [
        (by_name["CHA01"]["video_id"], "laugh", 1.0), (by_name["ANET01"]["video_id"], "wave", 3.0)]
    assert "--map sends GONE to video_id nope" in failures(ds)["mapped.txt:line 2"]["message"]
    (tmp_path / "bad.csv").write_text("annotation,video\nA,B\n")
    with pytest.raises(ValueError, match="a map needs annotation_id and video_id"):
        load_map(tmp_path / "bad.csv")


def test_imported_rows_become_samples_with_their_times(ds, tmp_path):
    (tmp_path / "cha.txt").write_text("CHA01 1.5 4.0##person opens a door.\n")
    (tmp_path / "hc.json").write_text(json.dumps({f"{HCSTVG_KEY}.mp4": hcstvg_entry()}))
    import_annotations(ds, "charades-sta", tmp_path / "cha.txt")
    import_annotations(ds, "hc-stvg", tmp_path / "hc.json")
    by_name = videos_by_name(ds)
    rows = ds.sql("SELECT video_id, phrase, action, start_s, end_s, boxes FROM grounding").to_pylist()
    cha = VideoRows(by_name["CHA01"], grounding=[r for r in rows if r["video_id"] == by_name["CHA01"]["video_id"]])
    (draft,) = BUILDERS["temporal_grounding"](cha)
    assert draft.prompt.startswith("When does the person open a door? ") and draft.answer == "<1.5 - 4.0 seconds>"
    hc_id = by_name[HCSTVG_KEY]["video_id"]
    hc = VideoRows(by_name[HCSTVG_KEY], grounding=[r for r in rows if r["video_id"] == hc_id])
    (st,) = BUILDERS["spatio_temporal_grounding"](hc)
    assert st.prompt.startswith("When and where does the man in the hat reach out and point to the front? ")
    assert json.loads(st.answer) == {
        "phrase": "the man in the hat", "time": "<1.0 - 2.9 seconds>",
        "boxes": [{"time": "<1.0 seconds>", "bbox_2d": [100, 100, 300, 300]},
                  {"time": "<1.5 seconds>", "bbox_2d": [125, 100, 325, 300]},
                  {"time": "<2.0 seconds>", "bbox_2d": [150, 100, 350, 300]},
                  {"time": "<2.4 seconds>", "bbox_2d": [175, 100, 375, 300]}]}
