"""A predict run SIGKILLed mid-image leaves a hidden temporary and part of an image's outputs: a rerun into the same
folder removes the stale temporaries (not those of a writer still running) and completes every image's outputs."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from seldepth.atomic import remove_stale_temporaries
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model
from seldepth.prediction import predict_paths


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def model():
    m = create_model("realtime_depth").eval()
    m.preprocessing = Preprocessing(input_size=(32, 32))
    return m


def test_rerun_removes_stale_temporaries_and_completes_outputs(model, tmp_path):
    images = tmp_path / "in"
    (images / "sub").mkdir(parents=True)
    for name in ("a", "sub/b"):
        Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(images / f"{name}.png")
    out = tmp_path / "out"
    predict_paths(model, [images], out, progress=False)
    # what a SIGKILL between the .npy and the PNGs leaves: one output, and the PNG's temporary
    (out / "a_depth.png").unlink()
    (out / "a_color.png").unlink()
    dead = _dead_pid()
    stale = [out / f".a_depth.png.{dead}-0a1b2c3d.tmp", out / "sub" / f".b_color.png.{dead}-99aa88bb.tmp",
             out / f".v_depth.npy.{dead}.raw"]
    for path in stale:
        path.write_bytes(b"half")
    live = out / f".c_depth.png.{os.getppid()}-12345678.tmp"  # a writer still running: left alone
    live.write_bytes(b"busy")

    summary = predict_paths(model, [images], out, progress=False)
    assert sorted(summary.removed) == sorted(stale)
    assert not any(p.exists() for p in stale) and live.exists()
    for name in ("a", "sub/b"):
        for suffix in ("_depth.npy", "_depth.png", "_color.png"):
            assert (out / f"{name}{suffix}").is_file(), name + suffix
    assert "removed 3 temporary files left by an interrupted run" in summary.format()


def test_remove_stale_temporaries_by_itself(tmp_path):
    dead = _dead_pid()
    old = tmp_path / f".x.{dead}-abcd.tmp"
    mine = tmp_path / f".y.{os.getpid()}-abcd.tmp"
    odd = tmp_path / ".z.tmp"  # no writer named: stale
    for p in (old, mine, odd):
        p.write_text("x")
    (tmp_path / "keep.tmp").write_text("not hidden: not a temporary of seldepth's writers")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([old, odd])
    assert mine.exists() and (tmp_path / "keep.tmp").exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []
