"""What the command does when the system refuses, when it is interrupted, and with mistyped options."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from densevid.cli import main
from densevid.exits import EXIT_SYSTEM


def _empty_mixture(root):
    mixture = root / "dataset" / "mixtures" / "m"
    mixture.mkdir(parents=True)
    pq.write_table(pa.table({"sample_id": pa.array([], pa.string())}), mixture / "manifest.parquet")
    return mixture


def test_an_export_the_system_refuses_is_one_line_and_its_own_exit_status(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder under a file cannot be made, even by root (chmod would not stop root)
    out = blocker / "export"
    code = main(["-q", "export", str(_empty_mixture(tmp_path)), "--format", "swift", "--out", str(out)])
    err = capsys.readouterr().err
    assert (code, EXIT_SYSTEM) == (4, 4)
    assert err == f"densevid export: cannot access {out}: Not a directory\n"


def test_a_read_only_disk_reads_cannot_write(tmp_path):
    import errno
    import os

    from densevid.cli import os_error_line

    e = OSError(errno.EROFS, os.strerror(errno.EROFS), "/x")
    assert os_error_line("export", e) == "densevid export: cannot write /x: Read-only file system"
    assert os_error_line("sql", OSError("Failed to open local file 'a'.\nDetail: [errno 13]")) == \
        "densevid sql: Failed to open local file 'a'. Detail: [errno 13]"
