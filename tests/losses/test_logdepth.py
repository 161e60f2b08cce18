import math

import pytest
import torch

from seldepth.losses.logdepth import (IGNORE_LABEL, MultiScaleLoss, MultiScaleLossConfig, adaptive_berhu_loss, berhu,
                                      log_depth)


def test_log_depth_hand_values():
    # KITTI (seed): G(4) = 0, G(80) = 80, G at the geometric mean = 40
    torch.testing.assert_close(log_depth(torch.tensor([4.0, 80.0, math.sqrt(320.0)]), 4.0, 80.0),
                               torch.tensor([0.0, 80.0, 40.0]))
    # indoor: m = 0.5, M = 10; G(1) = log(2) * 10 / log(20)
    torch.testing.assert_close(log_depth(torch.tensor([1.0, 0.25]), 0.5, 10.0),
                               torch.tensor([10 * math.log(2) / math.log(20), -10 * math.log(2) / math.log(20)]))


def test_berhu_hand_values():
    x = torch.tensor([1.0, -2.0, 10.0])
    # a = max|x| / 5 = 2: |1| = 1, |-2| = 2 (at the threshold: linear), (100 + 4) / (2 * 2) = 26
    torch.testing.assert_close(berhu(x, 2.0), torch.tensor([1.0, 2.0, 26.0]))
    torch.testing.assert_close(adaptive_berhu_loss(x, torch.ones(3, dtype=torch.bool)), torch.tensor(29.0 / 3))
    # invalid pixels neither count nor set the threshold: a = 2 / 5 = 0.4 -> (1 + 0.16) / 0.8, (4 + 0.16) / 0.8
    valid = torch.tensor([True, True, False])
    torch.testing.assert_close(adaptive_berhu_loss(x, valid), torch.tensor((1.16 / 0.8 + 4.16 / 0.8) / 2))


def test_berhu_is_continuous_at_the_threshold():
    a = 0.7
    left, right = berhu(torch.tensor([a - 1e-6]), a), berhu(torch.tensor([a + 1e-6]), a)
    assert abs(float(left - right)) < 1e-5


def _pyramid(gt, strides=(2, 4, 8, 16)):
    return [torch.nn.functional.avg_pool2d(gt, s) for s in strides]


def test_multiscale_loss_is_zero_for_a_perfect_prediction_and_weights_heads():
    gt = torch.rand(2, 1, 32, 48) * 5 + 1
    valid = torch.ones_like(gt, dtype=torch.bool)
    loss = MultiScaleLoss(MultiScaleLossConfig(alphas=(1, 2, 3, 4)))
    total, terms = loss(_pyramid(gt), gt, valid)
    assert float(total) < 1e-5
    preds = _pyramid(gt)
    preds[2] = preds[2] * 2  # head S only: doubled depth
    total, terms = loss(preds, gt, valid)
    assert terms["depth_L"] < 1e-5 and terms["depth_S"] > 0
    torch.testing.assert_close(total, 3 * terms["depth_S"], atol=1e-5, rtol=1e-5)


def test_multiscale_loss_in_log_space_is_scale_symmetric():
    # G(2d) - G(d) = G(d) - G(d/2): doubling and halving the prediction cost the same in log space
    gt = torch.rand(1, 1, 32, 32) * 5 + 1
    valid = torch.ones_like(gt, dtype=torch.bool)
    loss = MultiScaleLoss(MultiScaleLossConfig(space="log"))
    up, _ = loss([p * 2 for p in _pyramid(gt)], gt, valid)
    down, _ = loss([p / 2 for p in _pyramid(gt)], gt, valid)
    torch.testing.assert_close(up, down, atol=1e-4, rtol=1e-4)


def test_semantic_term_ignores_unlabelled_pixels():
    gt = torch.ones(1, 1, 16, 16)
    valid = torch.ones_like(gt, dtype=torch.bool)
    labels = torch.full((1, 16, 16), IGNORE_LABEL)
    labels[0, :8] = 1
    logits = [torch.zeros(1, 3, 16 // s, 16 // s) for s in (2, 4, 8, 16)]
    for lg in logits:
        lg[:, 1, : lg.shape[-2] // 2] = 5.0  # confident and right on the labelled half
        lg[:, 0, lg.shape[-2] // 2:] = 50.0  # the unlabelled half would cost a lot if it counted
    loss = MultiScaleLoss(MultiScaleLossConfig(betas=(1, 0, 0, 0)))
    total, terms = loss(_pyramid(gt), gt, valid, logits, labels)
    expected = -torch.log_softmax(torch.tensor([0.0, 5.0, 0.0]), 0)[1]
    torch.testing.assert_close(terms["sem_L"], expected)
    assert "sem_M" not in terms


def test_detached_model_uses_the_weights_of_its_heads():
    loss = MultiScaleLoss(MultiScaleLossConfig(alphas=(1, 2, 3, 4)), heads=("S", "XS"))
    assert loss.alphas == (3, 4)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ValueError, match="multiscale.space"):
        MultiScaleLossConfig(space="sqrt")
    with pytest.raises(ValueError, match="multiscale.alphas must be 4 weights"):
        MultiScaleLossConfig(alphas=(1, 1))


def test_berhu_threshold_carries_no_gradient():
    # a = max|d| / 5 = 2 is a constant of the loss: dL/dd = sign(d) where |d| <= a, d / a above, over the mean
    from seldepth.losses.logdepth import adaptive_berhu_loss

    diff = torch.tensor([1.0, 10.0], requires_grad=True)
    loss = adaptive_berhu_loss(diff, torch.tensor([True, True]))
    assert float(loss) == pytest.approx((1.0 + (100 + 4) / 4) / 2)
    loss.backward()
    # with gradients through a, the 10 m pixel's would be 2.5 - 1.2 = 1.3
    assert diff.grad.tolist() == pytest.approx([0.5, 2.5])
