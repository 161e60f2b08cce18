"""seldepth.atomic: a failed write leaves the old file, temporaries are unique, and leftovers are found."""

import json
import os
import re

import pytest

from seldepth.atomic import (TMP_SUFFIX, OutputPathError, atomic_path, check_output, json_text, stale_temporaries,
                             write_json_atomic, write_text_atomic)


def test_a_write_that_raises_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="killed mid-write"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            assert tmp.is_file() and target.read_text() == "old"  # nothing at the target before the rename
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    assert stale_temporaries(tmp_path) == []


def test_a_raise_before_anything_is_written_creates_no_target(tmp_path):
    target = tmp_path / "sub" / "new.txt"
    with pytest.raises(KeyError):
        with atomic_path(target):
            raise KeyError("x")
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []  # the folder is created, left empty


def test_success_replaces_the_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "a" / "b" / "m.txt"  # missing folders are created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        assert re.fullmatch(rf"\.m\.txt\.{os.getpid()}-[0-9a-f]{{8}}\.tmp", tmp.name), tmp.name
        tmp.write_text("new")
    assert target.read_text() == "new" and not tmp.exists()
    assert write_text_atomic(target, "newer é") == target and target.read_text(encoding="utf-8") == "newer é"
    assert [p.name for p in target.parent.iterdir()] == ["m.txt"]


def test_two_writers_of_the_same_target_get_different_temporaries(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_path(target) as first, atomic_path(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_text("first")
        second.write_text("second")
        assert first.read_text() == "first"  # the second writer did not overwrite the first's temporary
    # the inner writer (second) renames first, then the outer one's rename replaces it: the last to finish wins
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    names = set()
    for _ in range(50):
        with atomic_path(target) as tmp:
            names.add(tmp.name)
            tmp.write_text("x")
    assert len(names) == 50


def test_fsync_gives_the_same_content(tmp_path, monkeypatch):
    synced_files = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced_files.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    data = bytes(range(256)) * 1000
    plain, synced = tmp_path / "plain.bin", tmp_path / "synced.bin"
    with atomic_path(plain) as tmp:
        tmp.write_bytes(data)
    assert synced_files == []  # fsync=False: no flush to disk
    with atomic_path(synced, fsync=True) as tmp:
        tmp.write_bytes(data)
    assert len(synced_files) == 1  # the temporary, before the rename
    if isinstance(synced_files[0], str):
        assert synced_files[0] == str(tmp)
    assert synced.read_bytes() == plain.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.bin", "synced.bin"]


def test_fsync_of_a_write_that_raises_leaves_the_old_file(tmp_path):
    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")
    with pytest.raises(OSError):
        with atomic_path(target, fsync=True) as tmp:
            tmp.write_bytes(b"new")
            raise OSError("disk full")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_stale_temporaries_finds_a_leftover_and_nothing_else(tmp_path):
    leftover = tmp_path / f".x.123-ab{TMP_SUFFIX}"
    leftover.write_text("killed writer")
    for name in ("x", "x.tmp", ".hidden", ".x.123-ab.tmp.bak", "results.json", ".x.123-ab.tmpx"):
        (tmp_path / name).write_text("keep")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".y.1-cd.tmp").write_text("not recursive")
    assert stale_temporaries(tmp_path) == [leftover]
    assert stale_temporaries(str(tmp_path)) == [leftover]
    assert stale_temporaries(tmp_path / "missing") == []
    assert stale_temporaries(tmp_path / "x") == []  # a file, not a folder


def test_stale_temporaries_finds_what_a_killed_writer_leaves(tmp_path):
    target = tmp_path / "model.safetensors"
    ctx = atomic_path(target)
    tmp = ctx.__enter__()  # a writer killed mid-write never runs the context's exit
    tmp.write_text("half")
    assert stale_temporaries(tmp_path) == [tmp] and not target.exists()
    ctx.__exit__(None, None, None)
    assert stale_temporaries(tmp_path) == [] and target.read_text() == "half"


def test_json_is_standard_nan_and_infinities_are_null(tmp_path):
    doc = {"rmse": float("nan"), "caps": [1.0, float("inf"), -float("inf")], "nested": {"x": (float("nan"), 2)}, "n": 3}
    text = json_text(doc)
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"rmse": None, "caps": [1.0, None, None], "nested": {"x": [None, 2]}, "n": 3}
    path = write_json_atomic(tmp_path / "r.json", doc)
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))["rmse"] is None


def test_check_output_accepts_new_and_existing_paths_and_creates_nothing(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "folder").mkdir()
    assert check_output(tmp_path / "old.json", "file") == tmp_path / "old.json"  # overwritten later: fine
    assert check_output(tmp_path / "a" / "b" / "new.json", "file") == tmp_path / "a" / "b" / "new.json"
    assert check_output(tmp_path / "folder", "folder") == tmp_path / "folder"
    assert check_output(tmp_path / "x" / "y", "folder") == tmp_path / "x" / "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "old.json"]  # nothing created


@pytest.mark.parametrize("make, path, kind, message", [
    (lambda d: (d / "f").mkdir(), "f", "file", "is a folder; a file name is expected"),
    (lambda d: (d / "f").write_text("x"), "f", "folder", "is an existing file; an output folder is expected"),
    (lambda d: (d / "f").write_text("x"), "f/r.json", "file", "f is a file, not a folder"),
    (lambda d: (d / "f").write_text("x"), "f/a/b", "folder", "so the folder"),
])
def test_check_output_names_the_path_and_the_problem(tmp_path, make, path, kind, message):
    make(tmp_path)
    with pytest.raises(OutputPathError, match=message) as info:
        check_output(tmp_path / path, kind, key="--out")
    assert str(info.value).startswith(f"--out {tmp_path / path}")
    assert isinstance(info.value, ValueError)


def test_check_output_refuses_a_read_only_folder(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() != 0:  # root writes anywhere: pretend the permission is missing
        locked.chmod(0o555)
    else:
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(locked) else real_access(p, mode, **kw))
    try:
        for path, kind in ((locked / "r.json", "file"), (locked / "sub", "folder"), (locked, "folder")):
            with pytest.raises(OutputPathError, match=f"no permission to write in {re.escape(str(locked))}"):
                check_output(path, kind)
    finally:
        locked.chmod(0o755)
