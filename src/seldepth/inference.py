"""Running a depth model: from an RGB image to metric depth at the image's resolution.

Also where the device is chosen (:func:`resolve_device`, :func:`choose_device`; defined in
:mod:`seldepth.models.devices` so that ``load_model(device=...)`` can use them).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seldepth.data.images import read_rgb, rgb_array
from seldepth.models.base import has_output
from seldepth.models.devices import DEVICE_CHOICES, choose_device, resolve_device
from seldepth.models.preprocessing import Preprocessing

__all__ = ["DEVICE_CHOICES", "NonFiniteDepthWarning", "as_rgb_tensor", "check_some_finite", "choose_device",
           "count_non_finite", "model_input", "model_name", "model_preprocessing", "predict_depth",
           "predict_semantics", "resolve_device", "semantic_classes"]

# Float images may stray this far outside [0, 1] (one 8-bit step; clamped); beyond it they are refused.
RANGE_TOLERANCE = 1.0 / 255.0
IMAGE_HELP = ("expected an image path, a PIL image, an (H, W, 3) uint8 array (0..255), an (H, W, 3) float array or a "
              "(3, H, W) float tensor in [0, 1], or a (3, H, W) uint8 tensor")


class NonFiniteDepthWarning(UserWarning):
    """A model predicted NaN or infinite depth (NaN weights, an overflow in half precision, a broken export).

    The message gives the model and the count; :func:`predict`, ``predict_paths`` and ``evaluate`` raise a
    ValueError when every value they predicted is non-finite.
    """


def model_name(model) -> str:
    """The model named for messages: its file (ONNX) or registry name, else its type."""
    path = getattr(model, "path", None)
    name = getattr(model, "name", None) or type(model).__name__
    return f"{name} ({path})" if path is not None and str(path) != str(name) else str(name)


def count_non_finite(depth: torch.Tensor | np.ndarray) -> int:
    """The number of NaN or infinite values in ``depth``."""
    if isinstance(depth, torch.Tensor):
        return int((~torch.isfinite(depth)).sum()) if depth.is_floating_point() else 0
    depth = np.asarray(depth)
    return int(np.count_nonzero(~np.isfinite(depth))) if depth.dtype.kind == "f" else 0


def check_some_finite(model, non_finite: int, total: int, what: str = "predictions") -> None:
    """Raise when all ``total`` predicted values (``total`` > 0) were non-finite.

    Raises:
        ValueError: naming the model, with the count.
    """
    if total > 0 and non_finite >= total:
        raise ValueError(f"model {model_name(model)}: all {total} values of its {what} are NaN or infinite; the "
                         f"model is broken (NaN weights, an overflow, a bad export) and its output is not depth")


def model_preprocessing(model: torch.nn.Module) -> Preprocessing:
    """The preprocessing a model was trained with (from its model file), else the METER default."""
    return getattr(model, "preprocessing", None) or Preprocessing()


def model_input(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's preprocessed input batch, on its device and in its (float) dtype.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1].
    """
    param = next(iter([*model.parameters(), *model.buffers()]), images)
    x = model_preprocessing(model)(images.to(param.device))
    return x.to(param.dtype) if param.is_floating_point() else x


@torch.no_grad()
def predict_depth(model: torch.nn.Module, images: torch.Tensor, flip: bool = False,
                  size: tuple[int, int] | None = None) -> torch.Tensor:
    """Metric depth for a batch of RGB images.

    Args:
        model: a depth model (eval mode is the caller's choice).
        images: (B, 3, H, W) float RGB in [0, 1], any size.
        flip: also predict on the horizontally flipped images and average (after flipping back).
        size: output (H, W); default the input's size. Upsampling is bilinear (align_corners=False).

    Returns:
        (B, 1, H, W) depth in metres.
    """
    x = model_input(model, images)
    if flip:
        both = model(torch.cat([x, x.flip(-1)]))
        depth = 0.5 * (both[: len(x)] + both[len(x):].flip(-1))
    else:
        depth = model(x)
    out_size = tuple(size) if size is not None else tuple(images.shape[-2:])
    if tuple(depth.shape[-2:]) != out_size:
        depth = F.interpolate(depth, size=out_size, mode="bilinear", align_corners=False)
    bad = count_non_finite(depth)
    if bad:
        warnings.warn(f"model {model_name(model)} predicted {bad} non-finite (NaN or infinite) depth values of "
                      f"{depth.numel()} in a batch of {len(depth)} images", NonFiniteDepthWarning, stacklevel=3)
    return depth


def semantic_classes(model: torch.nn.Module) -> int:
    """Number of semantic classes a model predicts (0: depth only)."""
    multi = has_output(model, "tasks") or has_output(model, "heads")
    return int(getattr(getattr(model, "config", None), "semantic_classes", 0) or 0) if multi else 0


@torch.no_grad()
def predict_semantics(model: torch.nn.Module, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Semantic logits (B, C, H, W) of a model with a semantic output (``synergy_depth``, or
    ``realtime_depth`` with ``semantic_classes``: its finest head), upsampled bilinearly to ``size``."""
    if not semantic_classes(model):
        raise ValueError(f"{getattr(model, 'name', type(model).__name__)} has no semantic output")
    x = model_input(model, images)
    logits = model.forward_tasks(x).semantics if has_output(model, "tasks") else model.forward_heads(x).semantics[0]
    out_size = tuple(size) if size is not None else tuple(images.shape[-2:])
    if tuple(logits.shape[-2:]) != out_size:
        logits = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)
    return logits


def _from_float(x: torch.Tensor, what: str) -> torch.Tensor:
    """A float image in [0, 1] as float32, refusing NaN / inf and values beyond [0, 1] by more than one 8-bit step."""
    x = x.float()
    if x.numel() == 0:
        raise ValueError(f"{what} is empty; " + IMAGE_HELP)
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} holds NaN or infinite values; " + IMAGE_HELP)
    lo, hi = float(x.min()), float(x.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        hint = (" (it looks like 0..255: divide by 255, or pass it as uint8)" if hi > 1.0 + RANGE_TOLERANCE and hi <= 255.0
                and lo >= 0 else "")
        raise ValueError(f"{what} has values {lo:g}..{hi:g}; a float image must be RGB in [0, 1]{hint}")
    return x.clamp(0.0, 1.0)  # a new tensor: the caller's image is left as it is


def as_rgb_tensor(image) -> torch.Tensor:
    """(3, H, W) float RGB in [0, 1] from one image.

    Accepted: a path (read with :func:`~seldepth.data.images.read_rgb`: EXIF orientation, 16-bit PNGs); a PIL
    image (EXIF orientation applied; 16-bit grayscale / 65535); an (H, W, 3) array, uint8 (0..255) or float
    in [0, 1]; a (3, H, W) tensor, float in [0, 1] or uint8.

    Raises:
        ValueError: saying what was expected, for a wrong shape, NaN, a float image outside [0, 1] (more
            than one 8-bit step: e.g. 0..255 floats), or an integer type other than uint8 (uint16 RGB is
            ambiguous: 12-bit? 16-bit?).
        TypeError: for anything that is not an image.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_rgb(Path(image))
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.ascontiguousarray(rgb_array(image))).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            hint = " (a batch? pass a list of images)" if image.ndim == 4 else ""
            raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}{hint}; " + IMAGE_HELP)
        if image.dtype == np.uint8:
            return torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255.0
        if image.dtype.kind == "f":
            return _from_float(torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1), "the float image array")
        raise ValueError(f"an (H, W, 3) array of dtype {image.dtype} is not an image seldepth reads: "
                         f"convert it to uint8 (0..255) or to float in [0, 1]; " + IMAGE_HELP)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            hint = " (a batch? pass a list of images)" if image.ndim == 4 else ""
            raise ValueError(f"expected a (3, H, W) RGB tensor in [0, 1], got shape {tuple(image.shape)}{hint}; "
                             + IMAGE_HELP)
        if image.dtype == torch.uint8:
            return image.float() / 255.0
        if image.is_floating_point():
            return _from_float(image, "the float image tensor")
        raise ValueError(f"a (3, H, W) tensor of dtype {image.dtype} is not an image seldepth reads: "
                         f"convert it to uint8 (0..255) or to float in [0, 1]; " + IMAGE_HELP)
    raise TypeError(f"cannot read an image from {type(image).__name__}; " + IMAGE_HELP)
