"""Reading RGB images and depth maps from files or bytes, with errors that name the file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from seldepth.data.errors import DatasetError


def open_image(source: str | Path | bytes, name: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
        return img
    except FileNotFoundError:
        raise DatasetError(f"{name}: file not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DatasetError(f"{name}: not a readable image ({exc})") from None


def read_rgb(source: str | Path | bytes, name: str | None = None) -> torch.Tensor:
    """Read an image as (3, H, W) float RGB in [0, 1]."""
    img = open_image(source, name or str(source))
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def read_depth_png(source: str | Path | bytes, name: str | None = None, scale_16bit: float = 1000.0,
                   max_depth_8bit: float = 10.0) -> torch.Tensor:
    """Read a depth PNG as (1, H, W) float metres; 0 stays 0 (invalid).

    16-bit PNGs hold ``metres * scale_16bit`` (NYU millimetres: 1000, KITTI: 256). 8-bit PNGs
    are the DenseDepth training format, ``value / 255 * max_depth_8bit`` metres.
    """
    name = name or str(source)
    img = open_image(source, name)
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise DatasetError(f"{name}: a depth map must have one channel, got an image of mode {img.mode}")
    if arr.dtype == np.uint8:
        depth = arr.astype(np.float32) / 255.0 * max_depth_8bit
    elif arr.dtype in (np.uint16, np.int32, np.int16, np.uint32):
        depth = arr.astype(np.float32) / scale_16bit
    else:
        raise DatasetError(f"{name}: unsupported depth PNG data type {arr.dtype}")
    return torch.from_numpy(depth)[None]
