"""Reading RGB images and depth maps from files or bytes, with errors that name the file.

RGB images are turned the way they are displayed (EXIF orientation, as HF's ``load_image`` and
OpenCV's ``imread`` do). 16-bit PNGs keep their precision: grayscale (mode ``I;16`` / ``I``) is
value / 65535 in all three channels, and 16-bit RGB(A) PNGs, which Pillow reduces to 8 bits, are
decoded at 16 bits by FFmpeg (PyAV) as value / 65535.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from seldepth.data.errors import DatasetError
from seldepth.defaults import has_extra

# The most pixels an image (or values a depth array) may declare before it is decoded: one 80-megapixel
# image took 7.3 GB to read. Raised (or, with 0, lifted) by the environment variable or ``max_pixels=``.
MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "SELDEPTH_MAX_PIXELS"


def pixel_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$SELDEPTH_MAX_PIXELS``, else :data:`MAX_PIXELS`
    (0 or less: no limit).

    Raises:
        ValueError: naming the variable, when ``$SELDEPTH_MAX_PIXELS`` is not a whole number.
    """
    if max_pixels is not None:
        return int(max_pixels)
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_PIXELS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r}: expected a whole number of pixels (0: no limit)")
    return int(value)


def check_pixels(name: str, width: int, height: int, max_pixels: int | None = None) -> None:
    """Refuse an image whose header declares more pixels than the limit (before any pixel is decoded).

    Raises:
        DatasetError: naming the file, its size and how to raise the limit.
    """
    limit = pixel_limit(max_pixels)
    if limit > 0 and width * height > limit:
        raise DatasetError(f"{name}: the image is {width}x{height} = {width * height / 1e6:.1f} megapixels, more than "
                           f"the limit of {limit / 1e6:g} megapixels that seldepth decodes (decoding it would take "
                           f"about {width * height * 16 / 2**30:.1f} GiB); raise the limit with the environment variable "
                           f"{MAX_PIXELS_ENV}=N (pixels; 0: no limit) or max_pixels=N, or downscale the image")


def open_image(source: str | Path | bytes, name: str, max_pixels: int | None = None) -> Image.Image:
    """Open and decode an image; its declared size is checked against the pixel limit (:func:`pixel_limit`) first.

    Raises:
        DatasetError: naming the file: missing, not a readable image, or too large.
    """
    limit = pixel_limit(max_pixels)
    try:
        with warnings.catch_warnings():  # seldepth's own limit below says more than PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise DatasetError(f"{name}: file not found") from None
    except Image.DecompressionBombError as exc:
        raise DatasetError(f"{name}: too large to decode ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DatasetError(f"{name}: not a readable image ({exc})") from None
    check_pixels(name, img.width, img.height, limit)  # from the header: nothing decoded yet
    try:
        img.load()
        return img
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DatasetError(f"{name}: not a readable image ({exc})") from None


# EXIF orientation (tag 0x0112) -> what turns the stored pixels the way they are displayed, on (H, W, C) arrays
# (the operations of PIL.ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90
# clockwise, 7 transverse, 8 rotate 90 counter-clockwise).
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _png_bit_depth_and_colour(source: str | Path | bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR, or None when ``source`` is not a PNG."""
    try:
        if isinstance(source, bytes):
            head = source[:26]
        else:
            with open(source, "rb") as f:
                head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _decode_png48(source: str | Path | bytes) -> np.ndarray | None:
    """A 16-bit RGB(A) PNG as (H, W, 3) uint16 through FFmpeg (Pillow keeps 8 bits only); None if that fails."""
    if not has_extra("av"):  # the video extra; without it, Pillow's 8 bits
        return None
    import av

    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), format="png_pipe") as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb48le")
    except Exception:  # FFmpeg's errors come in many types; Pillow's 8-bit reading is the fallback
        return None


def rgb_array(img: Image.Image, name: str = "image") -> np.ndarray:
    """A PIL image as (H, W, 3) float32 RGB in [0, 1], turned by its EXIF orientation.

    8-bit modes are value / 255 (alpha dropped, palettes and grayscale expanded); 16-bit grayscale
    (``I;16``, ``I``) is value / 65535 in all three channels.

    Raises:
        DatasetError: naming ``name``, for a 32-bit integer image with values outside 0..65535.
    """
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a malformed EXIF block: the pixels as stored
        pass
    if img.mode in GRAY16_MODES:
        gray = np.asarray(img)
        if gray.dtype.kind in "iu" and gray.dtype.itemsize > 2 and (gray.min(initial=0) < 0 or gray.max(initial=0) > 65535):
            raise DatasetError(f"{name}: a {img.mode} image with values {gray.min()}..{gray.max()}; "
                               f"expected 8-bit RGB or 16-bit grayscale (0..65535)")
        gray = gray.astype(np.float32) / 65535.0
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).astype(np.float32) / 255.0


def read_rgb(source: str | Path | bytes, name: str | None = None, max_pixels: int | None = None) -> torch.Tensor:
    """Read an image as (3, H, W) float RGB in [0, 1], turned the way it is displayed (EXIF orientation).

    16-bit PNGs keep 16 bits: grayscale as value / 65535 in all three channels, RGB(A) as value / 65535.

    Raises:
        DatasetError: naming the file; also for an image of more than ``max_pixels`` pixels (default
            :data:`MAX_PIXELS`, or ``$SELDEPTH_MAX_PIXELS``), refused from its header before it is decoded.
    """
    name = name or str(source)
    img = open_image(source, name, max_pixels)
    png = _png_bit_depth_and_colour(source) if img.format == "PNG" else None
    if png is not None and png[0] == 16 and png[1] in (2, 6):  # 16-bit RGB / RGBA
        arr16 = _decode_png48(source)
        if arr16 is not None and arr16.shape[:2] == (img.height, img.width):
            try:
                orientation = img.getexif().get(0x0112)
            except Exception:  # a malformed EXIF block: the pixels as stored
                orientation = None
            arr16 = _ORIENT.get(orientation, lambda a: a)(arr16)
            return torch.from_numpy(np.ascontiguousarray(arr16).astype(np.float32) / 65535.0).permute(2, 0, 1).contiguous()
    arr = rgb_array(img, name)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


DEFAULT_SCALE_16BIT = 1000.0  # NYU millimetres: the 16-bit scale when none is declared


def read_depth_png(source: str | Path | bytes, name: str | None = None, scale_16bit: float | None = None,
                   max_depth_8bit: float = 10.0, max_pixels: int | None = None) -> torch.Tensor:
    """Read a depth PNG as (1, H, W) float metres; 0 stays 0 (invalid).

    16-bit PNGs hold ``metres * scale_16bit`` (NYU millimetres: 1000, KITTI: 256). 8-bit PNGs
    are the DenseDepth training format, ``value / 255 * max_depth_8bit`` metres, read only when no
    scale is declared (``scale_16bit=None``: the DenseDepth layout, where 16-bit PNGs are millimetres).

    Raises:
        DatasetError: naming the file: unreadable, several channels, or an 8-bit PNG where a 16-bit
            scale was declared (a KITTI annotation's x256, ``folder:...?scale=256``): reading it as
            DenseDepth's value / 255 x 10 m would silently give depth of another unit.
    """
    name = name or str(source)
    img = open_image(source, name, max_pixels)
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise DatasetError(f"{name}: a depth map must have one channel, got an image of mode {img.mode}")
    if arr.dtype == np.uint8:
        if scale_16bit is not None:
            raise DatasetError(f"{name}: an 8-bit depth PNG, but a scale of {float(scale_16bit):g} values per metre "
                               f"was declared for it, which 16-bit depth PNGs hold (8 bits give at most 255 levels); "
                               f"write the depth as a 16-bit PNG (metres x {float(scale_16bit):g})")
        depth = arr.astype(np.float32) / 255.0 * max_depth_8bit
    elif arr.dtype in (np.uint16, np.int32, np.int16, np.uint32):
        depth = arr.astype(np.float32) / (DEFAULT_SCALE_16BIT if scale_16bit is None else float(scale_16bit))
    else:
        raise DatasetError(f"{name}: unsupported depth PNG data type {arr.dtype}")
    return torch.from_numpy(depth)[None]
