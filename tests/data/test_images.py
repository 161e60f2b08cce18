"""read_rgb: EXIF orientation, 16-bit grayscale and 16-bit RGB PNGs, with pixel values checked exactly."""

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from seldepth.data.errors import DatasetError
from seldepth.data.images import read_rgb, rgb_array


def png16(arr: np.ndarray, exif: bytes | None = None) -> bytes:
    """A 16-bit PNG (grayscale (H, W), RGB (H, W, 3) or RGBA (H, W, 4)) written by hand: Pillow writes no 16-bit colour."""
    arr = np.asarray(arr, dtype=">u2")
    h, w = arr.shape[:2]
    colour = 0 if arr.ndim == 2 else {3: 2, 4: 6}[arr.shape[2]]  # PNG colour types: gray, RGB, RGBA
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
    if exif is not None:
        body += chunk(b"eXIf", exif)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def exif_orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


def test_exif_rotated_jpeg_is_read_as_displayed(tmp_path):
    # Stored 32 rows x 48 columns: top half red, bottom half blue; orientation 6 = display rotated 90 deg clockwise.
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:16] = (255, 0, 0)
    stored[16:] = (0, 0, 255)
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif_orientation(6))
    rgb = read_rgb(path)
    assert tuple(rgb.shape) == (3, 48, 32)  # displayed: 48 rows x 32 columns
    # The stored top (red) is on the displayed right, the stored bottom (blue) on the left.
    assert rgb[:, 24, 28].tolist() == pytest.approx([1.0, 0.0, 0.0], abs=0.03)
    assert rgb[:, 24, 3].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=0.03)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    np.testing.assert_array_equal((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), shown)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="PNG", exif=exif_orientation(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    got = read_rgb(buf.getvalue())
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected.astype(np.float32) / 255.0)


def test_16bit_gray_png_is_value_over_65535_not_white(tmp_path):
    gradient = np.array([[0, 1, 255, 256, 1000], [4095, 32768, 40000, 65534, 65535]], np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(gradient).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = read_rgb(path)
    assert tuple(rgb.shape) == (3, 2, 5)
    expected = torch.from_numpy(gradient.astype(np.float32) / 65535.0)
    for c in range(3):
        assert torch.equal(rgb[c], expected)
    assert rgb[0, 0, 3].item() == pytest.approx(256 / 65535)  # convert("RGB") made this 1.0 (white)


def test_16bit_rgb_and_rgba_pngs_keep_16_bits():
    values = np.array([[[65535, 0, 32768], [2570, 51400, 1000]], [[0, 0, 0], [300, 65535, 65280]]], np.uint16)
    expected = torch.from_numpy(values.astype(np.float32) / 65535.0).permute(2, 0, 1)
    assert torch.equal(read_rgb(png16(values)), expected)
    rgba = np.concatenate([values, np.full((2, 2, 1), 1234, np.uint16)], axis=2)
    assert torch.equal(read_rgb(png16(rgba)), expected)  # alpha dropped
    # Pillow alone keeps the high byte only: 1000 -> 3 / 255, not 1000 / 65535.
    assert np.asarray(Image.open(io.BytesIO(png16(values))))[0, 1, 2] == 3


def test_16bit_rgb_png_honours_exif_orientation(tmp_path):
    values = np.arange(2 * 3 * 3, dtype=np.uint16).reshape(2, 3, 3) * 3000
    path = tmp_path / "rgb16_rotated.png"
    path.write_bytes(png16(values, exif=exif_orientation(6).tobytes()[6:]))  # eXIf holds the TIFF block
    rgb = read_rgb(path)
    assert tuple(rgb.shape) == (3, 3, 2)
    expected = np.rot90(values, -1).astype(np.float32) / 65535.0  # 90 degrees clockwise
    np.testing.assert_array_equal(rgb.permute(1, 2, 0).numpy(), expected)


def test_8bit_images_read_as_before(nyu_sample):
    path = nyu_sample / "nyu2_test/00000_colors.png"
    expected = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1).float().div_(255.0)
    assert torch.equal(read_rgb(path), expected)
    palette = Image.fromarray(np.array([[0, 1], [2, 3]], np.uint8), mode="P")
    palette.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120] + [0] * 756)
    assert (rgb_array(palette)[1, 1] * 255).round().tolist() == [100, 110, 120]


def test_32bit_gray_beyond_16_bits_is_refused():
    assert rgb_array(Image.fromarray(np.array([[0, 65535]], np.int32)))[0, 1].tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(DatasetError, match=r"big\.tif: a I image with values 0\.\.70000"):
        rgb_array(Image.fromarray(np.array([[0, 70000]], np.int32)), "big.tif")
