"""An 8-bit depth PNG where a 16-bit scale was declared (a KITTI annotation's x256, ``folder:...?scale=256``): a
DatasetError naming the file, not depth read as value / 255 x 10 m; DenseDepth's 8-bit format (no scale declared)
still reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.images import read_depth_png
from seldepth.data.spec import open_dataset


def _pair(root, depth: np.ndarray, stem: str = "000"):
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((*depth.shape, 3), np.uint8)).save(root / f"{stem}_rgb.png")
    Image.fromarray(depth).save(root / f"{stem}_depth.png")
    return root / f"{stem}_depth.png"


def test_read_depth_png_refuses_8_bit_with_a_declared_scale(tmp_path):
    path = _pair(tmp_path, np.full((4, 6), 200, np.uint8))
    with pytest.raises(DatasetError, match=rf"{path}: an 8-bit depth PNG, but a scale of 256 values per metre was declared"):
        read_depth_png(path, scale_16bit=256)
    # undeclared (DenseDepth's training format): value / 255 x max_depth_8bit
    assert float(read_depth_png(path).max()) == pytest.approx(200 / 255 * 10)
    sixteen = _pair(tmp_path / "16", np.full((4, 6), 512, np.uint16))
    assert float(read_depth_png(sixteen, scale_16bit=256).max()) == pytest.approx(2.0)
    assert float(read_depth_png(sixteen).max()) == pytest.approx(0.512)  # undeclared 16-bit: millimetres


def test_folder_spec_with_scale_refuses_an_8_bit_depth_png(tmp_path):
    path = _pair(tmp_path / "pairs", np.full((4, 6), 17, np.uint8))
    data = open_dataset(f"folder:{tmp_path / 'pairs'}?scale=256")
    with pytest.raises(DatasetError, match=rf"{path}: an 8-bit depth PNG"):
        data[0]


def test_annotation_with_a_scale_refuses_an_8_bit_depth_png(tmp_path):
    path = _pair(tmp_path, np.full((4, 6), 17, np.uint8))
    entry = {"rgb": "000_rgb.png", "depth": "000_depth.png", "depth_scale": 256.0, "cam_in": [5, 5, 3, 2]}
    (tmp_path / "test_annotations.json").write_text(json.dumps({"files": [entry]}))
    data = open_dataset(f"kitti:{tmp_path}")
    with pytest.raises(DatasetError, match=rf"{path}: an 8-bit depth PNG, but a scale of 256"):
        data[0]
    skipped = open_dataset(f"kitti:{tmp_path}", on_error="skip")  # skipped and reported, like any bad file
    assert "skipped" in skipped[0]
