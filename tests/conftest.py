"""Shared fixtures: the ../shared folder of test data and official weights, and imported models."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from helpers import SHARED


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "weights" / "meter").is_dir():
        pytest.fail(f"test data not found at {SHARED}; put the project's shared/ folder beside the repo or set SELDEPTH_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def nyu_sample(shared) -> Path:
    return shared / "data" / "nyu_test_sample"


@pytest.fixture(scope="session")
def meter_nyu_file(shared, tmp_path_factory) -> Path:
    """The official NYU METER-xxs, imported once per session into a model file."""
    from seldepth.models.import_meter import import_meter

    out = tmp_path_factory.mktemp("models") / "meter_xxs_nyu.safetensors"
    import_meter(shared / "weights" / "meter" / "build_model_best_nyu_xxs", "xxs", "nyu", out)
    return out


_SIGCHLD_AT_START = signal.getsignal(signal.SIGCHLD)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
    # a DataLoader with worker processes leaves torch's SIGCHLD handler installed for good; in this long-lived
    # process, with OpenVINO loaded, the kernel then failed to deliver a later child's SIGCHLD to it and killed
    # the test process (SIGSEGV, si_code SI_KERNEL, the main thread waiting in poll for that child). Each test
    # ends with the disposition the session started with.
    if signal.getsignal(signal.SIGCHLD) is not _SIGCHLD_AT_START:
        signal.signal(signal.SIGCHLD, _SIGCHLD_AT_START)


@pytest.fixture
def one_thread():
    """Run torch single-threaded: on a shared 2-core machine, tiny ops otherwise wait for a busy core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_splits(nyu_sample, tmp_path_factory) -> Path:
    """train/val/test CSVs over the shared NYU sample (6 / 3 / 1 images; train rows repeated 4x)."""
    root = tmp_path_factory.mktemp("tiny_splits")
    rows = [line.split(",") for line in (nyu_sample / "nyu2_test.csv").read_text().split()]
    absolute = [f"{nyu_sample / 'nyu2_test' / r},{nyu_sample / 'nyu2_test' / d}" for r, d in rows]
    (root / "train.csv").write_text("\n".join(absolute[:6] * 4) + "\n")
    (root / "val.csv").write_text("\n".join(absolute[6:9]) + "\n")
    (root / "test.csv").write_text(absolute[9] + "\n")
    return root



@pytest.fixture
def pair_folder(tmp_path):
    """A folder with one image/depth pair: a black 6x8 RGB PNG and a 16-bit depth PNG of 2000 (2 m in millimetres)."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "pairs"
    root.mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "000_rgb.png")
    Image.fromarray(np.full((6, 8), 2000, np.uint16)).save(root / "000_depth.png")
    return root
