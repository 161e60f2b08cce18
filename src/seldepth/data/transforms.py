"""Transforms of sample dicts: geometric operations move image, depth, valid, semantics and K together.

Depth, valid and semantics are only ever resized with nearest-neighbour (or, for the loss
target, a masked average that ignores invalid pixels); images bilinearly with antialiasing.
Pixel centres are at integer coordinates, so a horizontal flip maps ``cx`` to ``W - 1 - cx``
and a resize by ``s`` maps ``c`` to ``(c + 0.5) s - 0.5``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F

from seldepth.defaults import check_number


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation (each applied with probability ``p``).

    Attributes:
        p: probability of each augmentation.
        hflip: horizontal flip of image, depth, valid, semantics and K together.
        color_jitter: strength of brightness, contrast and saturation jitter, in [0, 1] (0 = off).
        channel_permutation: a true permutation of the RGB channels (never a repeat).
        crop_scale: (min, max) side fraction of a random crop, resized back to the input size
            with K updated; (1, 1) = off.
    """

    p: float = 0.5
    hflip: bool = True
    color_jitter: float = 0.2
    channel_permutation: bool = True
    crop_scale: tuple[float, float] = (0.85, 1.0)

    def __post_init__(self):
        check_number("data.augment.p", self.p, 0, 1)
        # contrast and saturation factors are 1 +- color_jitter: above 1 a factor can turn negative
        check_number("data.augment.color_jitter", self.color_jitter, 0, 1)
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:  # also NaN
            raise ValueError(f"data.augment.crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")


NO_AUGMENT = AugmentConfig(p=0.0)
_PERMUTATIONS = [p for p in itertools.permutations(range(3)) if p != (0, 1, 2)]


def _nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None].float(), size=size, mode="nearest")[0]


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    """Crop every spatial entry; shift the principal point."""
    out = dict(sample)
    for key in ("image", "depth", "valid"):
        out[key] = sample[key][..., top: top + height, left: left + width]
    if "semantics" in sample:
        out["semantics"] = sample["semantics"][top: top + height, left: left + width]
    K = sample["K"].clone()
    K[0, 2] -= left
    K[1, 2] -= top
    out["K"] = K
    return out


def resize(sample: dict, size: tuple[int, int]) -> dict:
    """Resize to ``size`` (H, W): image bilinear (antialiased), depth/valid/semantics nearest; K scaled."""
    h, w = sample["image"].shape[-2:]
    if (h, w) == tuple(size):
        return sample
    out = dict(sample)
    out["image"] = F.interpolate(sample["image"][None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    out["depth"] = _nearest(sample["depth"], size)
    out["valid"] = _nearest(sample["valid"], size).bool()
    if "semantics" in sample:
        out["semantics"] = _nearest(sample["semantics"][None], size)[0].long()
    sy, sx = size[0] / h, size[1] / w
    K = sample["K"].clone()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    out["K"] = K
    return out


def hflip(sample: dict) -> dict:
    """Mirror left-right; ``cx -> W - 1 - cx``."""
    out = dict(sample)
    for key in ("image", "depth", "valid"):
        out[key] = sample[key].flip(-1)
    if "semantics" in sample:
        out["semantics"] = sample["semantics"].flip(-1)
    K = sample["K"].clone()
    K[0, 2] = sample["image"].shape[-1] - 1 - K[0, 2]
    out["K"] = K
    return out


class TrainTransform:
    """Random crop (K updated) -> resize to the input size -> flip -> colour jitter -> channel permutation.

    The sample gains ``teacher_image`` (3, H, W): the image after the geometric steps only, which
    teacher networks (:mod:`seldepth.training.teachers`) see instead of the colour-augmented ``image``.
    """

    def __init__(self, size: tuple[int, int], augment: AugmentConfig = AugmentConfig()):
        self.size = tuple(size)
        self.augment = augment

    def _chance(self) -> bool:
        return bool(torch.rand(()) < self.augment.p)

    def __call__(self, sample: dict) -> dict:
        a = self.augment
        h, w = sample["image"].shape[-2:]
        if a.crop_scale != (1.0, 1.0) and self._chance():
            lo, hi = a.crop_scale
            s = lo + (hi - lo) * torch.rand(()).item()
            ch, cw = max(1, round(s * h)), max(1, round(s * w))
            top = int(torch.randint(0, h - ch + 1, ()))
            left = int(torch.randint(0, w - cw + 1, ()))
            sample = crop(sample, top, left, ch, cw)
        sample = resize(sample, self.size)
        if a.hflip and self._chance():
            sample = hflip(sample)
        geometric = sample["image"]  # what teachers see: moved with the depth, colours untouched
        if a.color_jitter > 0 and self._chance():
            j = a.color_jitter
            img = sample["image"][None]
            img = kornia.enhance.adjust_brightness(img, (torch.rand(1) * 2 - 1) * j)
            img = kornia.enhance.adjust_contrast(img, 1 + (torch.rand(1) * 2 - 1) * j)
            img = kornia.enhance.adjust_saturation(img, 1 + (torch.rand(1) * 2 - 1) * j)
            sample = dict(sample, image=img[0].clamp(0, 1))
        if a.channel_permutation and self._chance():
            perm = _PERMUTATIONS[int(torch.randint(len(_PERMUTATIONS), ()))]
            sample = dict(sample, image=sample["image"][list(perm)])
        return dict(sample, teacher_image=geometric)


def masked_downsample(depth: torch.Tensor, valid: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reduce depth (B, 1, H, W) to ``size`` by averaging valid pixels only.

    With integer factors each output pixel is the mean of the valid pixels of its block
    (invalid where the block has none); otherwise nearest-neighbour.

    Returns:
        (depth, valid) at ``size``.
    """
    h, w = depth.shape[-2:]
    if (h, w) == tuple(size):
        return depth, valid
    if h % size[0] == 0 and w % size[1] == 0:
        kh, kw = h // size[0], w // size[1]
        v = valid.to(depth.dtype)
        total = F.avg_pool2d(depth * v, (kh, kw))
        count = F.avg_pool2d(v, (kh, kw))
        out_valid = count > 0
        return torch.where(out_valid, total / count.clamp_min(1e-12), torch.zeros_like(total)), out_valid
    near = F.interpolate(torch.cat([depth, valid.to(depth.dtype)], 1), size=size, mode="nearest")
    return near[:, :1], near[:, 1:] > 0.5
