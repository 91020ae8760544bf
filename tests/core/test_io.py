"""notpipe.io: the one atomic writer."""

import json
import os

import pytest

from notpipe import io


def test_atomic_write_replaces_whole_files_with_normal_permissions(tmp_path):
    target = tmp_path / "d" / "x.json"
    io.write_json(target, {"b": 1, "a": [1, 2]})
    assert json.loads(target.read_text()) == {"a": [1, 2], "b": 1}
    assert target.read_text().endswith("\n") and target.read_text().index('"a"') < target.read_text().index('"b"')
    assert target.stat().st_mode & 0o777 == io.FILE_MODE
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def broken(fh):
        fh.write(b"partial")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        io.atomic_write(target, broken)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]
