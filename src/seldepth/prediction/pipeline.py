"""``seldepth.predict``: depth for images in memory or on disk, shaped like the transformers depth-estimation
pipeline's output (the metric depth, a grayscale picture and a colour-mapped one)."""

from __future__ import annotations

import torch

from seldepth.defaults import check_number
from seldepth.inference import as_rgb_tensor, check_some_finite, count_non_finite, predict_depth
from seldepth.prediction.colormap import colorize_depth, grayscale_depth


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
        A model whose every predicted value is NaN or infinite is a ValueError naming it; some
        non-finite values are a :class:`NonFiniteDepthWarning` with their count.
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
        check_number("batch_size", batch_size, 1, integer=True)  # 2.5 refused, never truncated
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
        check_some_finite(model, sum(count_non_finite(d) for d in depths), sum(d.numel() for d in depths))
        return [_result(d, vmin, vmax) for d in depths]
    rgb = as_rgb_tensor(image)
    depth = _predict_batch(model, rgb[None], flip)[0]
    check_some_finite(model, count_non_finite(depth), depth.numel())
    return _result(depth, vmin, vmax)


def _predict_batch(model: torch.nn.Module, images: torch.Tensor, flip: bool) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, H, W) metres on the CPU, in eval mode (the model's mode restored)."""
    was_training = model.training
    model.eval()
    try:
        return predict_depth(model, images, flip=flip)[:, 0].cpu()
    finally:
        model.train(was_training)
