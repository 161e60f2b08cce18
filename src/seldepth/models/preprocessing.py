"""Preprocessing that a model file records: resize to the network's input size and normalise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_METHODS = ("bilinear-antialias", "bilinear")
MAX_INPUT_SIDE = 16384  # the largest input side a model file may declare


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in [0, 1] becomes the network's input.

    Attributes:
        input_size: (H, W) the network sees; ``None`` keeps the image's own size.
        mean, std: per-channel normalisation.
        resize: interpolation used to reach ``input_size``: ``bilinear-antialias`` (area-weighted
            when shrinking) or ``bilinear`` (plain bilinear sampling, as OpenCV's ``INTER_LINEAR``).
    """

    input_size: tuple[int, int] | None = (192, 256)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "bilinear-antialias"

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Preprocess an image batch.

        Args:
            image: (B, 3, H, W) float RGB in [0, 1].

        Returns:
            (B, 3, h, w) normalised network input, (h, w) = ``input_size``.
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an RGB batch (B, 3, H, W) in [0, 1], got shape {tuple(image.shape)}")
        image = image.float()
        if self.input_size is not None and tuple(image.shape[-2:]) != tuple(self.input_size):
            if self.resize not in RESIZE_METHODS:
                raise ValueError(f"unknown resize method {self.resize!r}; available: {', '.join(RESIZE_METHODS)}")
            image = F.interpolate(image, size=tuple(self.input_size), mode="bilinear", align_corners=False,
                                  antialias=self.resize == "bilinear-antialias")
        mean = image.new_tensor(self.mean).view(1, 3, 1, 1)
        std = image.new_tensor(self.std).view(1, 3, 1, 1)
        return (image - mean) / std

    def to_dict(self) -> dict:
        return {"input_size": list(self.input_size) if self.input_size else None, "mean": list(self.mean),
                "std": list(self.std), "resize": self.resize}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """The inverse of :meth:`to_dict`, every value checked.

        Raises:
            ValueError: naming the key (``preprocessing.mean``) and what was expected.
        """
        if not isinstance(d, dict):
            raise ValueError(f"'preprocessing' must be a mapping, got {type(d).__name__} {d!r:.80}")
        size = d.get("input_size")
        if size is not None and size != []:
            if (not isinstance(size, (list, tuple)) or len(size) != 2
                    or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_INPUT_SIDE for n in size)):
                raise ValueError(f"'preprocessing.input_size' must be [H, W] with two whole numbers in 1..{MAX_INPUT_SIDE} "
                                 f"or null, got {size!r:.80}")
        values = {}
        for key in ("mean", "std"):
            if key not in d:
                raise ValueError(f"'preprocessing.{key}' is missing (three numbers, one per RGB channel)")
            v = d[key]
            if (not isinstance(v, (list, tuple)) or len(v) != 3
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)
                    or (key == "std" and not all(x > 0 for x in v))):
                need = "three positive numbers" if key == "std" else "three finite numbers"
                raise ValueError(f"'preprocessing.{key}' must be {need} (one per RGB channel), got {v!r:.80}")
            values[key] = tuple(float(x) for x in v)
        resize = d.get("resize", "bilinear-antialias")
        if resize not in RESIZE_METHODS:
            raise ValueError(f"'preprocessing.resize' must be one of {', '.join(RESIZE_METHODS)}, got {resize!r:.80}")
        return cls(tuple(size) if size else None, values["mean"], values["std"], resize)
