"""Atomic writes: a file or folder appears whole or not at all."""

from __future__ import annotations

import pytest

from recbench.data.files import atomic_write, replace_folder, write_bytes_atomic


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
