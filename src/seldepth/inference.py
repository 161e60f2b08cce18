"""Running a depth model: from an RGB image to metric depth at the image's resolution."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seldepth.colormap import colorize_depth
from seldepth.data.images import read_rgb
from seldepth.models.base import has_output
from seldepth.models.preprocessing import Preprocessing


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


def as_rgb_tensor(image) -> torch.Tensor:
    """(3, H, W) float RGB in [0, 1] from a path, a PIL image, a uint8 (H, W, 3) array or a tensor."""
    if isinstance(image, (str, os.PathLike)):
        return read_rgb(Path(image))
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
        arr = torch.from_numpy(image.copy()).permute(2, 0, 1)
        return arr.float() / 255.0 if image.dtype == np.uint8 else arr.float()
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) RGB tensor in [0, 1], got shape {tuple(image.shape)}")
        return image.float()
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def predict(model: torch.nn.Module, image, flip: bool = False, vmin: float | None = None,
            vmax: float | None = None) -> dict:
    """Depth for one image, at the image's resolution.

    Args:
        model: a depth model (e.g. from :func:`seldepth.load_model`).
        image: a path, PIL image, (H, W, 3) uint8 array or (3, H, W) tensor in [0, 1].
        flip: horizontal-flip test-time averaging.
        vmin, vmax: fixed colour range of the returned picture (default: per image).

    Returns:
        ``{"predicted_depth": (H, W) float tensor in metres, "depth": colour-mapped PIL image}``.

    Example:
        >>> out = seldepth.predict(model, "room.png")
        >>> out["predicted_depth"].shape, out["depth"].size
    """
    rgb = as_rgb_tensor(image)
    was_training = model.training
    model.eval()
    try:
        depth = predict_depth(model, rgb[None], flip=flip)[0, 0].cpu()
    finally:
        model.train(was_training)
    return {"predicted_depth": depth, "depth": colorize_depth(depth, vmin, vmax)}
