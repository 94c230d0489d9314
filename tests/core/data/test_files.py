"""Atomic writes: a file or folder appears whole or not at all."""

from __future__ import annotations

import errno
import os
import stat
import time

import pytest

from recbench.data.files import (
    WriteError,
    atomic_write,
    remove_stale_temporaries,
    replace_folder,
    write_bytes_atomic,
)


def test_a_file_is_replaced_whole_and_a_failed_write_leaves_the_old_one(tmp_path):
    path = tmp_path / "sub" / "data.bin"
    write_bytes_atomic(path, b"first")
    assert path.read_bytes() == b"first"
    assert atomic_write(path, lambda sink: sink.write(b"second")) == len(b"second")
    assert path.read_bytes() == b"second"

    def fails(sink):
        sink.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(path, fails)
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["data.bin"]  # no temporary file


def test_a_folder_is_replaced_whole_and_a_failed_fill_leaves_the_old_one(tmp_path):
    folder = tmp_path / "export"

    def fill(text):
        def write(staging):
            assert not staging.samefile(tmp_path) and staging.parent == tmp_path
            (staging / "a.txt").write_text(text)
            return text

        return write

    assert replace_folder(folder, fill("one")) == "one"
    assert replace_folder(folder, fill("two")) == "two"
    assert (folder / "a.txt").read_text() == "two"

    def fails(staging):
        (staging / "a.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        replace_folder(folder, fails)
    assert (folder / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging or old folder


def test_files_get_the_mode_the_umask_gives_not_that_of_a_temporary_file(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    write_bytes_atomic(tmp_path / "result.json", b"{}")
    assert stat.S_IMODE((tmp_path / "result.json").stat().st_mode) == 0o666 & ~umask
    assert umask & 0o044 or stat.S_IMODE((tmp_path / "result.json").stat().st_mode) != 0o600


def test_a_full_disk_is_one_line_naming_the_path_and_the_space_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "cells" / "cell.npz"
    write_bytes_atomic(path, b"earlier result")

    def disk_full(sink):
        sink.write(b"x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError) as caught:
        atomic_write(path, disk_full, size=3000)
    message = caught.value.one_line()
    assert "\n" not in message
    assert message.startswith(f"no space left to write cell.npz (in {path.parent}): ")
    assert "free at least 2.9 KiB there (" in message and "free now)" in message
    assert path.read_bytes() == b"earlier result"
    assert [p.name for p in path.parent.iterdir()] == ["cell.npz"]


def test_other_errors_of_the_writing_function_pass_through(tmp_path):
    def refused(sink):
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    with pytest.raises(ConnectionResetError):
        atomic_write(tmp_path / "download.bin", refused)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_are_removed_and_fresh_ones_kept(tmp_path):
    (tmp_path / "cells").mkdir()
    stale = tmp_path / "cells" / ".cell.json.k2j3.tmp"
    stale_folder = tmp_path / ".export.0a1b.tmp"
    fresh = tmp_path / "cells" / ".other.npz.x9y8.tmp"
    kept = tmp_path / "cells" / "cell.json"
    for file in (stale, fresh, kept):
        file.write_bytes(b"half")
    stale_folder.mkdir()
    (stale_folder / "graph.onnx").write_bytes(b"half")
    an_hour_ago = time.time() - 3600
    for old in (stale, stale_folder):
        os.utime(old, (an_hour_ago, an_hour_ago))
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale, stale_folder])
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["cells", "cell.json", fresh.name])
