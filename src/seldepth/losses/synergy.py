"""The synergy network's losses: the depth-aware attention-driven loss L_DA, the semantic focal loss and the joint gradient loss.

Jiao et al., "Look deeper into depth: monocular depth estimation with semantic booster and
attention-driven loss", ECCV 2018 (see docs/references.md).

**L_DA** = (1/N) sum_i (alpha_i + lambda_i) |d_i - d_i*| over the N valid pixels, with

* ``alpha_i = d_i* / max_j d_j*``: the ground truth normalised by its largest valid value in the
  same image (0..1), the attention term that weights far pixels more (depth is long-tailed: most
  pixels are near, and the far ones are the hardest);
* ``lambda_i = 1 - min(G(d_i), G(d_i*)) / max(G(d_i), G(d_i*))``: the regularising term, 0 where the
  prediction is right and towards 1 where it is far off, so that near pixels whose alpha is small
  still learn early in training.

The unit/offset question the paper leaves open: with ``G = log d`` in metres the logs of depths below 1 m are
negative, and then the ratio is above 1 or negative (lambda outside [0, 1], even negative: for
d = 0.5, d* = 2 it is 1 - log 0.5 / log 2 = 2; for d = 0.5, d* = 0.25 it is 1 - 2 = -1, a loss
that rewards an error). We settle it with **G(d) = log(1 + d), d in metres**: G > 0 for every
d > 0, G is increasing, so lambda lies in [0, 1) for any pair of positive depths, is 0 exactly
when d = d*, and behaves like the paper's log ratio for far depths (log(1 + d) ~ log d). Both
weights are treated as attention: they are computed without gradient (``detach``), so the
gradient is that of a per-pixel weighted L1.

**Focal loss** -(1/N) sum alpha (1 - p)^gamma log p over labelled pixels, p the softmax
probability of the true class (alpha = 0.25, gamma = 2). Written out, because kornia's
``focal_loss`` weights classes by alpha in its own way (it does not give this formula's values).

**Joint gradient loss**: Sobel gradients of the predicted depth matched to the ground truth's
(:func:`seldepth.losses.balanced.gradient_loss`, the same function as METER's gradient term) and,
given semantic logits and labels, the Sobel gradients of the class probabilities matched to
those of the one-hot labels (so depth and semantic edges are both sharp where the labels change).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seldepth.data.transforms import masked_downsample
from seldepth.defaults import check_number
from seldepth.losses.balanced import gradient_loss
from seldepth.losses.logdepth import IGNORE_LABEL, downsample_labels


def _check_depth(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> None:
    if pred.shape != gt.shape or valid.shape != gt.shape or gt.ndim != 4 or gt.shape[1] != 1:
        raise ValueError(f"pred {tuple(pred.shape)}, gt {tuple(gt.shape)} and valid {tuple(valid.shape)} must all be (B, 1, H, W)")


def depth_attention(gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """alpha = gt / (largest valid gt of its image): (B, 1, H, W) in [0, 1], 0 on invalid pixels."""
    g = torch.where(valid, gt, torch.zeros_like(gt))
    top = g.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return g / top


def depth_regulariser(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """lambda = 1 - min(G(pred), G(gt)) / max(G(pred), G(gt)) with G(d) = log(1 + d), d in metres (clamped at 0).

    Example:
        >>> depth_regulariser(torch.tensor([0.5, 2.0, 3.0]), torch.tensor([2.0, 2.0, 1.0]))
        tensor([0.6309, 0.0000, 0.5000])
    """
    a = torch.log1p(pred.clamp_min(0))
    b = torch.log1p(gt.clamp_min(0))
    return 1 - torch.minimum(a, b) / torch.maximum(a, b).clamp_min(1e-12)


def depth_aware_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """L_DA (module docstring): mean over valid pixels of (alpha + lambda) |pred - gt|, weights detached.

    Args:
        pred, gt: (B, 1, H, W) metres; valid: (B, 1, H, W) bool.

    Returns:
        A scalar >= 0; 0 when no pixel is valid.
    """
    _check_depth(pred, gt, valid)
    valid = valid.bool()
    with torch.no_grad():
        weight = depth_attention(gt, valid) + depth_regulariser(pred, gt)
    err = (pred - torch.where(valid, gt, pred.detach())).abs()
    return (weight * err)[valid].sum() / valid.sum().clamp_min(1)


def focal_loss(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """-(1/N) sum alpha (1 - p)^gamma log p over the N labelled pixels (``IGNORE_LABEL`` = unlabelled).

    Args:
        logits: (B, C, H, W); labels: (B, H, W) long.
    """
    if logits.ndim != 4 or labels.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"logits must be (B, C, H, W) and labels (B, H, W); got {tuple(logits.shape)}, {tuple(labels.shape)}")
    labelled = labels != IGNORE_LABEL
    log_p = F.log_softmax(logits, dim=1).gather(1, labels.clamp_min(0)[:, None])[:, 0]
    loss = -alpha * (1 - log_p.exp()).pow(gamma) * log_p
    return loss[labelled].sum() / labelled.sum().clamp_min(1)


def joint_gradient_loss(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, logits: torch.Tensor | None = None,
                        labels: torch.Tensor | None = None) -> torch.Tensor:
    """Sobel gradient matching of depth, plus of class probabilities against one-hot labels when given.

    Args:
        pred, gt: (B, 1, H, W) metres; valid: (B, 1, H, W) bool.
        logits: (B, C, H, W) semantic logits; labels: (B, H, W) long (``IGNORE_LABEL`` = unlabelled).
    """
    _check_depth(pred, gt, valid)
    valid = valid.bool()
    loss = gradient_loss(pred, torch.where(valid, gt, pred.detach()), valid)
    if logits is not None and labels is not None:
        labelled = (labels != IGNORE_LABEL)[:, None].expand_as(logits)
        one_hot = F.one_hot(labels.clamp_min(0), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
        loss = loss + gradient_loss(logits.softmax(1), one_hot, labelled)
    return loss


@dataclass(frozen=True)
class SynergyLossConfig:
    """Weights of the synergy network's joint loss (``synergy:`` in the training config).

    Attributes:
        depth: ``attention`` (L_DA) or ``l1`` (plain L1 over valid pixels, the paper's ablation).
        w_depth, w_semantic, w_gradient: weights of the depth term, the focal loss and the joint gradient loss.
        focal_alpha, focal_gamma: of the focal loss.
        tasks: the tasks trained (``depth``, ``semantics``); a task left out is treated as a batch
            without its targets: no loss term and its branch unchanged. One task per phase gives the
            paper's fine-tuned schedule (train on semantics, then ``init_from`` that model on depth).
    """

    depth: str = "attention"
    w_depth: float = 1.0
    w_semantic: float = 1.0
    w_gradient: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    tasks: tuple[str, ...] = ("depth", "semantics")

    def __post_init__(self):
        if self.depth not in ("attention", "l1"):
            raise ValueError(f"synergy.depth must be 'attention' or 'l1', got {self.depth!r}")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks or any(t not in ("depth", "semantics") for t in self.tasks):
            raise ValueError(f"synergy.tasks must name 'depth' and/or 'semantics', got {list(self.tasks)}")
        for name in ("w_depth", "w_semantic", "w_gradient", "focal_alpha", "focal_gamma"):
            check_number(f"synergy.{name}", getattr(self, name), 0)


class SynergyLoss(nn.Module):
    """``forward(depth, logits, gt, valid, labels) -> (total, terms, supervised)``.

    Args of forward:
        depth: (B, 1, h, w) predicted metres; logits: (B, C, h, w), or None (a depth-only model).
        gt, valid: (B, 1, H, W) metres and bool (reduced to (h, w) by a masked average).
        labels: (B, H, W) long with ``IGNORE_LABEL`` where unlabelled (reduced by nearest), or None.

    Returns:
        The weighted total, the unweighted terms, and ``supervised``: ``{"depth": bool, "semantics": bool}``,
        whether the batch had any target of each task that ``tasks`` trains (a batch with only one
        kind trains only that branch: the other task's terms are left out and the trainer drops its
        branch's gradients).
    """

    def __init__(self, config: SynergyLossConfig = SynergyLossConfig()):
        super().__init__()
        self.config = config

    def forward(self, depth, logits, gt, valid, labels=None):
        c = self.config
        size = tuple(depth.shape[-2:])
        gt, valid = masked_downsample(gt, valid.bool(), size)
        lab = downsample_labels(labels, size) if labels is not None and logits is not None else None
        supervised = {"depth": "depth" in c.tasks and bool(valid.any()),
                      "semantics": "semantics" in c.tasks and lab is not None and bool((lab != IGNORE_LABEL).any())}
        total, terms = depth.new_zeros(()), {}
        if supervised["depth"]:
            if c.depth == "attention":
                terms["depth"] = depth_aware_loss(depth, gt, valid)
            else:
                terms["depth"] = (depth - gt).abs()[valid].mean()
            total = total + c.w_depth * terms["depth"]
        if supervised["semantics"]:
            terms["semantic"] = focal_loss(logits, lab, c.focal_alpha, c.focal_gamma)
            total = total + c.w_semantic * terms["semantic"]
        if c.w_gradient > 0 and supervised["depth"]:
            sem = (logits, lab) if supervised["semantics"] else (None, None)
            terms["gradient"] = joint_gradient_loss(depth, gt, valid, *sem)
            total = total + c.w_gradient * terms["gradient"]
        return total, {k: v.detach() for k, v in terms.items()}, supervised
