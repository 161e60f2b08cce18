"""Preprocessing that a model file records: resize to the network's input size and normalise."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_METHODS = ("bilinear-antialias", "bilinear")


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
        size = d.get("input_size")
        return cls(tuple(size) if size else None, tuple(d["mean"]), tuple(d["std"]), d.get("resize", "bilinear-antialias"))
