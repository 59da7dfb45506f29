import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.domains import DomainResolver, load_manifest, parse_rule
from curation.executors import run_stage
from curation.stages import IngestStage
from curation.store import Dataset


def test_folder_rules_and_unlabeled(tmp_path):
    r = DomainResolver(tmp_path, rules=[parse_rule("*cook*=egocentric")])
    assert r.lookup(tmp_path / "cinematic" / "a.mp4")["domain"] == "cinematic"
    assert r.lookup(tmp_path / "x" / "cook1.mp4")["domain"] == "egocentric"  # rules beat folders
    assert r.lookup(tmp_path / "loose.mp4")["domain"] == "unlabeled"


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_manifest_formats(tmp_path, fmt):
    rows = [dict(uri="cinematic/run.mp4", domain="sports", source="yt", license="cc-by"),
            dict(uri="cook.mp4", domain=None, source="own", license="private")]
    path = tmp_path / f"m.{fmt}"
    if fmt == "csv":
        path.write_text("uri,domain,source,license\ncinematic/run.mp4,sports,yt,cc-by\ncook.mp4,,own,private\n")
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    m = load_manifest(path)
    r = DomainResolver(tmp_path / "v", manifest=m)
    assert r.lookup(tmp_path / "v" / "cinematic" / "run.mp4") == {"domain": "sports", "source": "yt", "license": "cc-by"}
    # no domain in the manifest: fall back to the folder, keep source and license
    assert r.lookup(tmp_path / "v" / "egocentric" / "cook.mp4") == {"domain": "egocentric", "source": "own",
                                                                     "license": "private"}


def test_manifest_without_uri_is_explained(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path,domain\na.mp4,x\n")
    with pytest.raises(ValueError, match="needs a 'uri' column"):
        load_manifest(p)
    with pytest.raises(ValueError, match="GLOB=DOMAIN"):
        parse_rule("nodomain")


def test_ingest_uses_the_manifest(corpus, tmp_path):
    m = tmp_path / "m.csv"
    m.write_text("uri,domain,source,license\ninstructional/tie.mp4,howto,web,cc0\n")
    ds = Dataset(tmp_path / "d")
    run_stage(IngestStage(videos=corpus, manifest=m), ds, progress=False)
    got = {v["uri"].split("/")[-1]: (v["domain"], v["source"], v["license"]) for v in ds.rows("videos")}
    assert got["tie.mp4"] == ("howto", "web", "cc0")
    assert got["run.mp4"] == ("cinematic", "local", None)
