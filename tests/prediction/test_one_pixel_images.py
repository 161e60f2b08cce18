"""Images one pixel high or wide: predicted like any other (no squeeze of their own axes), whole outputs, and an
image of that shape in a folder does not stop the images after it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import seldepth
from seldepth.prediction.colormap import colorize_depth, depth_map_2d, grayscale_depth
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model
from seldepth.prediction import predict_paths, write_image_outputs

SHAPES = [(1, 7), (7, 1), (1, 1)]


@pytest.fixture(scope="module")
def model():
    m = create_model("realtime_depth").eval()
    m.preprocessing = Preprocessing(input_size=(32, 32))
    return m


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory) -> Path:
    return save_model_file(model, tmp_path_factory.mktemp("m") / "rt.safetensors", Preprocessing(input_size=(32, 32)))


def _image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("shape", SHAPES)
def test_predict_keeps_a_one_pixel_side(model, shape):
    out = seldepth.predict(model, np.zeros((*shape, 3), np.uint8))
    assert tuple(out["predicted_depth"].shape) == shape
    assert out["depth"].size == (shape[1], shape[0]) and out["depth_color"].size == (shape[1], shape[0])


def test_predict_list_of_one_pixel_images(model):
    outs = seldepth.predict(model, [np.zeros((1, 5, 3), np.uint8), np.zeros((6, 1, 3), np.uint8)])
    assert [tuple(o["predicted_depth"].shape) for o in outs] == [(1, 5), (6, 1)]


@pytest.mark.parametrize("shape", SHAPES)
def test_colour_maps_keep_a_one_pixel_side(shape):
    depth = np.linspace(1, 2, shape[0] * shape[1]).reshape(shape)
    assert colorize_depth(depth).size == (shape[1], shape[0])
    assert colorize_depth(depth[None, None]).size == (shape[1], shape[0])  # leading axes of 1 are dropped
    assert grayscale_depth(depth[None]).size == (shape[1], shape[0])
    assert depth_map_2d(depth[None]).shape == shape


def test_colour_map_refuses_other_shapes_naming_the_function():
    with pytest.raises(ValueError, match=r"colorize_depth: expected a \(H, W\) depth map, got shape \(3, 4, 5\)"):
        colorize_depth(np.ones((3, 4, 5)))


def test_folder_with_one_pixel_images_predicts_every_image(model_file, tmp_path):
    inputs = tmp_path / "in"
    _image(inputs / "a.png", 16, 24)
    _image(inputs / "b_row.png", 1, 24, seed=1)
    _image(inputs / "c_column.png", 24, 1, seed=2)
    _image(inputs / "d.png", 16, 24, seed=3)
    out = tmp_path / "out"
    summary = predict_paths(model_file, [inputs], out, batch_size=2, progress=False)
    assert summary.images == 4 and not summary.skipped
    for name, shape in (("a", (16, 24)), ("b_row", (1, 24)), ("c_column", (24, 1)), ("d", (16, 24))):
        assert np.load(out / f"{name}_depth.npy").shape == shape
        assert Image.open(out / f"{name}_depth.png").size == (shape[1], shape[0])
        assert Image.open(out / f"{name}_color.png").size == (shape[1], shape[0])
    assert not list(out.glob(".*"))  # no temporary left


def test_write_image_outputs_writes_nothing_when_a_picture_fails(tmp_path):
    with pytest.raises(ValueError, match=r"expected a \(H, W\) depth map"):
        write_image_outputs(tmp_path, "x", np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="colours"):  # a PLY without colours: refused before any file
        write_image_outputs(tmp_path, "y", np.ones((3, 4), np.float32), intrinsics=object())
    assert list(tmp_path.iterdir()) == []
