import math

import pytest
import torch
import torch.nn.functional as F

from seldepth.losses.synergy import (
    depth_attention,
    depth_aware_loss,
    depth_regulariser,
    focal_loss,
    joint_gradient_loss,
)
from seldepth.losses.balanced import gradient_loss
from seldepth.losses.logdepth import IGNORE_LABEL


def _map(values):
    return torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)


def test_depth_aware_loss_by_hand_on_both_sides_of_one_metre():
    gt, pred = _map([0.5, 2.0, 1.0]), _map([0.25, 3.0, 1.0])
    valid = torch.ones_like(gt, dtype=torch.bool)
    alpha = [0.5 / 2, 2.0 / 2, 1.0 / 2]
    lam = [1 - math.log1p(0.25) / math.log1p(0.5), 1 - math.log1p(2.0) / math.log1p(3.0), 0.0]
    err = [0.25, 1.0, 0.0]
    expected = sum((a + l) * e for a, l, e in zip(alpha, lam, err)) / 3
    loss = depth_aware_loss(pred, gt, valid)
    assert torch.isfinite(loss) and loss > 0
    assert loss.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("depth", [0.05, 0.5, 1.0, 2.0, 9.9])
def test_depth_aware_loss_is_zero_and_finite_when_pred_equals_gt(depth):
    gt = torch.full((2, 1, 4, 4), depth, dtype=torch.float64)
    loss = depth_aware_loss(gt.clone().requires_grad_(), gt, torch.ones_like(gt, dtype=torch.bool))
    assert torch.isfinite(loss) and loss.item() == 0.0


def test_regulariser_stays_in_zero_one_below_one_metre_where_raw_logs_fail():
    # with log d in metres: 1 - log(0.5) / log(0.25) = 0.5 but 1 - log(0.5) / log(2) = 2, and pairs straddling 1 m are negative
    torch.manual_seed(0)
    a, b = torch.rand(10_000) * 10 + 1e-3, torch.rand(10_000) * 10 + 1e-3
    lam = depth_regulariser(a, b)
    assert (lam >= 0).all() and (lam < 1).all()
    assert depth_regulariser(torch.tensor([0.3]), torch.tensor([0.6])).item() > 0


def test_weights_are_attention_without_gradient():
    gt = _map([0.5, 2.0, 4.0])
    pred = _map([1.0, 1.0, 5.0]).requires_grad_()
    valid = torch.tensor([True, True, False]).view(1, 1, 1, 3)
    depth_aware_loss(pred, gt, valid).backward()
    w = (depth_attention(gt, valid) + depth_regulariser(pred.detach(), gt))
    expected = (w * torch.sign(pred.detach() - gt) * valid) / 2
    torch.testing.assert_close(pred.grad, expected)
    assert depth_attention(gt, valid).flatten().tolist() == [0.25, 1.0, 0.0]  # normalised by the largest valid gt


def test_no_valid_pixel_gives_zero():
    gt = torch.ones(1, 1, 2, 2)
    assert depth_aware_loss(gt * 2, gt, torch.zeros_like(gt, dtype=torch.bool)).item() == 0.0


def test_focal_loss_by_hand_and_as_cross_entropy():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]], dtype=torch.float64)  # (1, 2, 1, 2)
    labels = torch.tensor([[[0, IGNORE_LABEL]]])
    p = math.exp(2) / (math.exp(2) + 1)
    assert focal_loss(logits, labels).item() == pytest.approx(-0.25 * (1 - p) ** 2 * math.log(p), rel=1e-12)
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 6, 7))
    labels[0, 0] = IGNORE_LABEL
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_LABEL)
    torch.testing.assert_close(focal_loss(logits, labels, alpha=1.0, gamma=0.0), ce)
    assert focal_loss(logits, labels) < ce  # easy pixels down-weighted


def test_joint_gradient_loss_depth_part_is_the_balanced_gradient_term_and_semantics_add_edges():
    torch.manual_seed(0)
    gt = torch.rand(1, 1, 8, 8) + 1
    pred = torch.rand(1, 1, 8, 8) + 1
    valid = torch.ones_like(gt, dtype=torch.bool)
    torch.testing.assert_close(joint_gradient_loss(pred, gt, valid), gradient_loss(pred, gt, valid))
    assert joint_gradient_loss(gt, gt, valid).item() == 0.0
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[..., 4:] = 1  # a vertical class edge
    flat = torch.zeros(1, 2, 8, 8)  # probabilities 0.5 everywhere: no edge
    assert joint_gradient_loss(gt, gt, valid, flat, labels) > 0
    sharp = F.one_hot(labels, 2).permute(0, 3, 1, 2).float() * 50  # softmax ~ one-hot: the same edge
    assert joint_gradient_loss(gt, gt, valid, sharp, labels) < 1e-6


def test_shape_errors():
    with pytest.raises(ValueError, match=r"must all be \(B, 1, H, W\)"):
        depth_aware_loss(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 3), torch.ones(1, 1, 2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"labels \(B, H, W\)"):
        focal_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))
