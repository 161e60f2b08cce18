"""Fuzzing the file readers with corrupted bytes: the only error allowed is DatasetError."""

import io
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.images import read_depth_png, read_rgb
from seldepth.data.kitti import read_projected_npz
from seldepth.data.kitti_calib import read_velodyne
from seldepth.data.nyu_h5 import read_h5_pair
from seldepth.data.nyu_labeled import NYULabeled

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


RNG = np.random.default_rng(0)
DEPTH_PNG = _png(RNG.integers(0, 10000, (12, 16)).astype(np.uint16))
RGB_PNG = _png(RNG.integers(0, 255, (12, 16, 3)).astype(np.uint8))
JPEG = io.BytesIO()
Image.fromarray(RNG.integers(0, 255, (12, 16, 3)).astype(np.uint8)).save(JPEG, format="JPEG")
JPEG = JPEG.getvalue()


def _h5(arrays: dict) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return buf.getvalue()


H5_PAIR = _h5({"rgb": RNG.integers(0, 255, (3, 6, 8)).astype(np.uint8), "depth": RNG.random((6, 8)).astype(np.float32)})
LABELED_MAT = _h5({"images": RNG.integers(0, 255, (2, 3, 8, 6)).astype(np.uint8),
                   "depths": (1 + RNG.random((2, 8, 6))).astype(np.float32)})
NPZ = io.BytesIO()
np.savez_compressed(NPZ, velodyne_depth=RNG.random((6, 8)).astype(np.float32))
NPZ = NPZ.getvalue()
VELODYNE = RNG.random((20, 4)).astype(np.float32).tobytes()


@st.composite
def corrupted(draw, original: bytes):
    """``original`` truncated, with bytes overwritten, or with bytes inserted (or random bytes)."""
    kind = draw(st.sampled_from(["truncate", "overwrite", "insert", "random"]))
    data = bytearray(original)
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "random":
        return draw(st.binary(max_size=200))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data) - 1))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if kind == "overwrite":
            data[pos: pos + len(chunk)] = chunk
        else:
            data[pos:pos] = chunk
    return bytes(data)


def _only_dataset_error(read, data: bytes):
    try:
        read(data)
    except DatasetError as exc:
        assert "corrupt.bin" in str(exc)


@FUZZ
@given(corrupted(DEPTH_PNG))
def test_depth_png_reader(data):
    _only_dataset_error(lambda b: read_depth_png(b, "corrupt.bin", scale_16bit=1000), data)


@FUZZ
@given(st.one_of(corrupted(RGB_PNG), corrupted(JPEG)))
def test_rgb_reader(data):
    _only_dataset_error(lambda b: read_rgb(b, "corrupt.bin"), data)


@FUZZ
@given(corrupted(H5_PAIR))
def test_h5_pair_reader(data):
    _only_dataset_error(lambda b: read_h5_pair(b, "corrupt.bin"), data)


def _via_file(suffix: str, data: bytes, read):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"corrupt.bin{suffix}"
        path.write_bytes(data)
        try:
            read(path)
        except DatasetError as exc:
            assert "corrupt.bin" in str(exc)


@settings(max_examples=60, deadline=None)
@given(corrupted(LABELED_MAT))
def test_labeled_mat_reader(data):
    def read(path):
        ds = NYULabeled(path, split="all")
        for i in range(len(ds)):
            ds[i]
        ds.close()
    _via_file(".mat", data, read)


@settings(max_examples=60, deadline=None)
@given(corrupted(NPZ))
def test_projected_npz_reader(data):
    _via_file(".npz", data, read_projected_npz)


@FUZZ
@given(corrupted(VELODYNE))
def test_velodyne_reader(data):
    _only_dataset_error(lambda b: read_velodyne(b, "corrupt.bin"), data)


def test_fuzz_inputs_are_really_corrupt_sometimes():
    """Guard against a fuzz test that never reaches the error path."""
    with pytest.raises(DatasetError, match="corrupt.bin"):
        read_depth_png(DEPTH_PNG[:40], "corrupt.bin")
    assert read_depth_png(DEPTH_PNG, "ok").shape == (1, 12, 16)
    with pytest.raises(DatasetError, match="corrupt.bin"):
        read_h5_pair(H5_PAIR[: len(H5_PAIR) // 2], "corrupt.bin")
    assert read_h5_pair(H5_PAIR, "ok")[1].shape == (1, 6, 8)
    with pytest.raises(DatasetError, match="corrupt.bin"):
        read_velodyne(VELODYNE[:-3], "corrupt.bin")
