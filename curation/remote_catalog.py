"""The catalog of a dataset on object storage: an in-memory DuckDB with the same views as ``catalog.duckdb``.

DuckDB reads buckets itself only through its httpfs extension, which is downloaded from DuckDB's own
servers, not from a package registry. So each table is a pyarrow dataset over the table's objects (read
through fsspec) registered in DuckDB, and the views are built over those; when httpfs is already installed
and loads, the views read the objects with it instead. Nothing is written to the bucket: the catalog is
built per connection from the current listing, so it is never stale.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.fs as pafs
from pyarrow.fs import FSSpecHandler

from curation import storage


def connect_remote(ds):
    import duckdb

    from curation.store import SCHEMAS, VIEWS

    con = duckdb.connect(config={"autoinstall_known_extensions": False})  # never download an extension
    tables = ds.all_files()  # one listing of the dataset
    httpfs = _httpfs(con, str(ds.root))
    for table, files in tables.items():
        if httpfs and files:
            con.execute(f"CREATE VIEW {table} AS {_httpfs_select(files)}")
        else:
            con.register(f"_arrow_{table}", _arrow_dataset(files, SCHEMAS[table], ds))
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _arrow_{table}")
    for view, query in VIEWS.items():
        con.execute(f"CREATE VIEW {view} AS {query}")
    return con


def _arrow_dataset(files: list, schema, ds):
    """Lazy: DuckDB scans the objects when a query runs, with projection and filters pushed down; files
    written before a column was added give nulls for it."""
    import pyarrow.dataset as pads

    if not files:
        return schema.empty_table()
    fs, _ = storage.filesystem(str(files[0]))
    listed = {storage.filesystem(str(f))[1]: (str(f), ds.size_of(f)) for f in files}
    return pads.dataset(list(listed), schema=schema, format="parquet",
                        filesystem=pafs.PyFileSystem(ListedObjects(fs, listed)))


class ListedObjects(FSSpecHandler):
    """pyarrow's access to listed objects: their sizes come from the listing, so neither finding the files
    nor opening them asks for a size (a HEAD each)."""

    def __init__(self, fs, listed: dict[str, tuple[str, int | None]]):
        super().__init__(fs)
        self.listed = listed  # path in the filesystem -> (URL, size or None)

    def get_file_info(self, paths):
        if any(self.listed.get(p, ("", None))[1] is None for p in paths):
            return super().get_file_info(paths)
        return [pafs.FileInfo(p, pafs.FileType.File, size=self.listed[p][1]) for p in paths]

    def open_input_file(self, path):
        url, size = self.listed.get(path, ("", None))
        if size is None:
            return super().open_input_file(path)
        return pa.PythonFile(storage.open_input(url, immutable_size=size), mode="r")


def _httpfs(con, root: str) -> bool:
    """httpfs for s3:// when it is installed (never installed from here: that would download it)."""
    if not root.startswith("s3://") or os.environ.get("DENSEVID_DUCKDB_HTTPFS") == "0":
        return False
    try:
        con.execute("LOAD httpfs")
    except Exception:
        return False
    opts = storage.storage_options()
    endpoint = opts.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    secret = {"TYPE": "s3", "KEY_ID": opts.get("key") or os.environ.get("AWS_ACCESS_KEY_ID"),
              "SECRET": opts.get("secret") or os.environ.get("AWS_SECRET_ACCESS_KEY"),
              "REGION": os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        secret.update(ENDPOINT=host or scheme, USE_SSL=str(scheme == "https").lower(), URL_STYLE="path")
    parts = [f"{k} {v}" if k in ("TYPE", "USE_SSL") else f"{k} '{v}'" for k, v in secret.items() if v]
    con.execute(f"CREATE SECRET densevid ({', '.join(parts)})")
    return True


def _httpfs_select(files: list) -> str:
    urls = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"SELECT * FROM read_parquet([{urls}], union_by_name=true)"
