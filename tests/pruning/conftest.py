"""Fixtures of the pruning tests: a METER-xxs with non-trivial batch norms, a tiny depth data set, a model file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seldepth.models import create_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing

SIZE = (64, 64)  # METER's smallest input without padding: every test runs at it


def meter_with_statistics() -> torch.nn.Module:
    """METER-xxs in eval mode whose batch norms have random statistics and affine parameters (not the identity)."""
    rng = np.random.default_rng(1)
    model = create_model("meter_xxs")
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.from_numpy(rng.random(n) - 0.5))
                m.running_var.copy_(torch.from_numpy(rng.random(n) + 0.5))
                m.weight.copy_(torch.from_numpy(rng.random(n) + 0.5))
                m.bias.copy_(torch.from_numpy(0.2 * rng.random(n) - 0.1))
    return model.eval()


@pytest.fixture
def meter():
    return meter_with_statistics()


@pytest.fixture
def depth_samples():
    """Two 64x64 samples whose depth ramps from 0.5 m (top) to 5.5 m (bottom), every pixel valid."""
    rng = np.random.default_rng(2)
    ramp = torch.linspace(0.5, 5.5, SIZE[0])[:, None].expand(*SIZE)[None].clone()
    return [{"image": torch.from_numpy(rng.random((3, *SIZE), dtype=np.float32)), "depth": ramp.flip(-2) if i else ramp,
             "valid": torch.ones(1, *SIZE, dtype=torch.bool), "meta": {"name": f"s{i}"}} for i in range(2)]


@pytest.fixture
def meter_file(tmp_path, meter):
    return save_model_file(meter, tmp_path / "meter.safetensors", Preprocessing(input_size=SIZE),
                           {"dataset": "nyu", "png_scale": 1000, "source": "test"})
