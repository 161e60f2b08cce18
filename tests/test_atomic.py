"""seldepth.atomic: a failed write leaves the old file, temporaries are unique, and leftovers are found."""

import os
import re

import pytest

from seldepth.atomic import TMP_SUFFIX, atomic_path, stale_temporaries, write_text_atomic


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
