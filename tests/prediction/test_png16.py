"""16-bit depth PNGs: the scale is a parameter (1000 indoor, 256 KITTI, the model's by default) and clipping warns."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from seldepth.data.images import read_depth_png
from seldepth.prediction import DepthClippedWarning, depth_to_png16, png_scale_of, predict_paths, write_image_outputs


def _far_depth() -> np.ndarray:
    d = np.full((4, 5), 3.0, np.float32)
    d[0, :5] = [65.5354, 65.5356, 70.0, 79.54, 65.0]  # in mm: 65535 (kept), 65536, 70000, 79540 (clipped), 65000
    d[1, 0], d[1, 1], d[1, 2] = np.nan, 0.0, np.inf  # invalid: 0, never counted as clipped
    return d


def test_clipping_warns_with_the_exact_count_and_the_file_name():
    d = _far_depth()
    with pytest.warns(DepthClippedWarning) as record:
        png = depth_to_png16(d, name="out/frame_depth.png")
    assert len(record) == 1
    assert str(record[0].message).startswith("out/frame_depth.png: 3 of 20 pixels are deeper than 65.535 m, the most a "
                                             "16-bit PNG holds at 1000 per metre, and were clipped to 65535")
    assert png[0].tolist() == [65535, 65535, 65535, 65535, 65000]
    assert png[1, :3].tolist() == [0, 0, 0]
    assert (png[2:] == 3000).all()


def test_at_256_per_metre_the_same_depth_fits_and_round_trips(tmp_path):
    d = _far_depth()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DepthClippedWarning
        paths = write_image_outputs(tmp_path, "kitti", d, png_scale=256)
    png_path = tmp_path / "kitti_depth.png"
    assert png_path in paths
    png = np.asarray(Image.open(png_path))
    assert png[0].tolist() == [16777, 16777, 17920, 20362, 16640]
    back = read_depth_png(png_path, scale_16bit=256)[0].numpy()
    valid = np.isfinite(d) & (d > 0)
    assert np.abs(back[valid] - d[valid]).max() <= 0.5 / 256 + 1e-6
    assert (back[~valid] == 0).all()


def test_write_image_outputs_names_the_png_in_the_warning(tmp_path):
    with pytest.warns(DepthClippedWarning, match=r"sub[/\\]x_depth\.png: 3 of 20 pixels"):
        write_image_outputs(tmp_path / "sub", "x", _far_depth())
    assert np.asarray(Image.open(tmp_path / "sub" / "x_depth.png"))[0, 2] == 65535
    np.testing.assert_array_equal(np.load(tmp_path / "sub" / "x_depth.npy"), _far_depth())  # the .npy keeps it


def test_png_scale_must_be_positive():
    with pytest.raises(ValueError, match="png_scale must be a positive number"):
        depth_to_png16(np.ones((2, 2)), png_scale=0)


def test_png_scale_of_models():
    assert png_scale_of(SimpleNamespace(metadata={"provenance": {"png_scale": 256}})) == 256.0
    assert png_scale_of(SimpleNamespace(metadata={"provenance": {"dataset": "kitti"}})) == 256.0
    assert png_scale_of(SimpleNamespace(metadata={"provenance": {"dataset": "nyu"}})) == 1000.0
    assert png_scale_of(SimpleNamespace(metadata={"provenance": {}})) == 1000.0
    assert png_scale_of(SimpleNamespace()) == 1000.0
    assert png_scale_of({"provenance": {"png_scale": 500}}) == 500.0
    with pytest.raises(ValueError, match="provenance.png_scale must be a positive number"):
        png_scale_of({"provenance": {"png_scale": -1}})


class _Constant(torch.nn.Module):
    """Predicts ``depth`` metres everywhere (at 1/4 resolution, as METER)."""

    def __init__(self, depth: float, metadata: dict | None = None):
        super().__init__()
        self.depth = depth
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.metadata = metadata or {}

    def forward(self, x):
        return self.scale * torch.full((x.shape[0], 1, x.shape[2] // 4, x.shape[3] // 4), self.depth)


def test_predict_uses_the_models_png_scale(tmp_path):
    image = tmp_path / "in" / "road.png"
    image.parent.mkdir()
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(image)
    kitti = _Constant(70.0, {"provenance": {"dataset": "kitti", "png_scale": 256.0}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_paths(kitti, [image], tmp_path / "kitti", progress=False)
    assert (np.asarray(Image.open(tmp_path / "kitti" / "road_depth.png")) == 17920).all()
    with pytest.warns(DepthClippedWarning, match=r"road_depth\.png: 6144 of 6144 pixels"):
        predict_paths(_Constant(70.0), [image], tmp_path / "indoor", progress=False)
    assert (np.asarray(Image.open(tmp_path / "indoor" / "road_depth.png")) == 65535).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predict_paths(_Constant(70.0), [image], tmp_path / "given", progress=False, png_scale=500)
    assert (np.asarray(Image.open(tmp_path / "given" / "road_depth.png")) == 35000).all()
