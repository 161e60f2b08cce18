"""Colour-mapping depth maps (matplotlib colour maps, fixed or per-image range)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image


def depth_map_2d(depth: torch.Tensor | np.ndarray, what: str = "depth") -> np.ndarray:
    """A depth map as a 2-D array: leading axes of size 1 are dropped ((1, H, W), (1, 1, H, W) -> (H, W)),
    never the image's own axes, so a 1-pixel-high or -wide map stays (1, W) or (H, 1).

    Raises:
        ValueError: naming ``what``, for anything else than (H, W) after dropping those axes.
    """
    d = depth.detach().cpu().numpy() if isinstance(depth, torch.Tensor) else np.asarray(depth)
    while d.ndim > 2 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"{what}: expected a (H, W) depth map, got shape {d.shape}")
    return d


def colorize_depth(depth: torch.Tensor | np.ndarray, vmin: float | None = None, vmax: float | None = None,
                   cmap: str = "turbo", invalid_color=(0, 0, 0)) -> Image.Image:
    """Colour-map a (H, W) depth map in metres to an RGB PIL image.

    ``vmin``/``vmax`` fix the range (use them for video: a per-frame range flickers); by
    default the 2nd and 98th percentiles of the valid (finite, > 0) pixels. Invalid pixels
    get ``invalid_color``.
    """
    d = depth_map_2d(depth, "colorize_depth").astype(np.float64)
    valid = np.isfinite(d) & (d > 0)
    if vmin is None or vmax is None:
        lo, hi = (np.percentile(d[valid], [2, 98]) if valid.any() else (0.0, 1.0))
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    lut = colormap_lut(cmap)
    index = np.clip((d - vmin) / max(vmax - vmin, 1e-12), 0, 1) * len(lut)
    index[~valid] = 0
    index[index == len(lut)] = len(lut) - 1  # 1.0 is the last colour, as matplotlib maps it
    rgb = lut[index.astype(np.intp)]
    rgb[~valid] = invalid_color
    return Image.fromarray(rgb)


@functools.lru_cache(maxsize=32)
def colormap_lut(cmap: str) -> np.ndarray:
    """The (N, 3) uint8 colours of the matplotlib colour map ``cmap`` (N = its number of colours, 256 for turbo).

    Indexing it with ``int(x * N)`` (``x`` in [0, 1], 1 -> N - 1) gives what ``colormaps[cmap](x)[:3] * 255``
    truncated to uint8 gives, without matplotlib's per-call work.

    Raises:
        ValueError: ``cmap`` is not a matplotlib colour map name (the error lists a few).
    """
    if cmap not in colormaps:
        known = sorted(name for name in colormaps if not name.endswith("_r"))
        raise ValueError(f"cmap {cmap!r} is not a matplotlib colour map; e.g. {', '.join(known[:12])}, ... "
                         f"(any name of matplotlib.colormaps, '_r' reversed)")
    table = colormaps[cmap]
    lut = (table(np.arange(table.N))[:, :3] * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def grayscale_depth(depth: torch.Tensor | np.ndarray, vmin: float | None = None, vmax: float | None = None) -> Image.Image:
    """A (H, W) depth map in metres as an 8-bit grayscale (``L``) PIL image, as HF's depth-estimation pipeline
    makes its ``depth`` image: ``uint8((d - min) / (max - min) * 255)`` over the image's finite pixels, so
    that (for depth, unlike disparity) far is bright.

    ``vmin``/``vmax`` fix the range instead (depth outside it is clipped). Non-finite pixels are 0; a
    constant map is all 0.
    """
    d = depth_map_2d(depth, "grayscale_depth").astype(np.float64)  # (1, H, W), (1, 1, H, W) -> (H, W)
    finite = np.isfinite(d)
    lo = vmin if vmin is not None else (float(d[finite].min()) if finite.any() else 0.0)
    hi = vmax if vmax is not None else (float(d[finite].max()) if finite.any() else 0.0)
    scaled = np.clip((np.where(finite, d, lo) - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(d)
    return Image.fromarray((scaled * 255).astype(np.uint8))
