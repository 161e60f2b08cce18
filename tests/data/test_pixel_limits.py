"""Images and arrays declaring absurd sizes: refused from their headers, before any pixel is decoded or any array
allocated, with an error naming the file, its size and how to raise the limit."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.files import load_npy, load_npz_member
from seldepth.data.folder import read_depth_npy
from seldepth.data.images import MAX_PIXELS, pixel_limit, read_depth_png, read_rgb
from seldepth.data.kitti import read_projected_npz
from seldepth.data.sample import read_intrinsics_file


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (its data is a few bytes: never decoded here)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 16)) + _chunk(b"IEND", b"")


def npy_header(shape, dtype="<f4") -> bytes:
    """The header of an .npy declaring ``shape`` (and a few bytes of data)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue() + b"\0" * 64


def test_an_80_megapixel_image_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(huge_png(10_000, 8_000))
    with pytest.raises(DatasetError, match=rf"{path}: the image is 10000x8000 = 80.0 megapixels, more than the limit "
                                           r"of 50 megapixels .*SELDEPTH_MAX_PIXELS=N"):
        read_rgb(path)
    depth = tmp_path / "huge_depth.png"
    depth.write_bytes(huge_png(10_000, 8_000, 16, 0))
    with pytest.raises(DatasetError, match=rf"{depth}: the image is 10000x8000"):
        read_depth_png(depth, scale_16bit=1000)


def test_the_limit_can_be_raised_or_lowered(tmp_path, monkeypatch):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((10, 20, 3), np.uint8)).save(small)
    assert read_rgb(small).shape == (3, 10, 20)
    with pytest.raises(DatasetError, match="the image is 20x10 = 0.0 megapixels, more than the limit"):
        read_rgb(small, max_pixels=199)
    monkeypatch.setenv("SELDEPTH_MAX_PIXELS", "100")
    assert pixel_limit() == 100
    with pytest.raises(DatasetError, match=f"{small}: the image is 20x10"):
        read_rgb(small)
    monkeypatch.setenv("SELDEPTH_MAX_PIXELS", "0")  # no limit
    assert read_rgb(small).shape == (3, 10, 20)
    monkeypatch.setenv("SELDEPTH_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="SELDEPTH_MAX_PIXELS='lots': expected a whole number"):
        read_rgb(small)
    monkeypatch.delenv("SELDEPTH_MAX_PIXELS")
    assert pixel_limit() == MAX_PIXELS


def test_npz_declaring_a_huge_member_is_refused_before_decompressing(tmp_path):
    """A 1.5 MB-like archive whose member declares (20000, 20000) float32 (1.5 GiB)."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("velodyne_depth.npy", npy_header((20_000, 20_000)))
    with pytest.raises(DatasetError, match=rf"{path} \('velodyne_depth'\): the array declares shape \(20000, 20000\) "
                                           r"\(400,000,000 values, 1.49 GiB\), more than the limit .*SELDEPTH_MAX_PIXELS"):
        read_projected_npz(path)
    with pytest.raises(DatasetError, match=f"{path}"):
        load_npz_member(path, "velodyne_depth")


def test_npy_declaring_a_huge_array_is_refused(tmp_path):
    path = tmp_path / "bomb_depth.npy"
    path.write_bytes(npy_header((20_000, 20_000)))
    with pytest.raises(DatasetError, match=rf"{path}: the array declares shape \(20000, 20000\)"):
        read_depth_npy(path)
    with pytest.raises(DatasetError, match=rf"{path}: the array declares shape"):
        load_npy(path)
    k = tmp_path / "intrinsics.npy"
    k.write_bytes(npy_header((5000, 5000)))
    with pytest.raises(DatasetError, match=rf"{k}: the array declares shape \(5000, 5000\)"):
        read_intrinsics_file(k)


def test_normal_arrays_still_read(tmp_path):
    depth = tmp_path / "d.npy"
    np.save(depth, np.full((1, 3, 4), 2.0, np.float32))
    assert read_depth_npy(depth).shape == (1, 3, 4)
    row = tmp_path / "row.npy"
    np.save(row, np.full((1, 4), 2.0, np.float32))  # a 1-pixel-high map keeps its axes
    assert read_depth_npy(row).shape == (1, 1, 4)
    npz = tmp_path / "v.npz"
    np.savez_compressed(npz, velodyne_depth=np.ones((3, 4), np.float32))
    assert read_projected_npz(npz).shape == (1, 3, 4)
    with pytest.raises(DatasetError, match=rf"{npz}: no 'other' array \(has velodyne_depth\)"):
        read_projected_npz(npz, key="other")
