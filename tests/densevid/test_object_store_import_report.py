"""`densevid import` and `ingest --manifest` with their input files on a bucket, and `densevid report` over a
dataset on a bucket into a local folder or into the bucket (a local S3 server)."""

from pathlib import Path

from s3server import bucket, counted_requests, s3_endpoint, upload  # noqa: F401  (fixtures)

from curation import storage
from curation.store import Dataset
from densevid.cli import EXIT_OK, EXIT_USAGE, main


def _put(url: str, text: str) -> str:
    fs, inner = storage.filesystem(url)
    fs.pipe_file(inner, text.encode())
    return url


def test_import_reads_its_annotation_file_and_map_from_a_bucket(corpus, bucket, capsys):
    videos, data = upload(corpus, f"{bucket}/videos"), f"{bucket}/ds"
    assert main(["-q", "ingest", "--videos", videos, "--data", data]) == EXIT_OK
    annotations = _put(f"{bucket}/ann/charades.txt", "A1 1.0 2.5##person opens a door.\nA2 0.5 1.5##person sits.\n")
    # the file stems are not the annotation ids: only the map, its uris relative to its folder, finds them
    mapping = _put(f"{bucket}/ann/map.csv",
                   "annotation_id,uri\nA1,../videos/cinematic/run.mp4\nA2,../videos/egocentric/cook.mp4\n")
    capsys.readouterr()
    assert main(["import", "--format", "charades-sta", annotations, "--data", data, "--map", mapping]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"import charades-sta {annotations}: 2 lines or entries"
    assert out[1].split() == ["grounding", "2", "written", "0", "already", "stored"]
    ds = Dataset(data)
    uris = {v["video_id"]: v["uri"] for v in ds.rows("videos")}
    assert sorted((uris[g["video_id"]], g["start_s"], g["end_s"], g["action"]) for g in ds.rows("grounding")) == [
        (f"{videos}/cinematic/run.mp4", 1.0, 2.5, "open a door"), (f"{videos}/egocentric/cook.mp4", 0.5, 1.5, "sit")]

    assert main(["import", "--format", "charades-sta", f"{bucket}/ann/gone.txt", "--data", data]) == EXIT_USAGE
    assert capsys.readouterr().err == f"error: {bucket}/ann/gone.txt: no such annotation file\n"
    assert main(["import", "--format", "charades-sta", "s3://no-such-bucket-here/a.txt", "--data", data]) == EXIT_USAGE
    assert capsys.readouterr().err == ("error: s3://no-such-bucket-here/a.txt: no such bucket 'no-such-bucket-here'; "
                                       "create it or fix the URL\n")


def test_ingest_takes_its_manifest_from_a_bucket(corpus, bucket, capsys):
    videos, data = upload(corpus, f"{bucket}/videos"), f"{bucket}/ds"
    manifest = _put(f"{bucket}/meta/manifest.csv",
                    f"uri,domain,source\n{videos}/cinematic/run.mp4,sports,archive\ncook.mp4,kitchen,lab\n")
    assert main(["-q", "ingest", "--videos", videos, "--manifest", manifest, "--data", data]) == EXIT_OK
    got = sorted((Path(v["uri"]).name, v["domain"], v["source"]) for v in Dataset(data).rows("videos"))
    assert got == [("cook.mp4", "kitchen", "lab"), ("run.mp4", "sports", "archive"),
                   ("tie.mp4", "instructional", "local")]

    capsys.readouterr()
    gone = f"{bucket}/meta/gone.csv"
    assert main(["-q", "ingest", "--videos", videos, "--manifest", gone, "--data", f"{bucket}/other"]) == EXIT_USAGE
    assert f"--manifest {gone} not found" in capsys.readouterr().err


def _site(root) -> dict[str, bytes]:
    """Every file of a site (local folder or bucket prefix) by its path relative to the root."""
    if not storage.is_url(str(root)):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in Path(root).rglob("*") if p.is_file()}
    fs, inner = storage.filesystem(str(root))
    return {p[len(inner) + 1:]: fs.cat_file(p) for p in fs.find(inner)}


def test_report_of_a_dataset_on_a_bucket_into_a_folder_or_into_the_bucket(corpus, bucket, tmp_path, capsys):
    local = tmp_path / "ds"
    assert main(["-q", "ingest", "--videos", str(corpus), "--data", str(local)]) == EXIT_OK
    assert main(["-q", "split", "--data", str(local)]) == EXIT_OK
    data = upload(local, f"{bucket}/ds")
    assert main(["-q", "report", "--data", str(local), "--out", str(tmp_path / "from-disk")]) == EXIT_OK
    assert main(["-q", "report", "--data", data, "--out", str(tmp_path / "from-bucket")]) == EXIT_OK
    assert main(["-q", "report", "--data", data, "--out", f"{bucket}/site"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("report: 3 videos, 0 mixtures; pages ")
    assert lines[-1].endswith(f"-> {bucket}/site/index.html")

    want = _site(tmp_path / "from-disk")
    thumbs = sorted(p for p in want if p.startswith("thumbs/"))
    assert len(thumbs) >= 3 * 3  # a few frames of each video
    for site in (_site(tmp_path / "from-bucket"), _site(f"{bucket}/site")):
        assert sorted(site) == sorted(want)
        assert [site[p] for p in thumbs] == [want[p] for p in thumbs]  # the same frames, cut the same way
        videos = sorted(p for p in want if p.startswith("videos/"))
        assert [site[p] for p in videos] == [want[p] for p in videos]

    with counted_requests() as requests:  # a rerun: the site is listed once, nothing is asked per thumbnail
        assert main(["-q", "report", "--data", data, "--out", f"{bucket}/site"]) == EXIT_OK
    assert "pages 0 written" in capsys.readouterr().out
    root = f"{bucket[5:]}/site"
    assert [r for r in requests if root in r] == [
        f"LIST {root}/", f"GET {root}/.report-state.json",
        *(f"GET {root}/assets/{name}" for name in ("report.css", "report.js", "videos.js"))]


def test_report_into_a_missing_bucket_is_one_line(corpus, tmp_path, s3_endpoint, capsys):
    local = tmp_path / "ds"
    assert main(["-q", "ingest", "--videos", str(corpus), "--data", str(local)]) == EXIT_OK
    capsys.readouterr()
    assert main(["-q", "report", "--data", str(local), "--out", "s3://no-such-bucket-here/site"]) == EXIT_USAGE
    assert capsys.readouterr().err == ("error: s3://no-such-bucket-here/site: no such bucket 'no-such-bucket-here'; "
                                       "create it or fix the URL\n")
    assert main(["-q", "report", "--data", "s3://no-such-bucket-here/ds", "--out", str(tmp_path / "site")]) == EXIT_USAGE
    assert not (tmp_path / "site").exists()
