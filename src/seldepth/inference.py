"""Running a depth model: from an RGB image to metric depth at the image's resolution.

Also where the device is chosen (:func:`resolve_device`, :func:`choose_device`; defined in
:mod:`seldepth.models.devices` so that ``load_model(device=...)`` can use them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seldepth.colormap import colorize_depth, grayscale_depth
from seldepth.data.images import read_rgb, rgb_array
from seldepth.models.base import has_output
from seldepth.models.devices import DEVICE_CHOICES, choose_device, resolve_device
from seldepth.models.preprocessing import Preprocessing

__all__ = ["DEVICE_CHOICES", "as_rgb_tensor", "choose_device", "model_input", "model_preprocessing", "predict",
           "predict_depth", "predict_semantics", "resolve_device", "semantic_classes"]

# Float images may stray this far outside [0, 1] (one 8-bit step; clamped); beyond it they are refused.
RANGE_TOLERANCE = 1.0 / 255.0
IMAGE_HELP = ("expected an image path, a PIL image, an (H, W, 3) uint8 array (0..255), an (H, W, 3) float array or a "
              "(3, H, W) float tensor in [0, 1], or a (3, H, W) uint8 tensor")


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


def _result(depth: torch.Tensor, vmin: float | None, vmax: float | None) -> dict:
    return {"predicted_depth": depth, "depth": grayscale_depth(depth, vmin, vmax),
            "depth_color": colorize_depth(depth, vmin, vmax)}


def predict(model: torch.nn.Module, image, flip: bool = False, vmin: float | None = None,
            vmax: float | None = None, batch_size: int = 8) -> dict | list[dict]:
    """Depth for one image, or for a list of images, each at its own resolution.

    Args:
        model: a depth model (e.g. from :func:`seldepth.load_model`).
        image: one image: a path, a PIL image, an (H, W, 3) uint8 array, an (H, W, 3) float array or
            (3, H, W) float tensor in [0, 1], a (3, H, W) uint8 tensor; or a list (or tuple) of them.
            Anything else (a float image in 0..255, NaN, another shape, uint16 RGB) is a ValueError.
        flip: horizontal-flip test-time averaging.
        vmin, vmax: fixed range (metres) of the returned pictures (default: per image).
        batch_size: images of equal size per forward pass, for a list.

    Returns:
        For one image ``{"predicted_depth": (H, W) float tensor in metres, "depth": grayscale PIL image
        (mode ``L``, as HF's depth-estimation pipeline: min..max -> 0..255, far is bright),
        "depth_color": colour-mapped PIL image (turbo: near blue, far red)}``; for a list, a list of them
        in the same order.

    Example:
        >>> out = seldepth.predict(model, "room.png")
        >>> out["predicted_depth"].shape, out["depth"].mode, out["depth_color"].size
        >>> outs = seldepth.predict(model, ["a.png", "b.png"])
    """
    if isinstance(image, (list, tuple)):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        rgbs = []
        for i, item in enumerate(image):
            try:
                rgbs.append(as_rgb_tensor(item))
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"image {i} of the list: {exc}") from None
        depths: list[torch.Tensor | None] = [None] * len(rgbs)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, rgb in enumerate(rgbs):
            by_size.setdefault(tuple(rgb.shape[-2:]), []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), int(batch_size)):
                chunk = indices[start:start + int(batch_size)]
                batch = _predict_batch(model, torch.stack([rgbs[i].to(rgbs[chunk[0]].device) for i in chunk]), flip)
                for i, depth in zip(chunk, batch):
                    depths[i] = depth
        return [_result(d, vmin, vmax) for d in depths]
    rgb = as_rgb_tensor(image)
    return _result(_predict_batch(model, rgb[None], flip)[0], vmin, vmax)


def _predict_batch(model: torch.nn.Module, images: torch.Tensor, flip: bool) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, H, W) metres on the CPU, in eval mode (the model's mode restored)."""
    was_training = model.training
    model.eval()
    try:
        return predict_depth(model, images, flip=flip)[:, 0].cpu()
    finally:
        model.train(was_training)
