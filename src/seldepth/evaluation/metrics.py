"""Standard monocular depth metrics (as in the BTS, AdaBins, ZoeDepth and monodepth2 evaluation code), per image then averaged.

One implementation, used by training (validation) and by ``seldepth eval``:
:func:`per_image_metrics` holds the formulas; :class:`DepthMetrics` is the torchmetrics
``Metric`` that accumulates them (and reduces across processes under DDP).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from seldepth.evaluation.protocol import Protocol, crop_mask

METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3")


def per_image_metrics(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Metrics of each image over its masked pixels.

    Args:
        pred: (B, 1, H, W) predicted depth, metres, already clamped to a positive range.
        gt: (B, 1, H, W) ground truth, metres.
        mask: (B, 1, H, W) bool, pixels to score (valid and inside the crop).

    Returns:
        (B, 9) float64 in the order of ``METRIC_NAMES``; rows of images without a masked
        pixel are NaN.

    Example:
        >>> gt = torch.full((1, 1, 2, 2), 2.0); pred = gt * 1.1
        >>> per_image_metrics(pred, gt, gt > 0)[0, 0]   # abs_rel
        tensor(0.1000, dtype=torch.float64)
    """
    if pred.shape != gt.shape or mask.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, gt {tuple(gt.shape)} and mask {tuple(mask.shape)} must have the same shape")
    p = pred.double().flatten(1)
    g = gt.double().flatten(1)
    m = mask.flatten(1).double()
    g_safe = torch.where(m > 0, g, torch.ones_like(g))
    p_safe = torch.where(m > 0, p, torch.ones_like(p))
    n = m.sum(1)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * m).sum(1) / n

    thresh = torch.maximum(g_safe / p_safe, p_safe / g_safe)
    diff = g_safe - p_safe
    log_err = torch.log(p_safe) - torch.log(g_safe)
    out = torch.stack(
        [
            mean(diff.abs() / g_safe),
            mean(diff**2 / g_safe),
            mean(diff**2).sqrt(),
            mean(log_err**2).sqrt(),
            mean((torch.log10(p_safe) - torch.log10(g_safe)).abs()),
            100.0 * (mean(log_err**2) - mean(log_err) ** 2).clamp_min(0).sqrt(),
            mean((thresh < 1.25).double()),
            mean((thresh < 1.25**2).double()),
            mean((thresh < 1.25**3).double()),
        ],
        dim=1,
    )
    return torch.where((n > 0)[:, None], out, torch.full_like(out, float("nan")))


def clamp_prediction(pred: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Clamp to [min, max]: +inf -> max, NaN and -inf -> min."""
    pred = torch.nan_to_num(pred, nan=min_depth, posinf=max_depth, neginf=min_depth)
    return pred.clamp(min_depth, max_depth)


class DepthMetrics(Metric):
    """Accumulates per-image depth metrics under a :class:`~seldepth.evaluation.protocol.Protocol`.

    ``update(pred, gt, valid=None)``: pred and gt (B, 1, H, W) metres (pred is resized
    bilinearly to gt's size if it differs); ``valid`` (B, 1, H, W) bool, ANDed with the
    protocol's range and crop. ``compute()`` returns ``{name: value}`` for ``METRIC_NAMES``,
    plus ``{name@cap: value}`` for each cap, and ``num_images``; with the protocol's
    ``median_scaling`` also ``scale_ratio`` (the mean of the per-image ratios median(gt) /
    median(pred)) and ``scale_ratio_spread`` (their standard deviation / mean).
    """

    full_state_update = False
    higher_is_better = None

    def __init__(self, protocol: Protocol, **kwargs):
        super().__init__(**kwargs)
        self.protocol = protocol
        n_ranges = 1 + len(protocol.caps)
        self.add_state("sums", default=torch.zeros(n_ranges, len(METRIC_NAMES), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("counts", default=torch.zeros(n_ranges, dtype=torch.float64), dist_reduce_fx="sum")
        # median scaling: number of ratios, their sum and their sum of squares
        self.add_state("ratios", default=torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        if gt.ndim != 4 or gt.shape[1] != 1:
            raise ValueError(f"gt must be (B, 1, H, W) metres, got {tuple(gt.shape)}")
        if pred.ndim != 4 or pred.shape[:2] != gt.shape[:2]:
            raise ValueError(f"pred must be (B, 1, h, w) metres matching gt's batch, got {tuple(pred.shape)}")
        if pred.shape[-2:] != gt.shape[-2:]:
            pred = F.interpolate(pred.float(), size=gt.shape[-2:], mode="bilinear", align_corners=False)
        proto = self.protocol
        gt = gt.to(pred.device)
        base = (gt > proto.min_depth) & torch.isfinite(gt)
        base &= crop_mask(proto.crop, gt.shape[-2], gt.shape[-1], device=gt.device)
        if valid is not None:
            base &= valid.to(gt.device).bool()
        if proto.median_scaling:
            pred = self._median_scaled(pred, gt, base & (gt < proto.max_depth))
        ranges = [(proto.max_depth, gt < proto.max_depth)] + [(cap, gt <= cap) for cap in proto.caps]
        for i, (top, in_range) in enumerate(ranges):
            values = per_image_metrics(clamp_prediction(pred, proto.min_depth, top), gt, base & in_range)
            scored = ~torch.isnan(values[:, 0])
            self.sums[i] += values[scored].sum(0).to(self.sums.device)
            self.counts[i] += scored.sum().to(self.counts.dtype)

    def _median_scaled(self, pred: torch.Tensor, gt: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
        """Each image's prediction times median(gt) / median(pred) over its scored pixels (unscaled if none)."""
        scaled = []
        for p, g, m in zip(pred, gt, scored):
            if not m.any():
                scaled.append(p)
                continue
            ratio = g[m].median().double() / p[m].double().median().clamp_min(1e-12)
            self.ratios += torch.stack([torch.ones_like(ratio), ratio, ratio * ratio]).to(self.ratios.device)
            scaled.append(p * ratio.to(p.dtype))
        return torch.stack(scaled)

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        labels = [""] + [f"@{cap:g}m" for cap in self.protocol.caps]
        for i, label in enumerate(labels):
            means = self.sums[i] / self.counts[i].clamp_min(1)
            for name, value in zip(METRIC_NAMES, means.tolist()):
                out[name + label] = value if self.counts[i] > 0 else float("nan")
        out["num_images"] = int(self.counts[0].item())
        if self.protocol.median_scaling:
            n, total, squares = self.ratios.tolist()
            mean = total / n if n else float("nan")
            std = math.sqrt(max(squares / n - mean * mean, 0.0)) if n else float("nan")
            out["scale_ratio"], out["scale_ratio_spread"] = mean, std / mean if n else float("nan")
        return out


class SemanticIoU(Metric):
    """Mean intersection over union of semantic labels, accumulated as a confusion matrix (DDP-reduced).

    ``update(logits (B, C, H, W) or labels (B, H, W), target (B, H, W))``; pixels whose target is
    ``ignore_index`` are left out. ``compute()`` -> ``{"miou", "iou": per class}``: the mean is over
    the classes present in the targets seen (a class absent from the ground truth is not scored).
    """

    full_state_update = False

    def __init__(self, num_classes: int, ignore_index: int = -1, **kwargs):
        super().__init__(**kwargs)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_state("confusion", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        labels = pred.argmax(1) if pred.ndim == 4 else pred
        keep = target != self.ignore_index
        index = target[keep].long() * self.num_classes + labels[keep].long()
        self.confusion += torch.bincount(index, minlength=self.num_classes ** 2).view(self.num_classes, self.num_classes)

    def compute(self) -> dict:
        c = self.confusion.double()
        tp, gt, pred = c.diag(), c.sum(1), c.sum(0)
        iou = tp / (gt + pred - tp).clamp_min(1)
        present = gt > 0
        miou = float(iou[present].mean()) if present.any() else float("nan")
        return {"miou": miou, "iou": [float(v) if p else float("nan") for v, p in zip(iou, present)]}
