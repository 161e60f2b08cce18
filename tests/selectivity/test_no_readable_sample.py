"""``dissect`` / ``ablate`` on data none of whose samples can be read (``on_error="skip"``): a DatasetError that
names the data spec, never a KeyError from a skip marker."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.skipping import first_sample
from seldepth.data.spec import open_dataset
from seldepth.models import create_model
from seldepth.selectivity.ablation import ablate, channel_means
from seldepth.selectivity.dissect import dissect


@pytest.fixture
def unreadable_spec(tmp_path):
    """A folder of two image/depth pairs whose images are not images: every sample fails when read."""
    for i in range(2):
        (tmp_path / f"{i:03d}_rgb.png").write_bytes(b"not an image")
        Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / f"{i:03d}_depth.png")
    return f"folder:{tmp_path}?scale=1000"


@pytest.fixture
def half_readable_spec(tmp_path):
    """Sample 0 unreadable, sample 1 readable."""
    (tmp_path / "000_rgb.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "001_rgb.png")
    for i in range(2):
        Image.fromarray(np.full((8, 8), 1000, np.uint16)).save(tmp_path / f"{i:03d}_depth.png")
    return f"folder:{tmp_path}?scale=1000"


@pytest.fixture(scope="module")
def model():
    return create_model("realtime_depth").eval()


@pytest.mark.parametrize("bins", ["sid:8", "quantile:8"])
def test_dissect_with_no_readable_sample_names_the_spec(model, unreadable_spec, bins):
    data = open_dataset(unreadable_spec, on_error="skip")
    with pytest.raises(DatasetError, match=r"no sample of data '.*\?scale=1000' could be read \(2 skipped; the first: .*_rgb.png"):
        dissect(model, data, bins=bins, progress=False, num_workers=0, batch_size=2)


def test_ablate_with_no_readable_sample_names_the_spec(model, unreadable_spec):
    data = open_dataset(unreadable_spec, on_error="skip")
    with pytest.raises(DatasetError, match=r"no sample of data '.*' could be read"):
        ablate(model, data, "dec_1" if "dec_1" in model.selectivity_layers else next(iter(model.selectivity_layers)),
               fractions=[0.5], seeds=1, progress=False)
    with pytest.raises(DatasetError, match=r"no sample of data '.*' could be read"):
        channel_means(model, data, next(iter(model.selectivity_layers)))


def test_first_readable_sample_is_found(half_readable_spec):
    data = open_dataset(half_readable_spec, on_error="skip")
    sample = first_sample(data)
    assert sample["meta"]["index"] == 1 and tuple(sample["image"].shape) == (3, 8, 8)
    assert isinstance(torch.as_tensor(sample["depth"]), torch.Tensor)
