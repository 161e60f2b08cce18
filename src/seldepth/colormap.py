"""Colour-mapping depth maps (matplotlib colour maps, fixed or per-image range)."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image


def colorize_depth(depth: torch.Tensor | np.ndarray, vmin: float | None = None, vmax: float | None = None,
                   cmap: str = "turbo", invalid_color=(0, 0, 0)) -> Image.Image:
    """Colour-map a (H, W) depth map in metres to an RGB PIL image.

    ``vmin``/``vmax`` fix the range (use them for video: a per-frame range flickers); by
    default the 2nd and 98th percentiles of the valid (finite, > 0) pixels. Invalid pixels
    get ``invalid_color``.
    """
    d = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    d = np.squeeze(d).astype(np.float64)
    if d.ndim != 2:
        raise ValueError(f"colorize_depth expects a (H, W) depth map, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    if vmin is None or vmax is None:
        lo, hi = (np.percentile(d[valid], [2, 98]) if valid.any() else (0.0, 1.0))
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    scaled = np.clip((d - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    rgb = (colormaps[cmap](np.where(valid, scaled, 0))[..., :3] * 255).astype(np.uint8)
    rgb[~valid] = invalid_color
    return Image.fromarray(rgb)
