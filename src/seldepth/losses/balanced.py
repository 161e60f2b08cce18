"""METER's balanced loss: depth, gradient, normal and SSIM terms (Papa et al., 2023; see docs/references.md), masked by valid pixels.

``L = L_depth + w_grad L_grad + w_normal L_normal + w_ssim L_SSIM`` computed in a chosen depth
unit (METER: centimetres). The paper's weights are used (w_grad = 0.5, not the official code's
x2); ``w_normal`` and ``w_ssim`` are 1, 10 or 100 for m, dm, cm in the paper.

Masking: ``L_depth`` averages over valid pixels; the Sobel terms over pixels whose 3x3
neighbourhood is valid and inside the image (so kornia's replicate border equals the official
zero-padded Sobel on every pixel counted); SSIM (11x11 Gaussian, sigma 1.5, no padding) over
windows whose centre is valid, with invalid ground truth filled by the (detached) prediction.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from seldepth.defaults import check_number

UNITS = {"m": 1.0, "dm": 10.0, "cm": 100.0, "mm": 1000.0}


@dataclass(frozen=True)
class BalancedLossConfig:
    """Weights and unit of the balanced loss.

    Attributes:
        unit: depth unit the loss is computed in (``m``, ``dm``, ``cm``, ``mm``).
        w_grad, w_normal, w_ssim: term weights (paper: 0.5; 100 and 100 for cm).
        max_depth: metres; sets SSIM's dynamic range L = max_depth in ``unit``.
    """

    unit: str = "cm"
    w_depth: float = 1.0
    w_grad: float = 0.5
    w_normal: float = 100.0
    w_ssim: float = 100.0
    max_depth: float = 10.0

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"loss.unit must be one of {', '.join(UNITS)}, got {self.unit!r}")
        for name in ("w_depth", "w_grad", "w_normal", "w_ssim"):
            check_number(f"loss.{name}", getattr(self, name), 0)
        check_number("loss.max_depth", self.max_depth, 0, low_open=True)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """True where the (2r+1)^2 neighbourhood is all True and inside the image."""
    k = 2 * radius + 1
    inv = F.pad((~mask).float(), (radius,) * 4, value=1.0)
    return F.max_pool2d(inv, k, stride=1) == 0


def gradient_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, return_gradients: bool = False):
    """Gradient matching: mean |d/dx pred - d/dx target| + mean |d/dy pred - d/dy target| (Sobel, kornia).

    Averaged over pixels whose 3x3 neighbourhood is valid and inside the image, per channel.

    Args:
        pred, target: (B, C, H, W).
        valid: (B, C, H, W) bool.
        return_gradients: also return ``((dx_pred, dy_pred, dx_target, dy_target), mask)``.
    """
    mask = _erode(valid, 1)
    gp = kornia.filters.spatial_gradient(pred, mode="sobel", normalized=False)  # (B, C, 2, H, W)
    gg = kornia.filters.spatial_gradient(target, mode="sobel", normalized=False)
    dxp, dyp, dxg, dyg = gp[:, :, 0], gp[:, :, 1], gg[:, :, 0], gg[:, :, 1]
    loss = _masked_mean((dxp - dxg).abs(), mask) + _masked_mean((dyp - dyg).abs(), mask)
    return (loss, (dxp, dyp, dxg, dyg), mask) if return_gradients else loss


def balanced_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor,
                  config: BalancedLossConfig = BalancedLossConfig()) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """METER's balanced loss.

    Args:
        pred: (B, 1, H, W) predicted depth, metres.
        gt: (B, 1, H, W) ground truth, metres.
        valid: (B, 1, H, W) bool, pixels with ground truth.
        config: weights and unit.

    Returns:
        The total loss (scalar) and its unweighted terms ``{"depth", "grad", "normal", "ssim"}``.

    Example:
        >>> gt = torch.rand(2, 1, 48, 64) * 5 + 1
        >>> total, terms = balanced_loss(gt.clone(), gt, gt > 0)
        >>> float(total) < 1e-4
        True
    """
    if pred.shape != gt.shape or valid.shape != gt.shape or gt.ndim != 4 or gt.shape[1] != 1:
        raise ValueError(f"pred {tuple(pred.shape)}, gt {tuple(gt.shape)} and valid {tuple(valid.shape)} must all be (B, 1, H, W)")
    scale = UNITS[config.unit]
    valid = valid.bool()
    p = pred * scale
    g = torch.where(valid, gt * scale, p.detach())

    l_depth = _masked_mean((p - g).abs(), valid)

    l_grad, (dxp, dyp, dxg, dyg), grad_mask = gradient_loss(p, g, valid, return_gradients=True)

    # cos(n_p, n_g) with n = (-dx, -dy, 1), written out (F.cosine_similarity over dim 1 is slow on CPU).
    dot = dxp * dxg + dyp * dyg + 1
    cos = dot / torch.sqrt((dxp * dxp + dyp * dyp + 1) * (dxg * dxg + dyg * dyg + 1))
    l_normal = _masked_mean((1 - cos).abs(), grad_mask)

    window = 11
    if min(gt.shape[-2:]) >= window:
        ssim_map = kornia.metrics.ssim(p, g, window, max_val=config.max_depth * scale, padding="valid")
        centre = valid[..., window // 2: -(window // 2), window // 2: -(window // 2)]
        l_ssim = 1 - _masked_mean(ssim_map, centre)
    else:
        l_ssim = p.new_zeros(())

    total = config.w_depth * l_depth + config.w_grad * l_grad + config.w_normal * l_normal + config.w_ssim * l_ssim
    return total, {"depth": l_depth.detach(), "grad": l_grad.detach(), "normal": l_normal.detach(), "ssim": l_ssim.detach()}


class BalancedLoss(nn.Module):
    """Module form of :func:`balanced_loss`; ``forward(pred, gt, valid) -> (total, terms)``."""

    def __init__(self, config: BalancedLossConfig = BalancedLossConfig()):
        super().__init__()
        self.config = config

    def forward(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor):
        return balanced_loss(pred, gt, valid, self.config)
