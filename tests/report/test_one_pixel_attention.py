"""Attention of an image one pixel high or wide: overlays at the image's size and whole files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from seldepth.models import create_model
from seldepth.models.preprocessing import Preprocessing
from seldepth.report.attention import attention_overlay, capture_attention, plot_attention_grid, save_attention

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shape", [(1, 9), (9, 1)])
def test_attention_of_a_one_pixel_side(shape, tmp_path):
    model = create_model("meter_xxs").eval()
    model.preprocessing = Preprocessing(input_size=None)
    image = torch.rand(3, *shape)
    result = capture_attention(model, image)
    name = next(iter(result.maps))
    assert attention_overlay(result.covering_image(name), image).size == (shape[1], shape[0])
    paths = save_attention(result, image, tmp_path / "att")
    assert all(p.is_file() for p in paths)
    for p in paths:
        if p.name.endswith(f"_{name}.png"):
            assert Image.open(p).size == (shape[1], shape[0])
    grid = plot_attention_grid(image, {"run": result}, tmp_path / "grid.png")
    width, height = Image.open(grid).size
    assert height < 20 * width  # a 1-pixel-wide image does not make a figure miles high
    assert not [p for p in (tmp_path / "att").iterdir() if p.name.startswith(".")]
    assert np.load(tmp_path / "att" / "attention.npz")[name].ndim == 2
