"""Attention maps of a model's layers on one image: A(T) = sum over channels of |T| (Jiao et al., ECCV 2018).

- :func:`attention_map`: the formula, (B, C, h, w) activation -> (B, h, w).
- :func:`capture_attention`: run a model on one image and return the attention map of each
  named layer (forward hooks; layers named as in :func:`~seldepth.selectivity.dissect.resolve_layers`).
- :func:`save_attention`: one PNG overlay per layer, a contact sheet and an ``.npz`` of the raw maps.

Example:
    >>> model = load_model("meter_xxs_nyu.safetensors")
    >>> maps = capture_attention(model, read_rgb("room.png"), layers="enc_2,enc_5,dec_3")
    >>> save_attention(maps, read_rgb("room.png"), "runs/attention", prefix="room")
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from seldepth.atomic import atomic_path
from seldepth.inference import model_input
from seldepth.models.loading import resolve_model_file
from seldepth.models.base import pad_to_multiple
from seldepth.prediction.colormap import colorize_depth
from seldepth.selectivity.dissect import resolve_layers


def attention_map(activation: torch.Tensor) -> torch.Tensor:
    """Sum over channels of the absolute activation.

    Args:
        activation: (B, C, h, w) a layer's output.

    Returns:
        (B, h, w) attention map A = sum_c |activation[:, c]|, same dtype.

    Example:
        >>> attention_map(torch.tensor([[[[1., -2.]], [[-3., 4.]]]]))
        tensor([[[4., 6.]]])
    """
    if not isinstance(activation, torch.Tensor) or activation.ndim != 4:
        what = f"shape {tuple(activation.shape)}" if isinstance(activation, torch.Tensor) else type(activation).__name__
        raise ValueError(f"attention_map: expected a (B, C, h, w) activation, got {what}")
    return activation.abs().sum(dim=1)


@dataclass
class AttentionMaps:
    """Attention maps of one image.

    Attributes:
        maps: {layer name: (h, w) float32 attention map over the layer's whole output grid}.
        input_size: (H, W) of the model input (after the model's preprocessing).
        padded_size: (H', W') the network ran on after its own padding (``size_multiple``);
            a map's top-left ``H / H'``, ``W / W'`` fraction covers the image.
    """

    maps: dict[str, torch.Tensor]
    input_size: tuple[int, int]
    padded_size: tuple[int, int]

    def covering_image(self, name: str) -> torch.Tensor:
        """(h', w') the part of layer ``name``'s map that covers the image (the padding cropped off)."""
        a = self.maps[name]
        rows = math.ceil(a.shape[0] * self.input_size[0] / self.padded_size[0])
        cols = math.ceil(a.shape[1] * self.input_size[1] / self.padded_size[1])
        return a[:rows, :cols]


def check_attention_args(model: str | os.PathLike, image: str | os.PathLike, allow_unverified: bool = False) -> None:
    """Fail before any work: the model file (or pretrained model, downloaded if need be) and the image exist and the
    model has hookable layers (not ONNX or OpenVINO)."""
    try:
        resolve_model_file(model, allow_unverified=allow_unverified)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"--model: {exc}") from None
    if Path(model).suffix in (".onnx", ".xml"):
        kind = "an ONNX" if Path(model).suffix == ".onnx" else "an OpenVINO"
        raise ValueError(f"--model {model}: {kind} model has no layers to hook; use its .safetensors model file or .ckpt")
    if not Path(image).is_file():
        raise FileNotFoundError(f"--image: image file not found: {image}")


@torch.no_grad()
def capture_attention(model: nn.Module, image: torch.Tensor, layers: list[str] | str | None = None) -> AttentionMaps:
    """Run ``model`` once on ``image`` and take the attention map of each named layer's output.

    The model sees exactly its preprocessed input (:func:`~seldepth.inference.model_input`)
    and runs in eval mode (its mode is restored after). A layer that outputs a tuple or
    NamedTuple contributes its first tensor.

    Args:
        model: a seldepth depth model (an ``nn.Module``; ONNX models have no layers to hook).
        image: (3, H, W) float RGB in [0, 1].
        layers: short names or ``named_modules()`` paths (a comma-separated string is split);
            default all of the model's ``selectivity_layers``.

    Returns:
        :class:`AttentionMaps`, maps on the CPU in the order of ``layers``.

    Raises:
        ValueError: not an ``nn.Module``, a bad image shape, an unknown layer (listing the
            available ones), or a layer that did not run or does not output (B, C, h, w).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"{type(model).__name__} has no layers to hook (an ONNX model?); load a .safetensors or .ckpt model")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image: expected (3, H, W) float RGB in [0, 1], got shape {tuple(image.shape)}")
    paths = resolve_layers(model, layers)
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}

    def hook_for(name: str):
        def hook(module, args, output):
            if isinstance(output, tuple):
                output = next((t for t in output if isinstance(t, torch.Tensor)), output)
            outputs[name] = attention_map(output) if isinstance(output, torch.Tensor) and output.ndim == 4 else output
        return hook

    x = model_input(model, image[None])
    handles = [modules[path].register_forward_hook(hook_for(name)) for name, path in paths.items()]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    maps = {}
    for name, path in paths.items():
        out = outputs.get(name)
        if not isinstance(out, torch.Tensor) or out.ndim != 3:
            what = "did not run" if name not in outputs else f"outputs {getattr(out, 'shape', type(out).__name__)}"
            raise ValueError(f"layers: {name!r} ({path}) {what}; attention needs a (B, C, h, w) output")
        maps[name] = out[0].float().cpu()
    padded = tuple(pad_to_multiple(x[:, :1], int(getattr(model, "size_multiple", 1) or 1)).shape[-2:])
    return AttentionMaps(maps, tuple(x.shape[-2:]), padded)


def attention_overlay(attention: torch.Tensor, image: torch.Tensor, cmap: str = "inferno", alpha: float = 0.5) -> Image.Image:
    """The image with an attention map blended on top.

    Args:
        attention: (h, w) attention map covering the image; bilinearly upsampled to (H, W) and
            min-max normalised to [0, 1] (a constant map shows as 0).
        image: (3, H, W) float RGB in [0, 1].
        cmap: matplotlib colour map of the attention.
        alpha: weight of the colour-mapped attention (0: image only, 1: attention only).

    Returns:
        (H, W) RGB PIL image.
    """
    a = F.interpolate(attention[None, None].float(), size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)[0, 0]
    a = (a - a.min()) / (a.max() - a.min()).clamp_min(1e-12)
    low = tuple(int(c * 255) for c in colormaps[cmap](0.0)[:3])  # 0 is "invalid" to colorize_depth: give it the map's own colour
    heat = np.asarray(colorize_depth(a, vmin=0.0, vmax=1.0, cmap=cmap, invalid_color=low), dtype=np.float32) / 255
    rgb = image.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    return Image.fromarray(np.round(255 * ((1 - alpha) * rgb + alpha * heat)).astype(np.uint8))


def _aspect(image: torch.Tensor) -> float:
    """Height / width of the panels, kept within [1/8, 8] (a 1-pixel-wide image must not make a figure miles high)."""
    height, width = image.shape[-2:]
    return min(max(height / max(width, 1), 1 / 8), 8.0)


def save_attention(result: AttentionMaps, image: torch.Tensor, out_dir: str | os.PathLike, prefix: str = "attention",
                   cmap: str = "inferno", alpha: float = 0.5, columns: int = 6) -> list[Path]:
    """Write ``PREFIX_LAYER.png`` overlays, ``PREFIX_sheet.png`` (image and all layers) and ``PREFIX.npz`` (raw maps).

    Args:
        result: from :func:`capture_attention` on ``image``.
        image: (3, H, W) float RGB in [0, 1].
        out_dir: output folder (created).
        prefix: start of the file names (e.g. the image's stem).
        cmap, alpha: of :func:`attention_overlay`.
        columns: panels per row of the contact sheet.

    Returns:
        The written paths: overlays in layer order, then the sheet, then the ``.npz``
        (key = layer name, value = (h, w) float32 map over the layer's whole output grid).
    """
    out = Path(out_dir)
    overlays = {name: attention_overlay(result.covering_image(name), image, cmap, alpha) for name in result.maps}
    paths = []
    for name, overlay in overlays.items():
        with atomic_path(out / f"{prefix}_{name}.png") as tmp:
            overlay.save(tmp, format="PNG")
        paths.append(out / f"{prefix}_{name}.png")
    panels = [("image", image.permute(1, 2, 0).clamp(0, 1).cpu().numpy()), *overlays.items()]
    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    aspect = _aspect(image)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows * aspect + 0.35 * rows))
    for i, (title, picture) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(picture)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    FigureCanvasAgg(fig)
    with atomic_path(out / f"{prefix}_sheet.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    paths.append(out / f"{prefix}_sheet.png")
    with atomic_path(out / f"{prefix}.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **{name: a.numpy() for name, a in result.maps.items()})
    paths.append(out / f"{prefix}.npz")
    return paths


def plot_attention_grid(image: torch.Tensor, rows: dict[str, AttentionMaps], path: str | os.PathLike,
                        cmap: str = "inferno", alpha: float = 0.5) -> Path:
    """One row per model: the image, then the overlay of each of its layers' attention maps (the report's figure).

    Args:
        image: (3, H, W) float RGB in [0, 1], the image every model saw.
        rows: row title (a run's name) -> its :func:`capture_attention` result on ``image``.
        path: PNG to write (atomically).
    """
    columns = 1 + max(len(r.maps) for r in rows.values())
    fig = Figure(figsize=(2.3 * columns, (2.3 * _aspect(image) + 0.4) * len(rows)))
    picture = image.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    for r, (title, result) in enumerate(rows.items()):
        panels = [(f"{title}: image", picture)]
        panels += [(name, attention_overlay(result.covering_image(name), image, cmap, alpha)) for name in result.maps]
        for c, (label, panel) in enumerate(panels):
            ax = fig.add_subplot(len(rows), columns, r * columns + c + 1)
            ax.imshow(panel)
            ax.set_title(label, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    FigureCanvasAgg(fig)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)

