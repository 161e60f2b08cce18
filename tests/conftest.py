"""Shared fixtures: the ../shared folder of test data and official weights, and imported models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SELDEPTH_SHARED", REPO.parent / "shared"))


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


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
