"""The multi-resolution loss of Chiu et al., ICPR 2020: adaptive berHu on log depth, plus semantic cross-entropy.

``L_total = sum_i alpha_i L_Di + beta_i L_Si`` over the heads i (finest first), with

* ``L_Di = mean over valid pixels of F(G(d_pred) - G(d_gt))`` (or ``F(d_pred - d_gt)`` in metres
  when ``space = "linear"``, Chiu et al.'s ablation without log depth);
* ``G(d) = (log d - log m) * M / (log M - log m)``: log depth, 0 at ``m`` and ``M`` at ``M``;
* ``F`` the adaptive berHu: ``|x|`` for ``|x| <= a``, ``(x^2 + a^2) / (2a)`` above, with
  ``a = max|x| / 5`` over the batch's valid pixels (detached, as a threshold);
* ``L_Si`` the per-pixel cross-entropy with the semantic labels (``ignore_index`` = no label).

m and M: Chiu et al. use m = 4, M = 80 on KITTI (M = the evaluation cap, M/m = 20). For NYU and the
synthetic indoor scenes we keep their ratio with the indoor cap: m = 0.5, M = 10 (0.5 m is
about the nearest depth a Kinect measures). G only rescales log depth, so (m, M) set the depth
at which a unit of G is a metre and the balance against the semantic term, not the optimum.

Targets at each head's resolution: depth by a masked average of the valid pixels
(:func:`seldepth.data.transforms.masked_downsample`), labels by nearest neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seldepth.data.collate import IGNORE_LABEL  # noqa: F401  (label of pixels without a semantic label)
from seldepth.data.transforms import masked_downsample
from seldepth.defaults import check_number


def log_depth(depth: torch.Tensor, m: float, M: float) -> torch.Tensor:
    """G(d) = (log d - log m) * M / (log M - log m); depth in metres, > 0.

    Example:
        >>> log_depth(torch.tensor([4.0, 80.0]), 4.0, 80.0)
        tensor([ 0., 80.])
    """
    return (torch.log(depth) - math.log(m)) * (M / math.log(M / m))


def berhu(x: torch.Tensor, threshold: torch.Tensor | float) -> torch.Tensor:
    """The reverse Huber F(x): |x| where |x| <= a, (x^2 + a^2) / (2a) above (element-wise)."""
    a = torch.as_tensor(threshold, dtype=x.dtype, device=x.device).clamp_min(1e-12)
    ax = x.abs()
    return torch.where(ax <= a, ax, (x * x + a * a) / (2 * a))


def adaptive_berhu_loss(diff: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of :func:`berhu` over valid pixels with a = max|diff| / 5 over those pixels (0 if none is valid)."""
    d = diff[valid]
    if d.numel() == 0:
        return diff.sum() * 0
    a = d.detach().abs().max() / 5
    return berhu(d, a).mean()


@dataclass(frozen=True)
class MultiScaleLossConfig:
    """Weights and depth space of the multi-resolution loss.

    Attributes:
        space: ``log`` (berHu on G(d), as Chiu et al.) or ``linear`` (berHu on metres).
        min_depth, max_depth: m and M of G (metres).
        alphas: depth weight per head, finest first (L, M, S, XS); a detached model uses the
            first ``len(heads)`` of the weights of its heads.
        betas: semantic weight per head (0: no semantic loss).
    """

    space: str = "log"
    min_depth: float = 0.5
    max_depth: float = 10.0
    alphas: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    betas: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self):
        if self.space not in ("log", "linear"):
            raise ValueError(f"multiscale.space must be 'log' or 'linear', got {self.space!r}")
        check_number("multiscale.min_depth", self.min_depth, 0, low_open=True)
        check_number("multiscale.max_depth", self.max_depth, self.min_depth, low_open=True)
        for key in ("alphas", "betas"):
            w = getattr(self, key)
            if len(w) != 4:
                raise ValueError(f"multiscale.{key} must be 4 weights >= 0 (heads L, M, S, XS), got {list(w)}")
            for i, weight in enumerate(w):
                check_number(f"multiscale.{key}[{i}]", weight, 0)

    @property
    def uses_semantics(self) -> bool:
        return any(b > 0 for b in self.betas)


def downsample_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) long labels -> (B, h, w) by nearest neighbour."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()


class MultiScaleLoss(nn.Module):
    """``forward(depths, gt, valid, semantics=None, labels=None) -> (total, terms)``.

    Args of forward:
        depths: per head (B, 1, h_i, w_i) metres, finest first (as ``RealtimeOutput.depth``);
            head i is weighted by ``alphas[offset + i]`` where ``offset`` is set for detached models.
        gt, valid: (B, 1, H, W) metres and bool, at any resolution >= the heads'.
        semantics: per head (B, C, h_i, w_i) logits, or None / empty.
        labels: (B, H, W) long with ``IGNORE_LABEL`` for unlabelled pixels, or None.

    Returns:
        The weighted total and the unweighted terms ``depth_<head>``, ``sem_<head>``.
    """

    def __init__(self, config: MultiScaleLossConfig = MultiScaleLossConfig(), heads: tuple[str, ...] = ("L", "M", "S", "XS")):
        super().__init__()
        self.config = config
        self.heads = tuple(heads)
        all_heads = ("L", "M", "S", "XS")
        offset = all_heads.index(self.heads[0])
        self.alphas = config.alphas[offset: offset + len(self.heads)]
        self.betas = config.betas[offset: offset + len(self.heads)]

    def _space(self, d: torch.Tensor) -> torch.Tensor:
        c = self.config
        return log_depth(d.clamp_min(1e-6), c.min_depth, c.max_depth) if c.space == "log" else d

    def forward(self, depths, gt, valid, semantics=None, labels=None):
        if len(depths) != len(self.heads):
            raise ValueError(f"expected {len(self.heads)} depth heads ({', '.join(self.heads)}), got {len(depths)}")
        total = gt.new_zeros(())
        terms = {}
        for i, (name, pred) in enumerate(zip(self.heads, depths)):
            g, v = masked_downsample(gt, valid, tuple(pred.shape[-2:]))
            loss = adaptive_berhu_loss(self._space(pred) - self._space(torch.where(v, g, pred.detach())), v)
            total = total + self.alphas[i] * loss
            terms[f"depth_{name}"] = loss.detach()
            if semantics and labels is not None and self.betas[i] > 0:
                lab = downsample_labels(labels, tuple(pred.shape[-2:]))
                if (lab != IGNORE_LABEL).any():
                    ce = F.cross_entropy(semantics[i], lab, ignore_index=IGNORE_LABEL)
                    total = total + self.betas[i] * ce
                    terms[f"sem_{name}"] = ce.detach()
        return total, terms
