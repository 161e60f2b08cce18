"""Two processes needing the same cached default synthetic set at once: both succeed and the set is complete
(they take turns through a lock file beside the cache folder; the second finds the set made)."""

from __future__ import annotations

import csv
import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from seldepth.data.spec import default_synthetic_dir, ensure_synthetic, prepare
from seldepth.data.synthetic.writer import generation_lock

SPEC = "synthetic:default:8:123"


def _check_complete(folder: Path, frames: int = 8) -> None:
    info = json.loads((folder / "dataset.json").read_text())
    assert info["num_frames"] == frames and sum(info["splits"].values()) == frames
    rows = [row for split in ("train", "val", "test") for row in csv.reader((folder / f"{split}.csv").open())]
    assert len(rows) == frames and all((folder / rel).is_file() for row in rows for rel in row)
    assert not [p for p in folder.rglob(".*") if p.is_file()]  # no temporary left
    assert (folder.parent / (folder.name + ".lock")).exists()  # the lock file is beside the folder


@pytest.mark.slow  # two fresh interpreters importing torch: about 10 s on a busy 2-core machine
def test_two_processes_generating_the_same_set(tmp_path, monkeypatch):
    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=prepare, args=(SPEC,), kwargs={"progress": False}) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    _check_complete(default_synthetic_dir(8, 123))


def test_two_threads_generating_the_same_set(tmp_path, monkeypatch):
    """The same race in one process (the lock is per thread as well): fast enough for every run."""
    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    import seldepth.data.synthetic.writer as writer

    real, calls = writer.generate, []
    monkeypatch.setattr(writer, "generate", lambda *a, **k: calls.append(a) or real(*a, **{**k, "workers": 1}))
    errors = []

    def run():
        try:
            prepare("synthetic:default:4:7", progress=False)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(calls) == 1  # generated once; the other waited and found it complete
    _check_complete(default_synthetic_dir(4, 7), frames=4)


def test_a_set_completed_while_waiting_is_not_generated_again(tmp_path, monkeypatch):
    """The completeness check is made again once the lock is held."""
    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    folder = default_synthetic_dir(2, 5)
    calls = []

    import seldepth.data.synthetic.writer as writer

    real = writer.generate
    monkeypatch.setattr(writer, "generate", lambda *a, **k: calls.append(a) or real(*a, **k))
    with generation_lock(folder):  # reentrant in this process: it stands for the other process's turn
        (folder).mkdir(parents=True)
        (folder / "dataset.json").write_text("{}")  # "finished by the other process"
        ensure_synthetic(folder, 2, progress=False, seed=5)
    assert calls == []
