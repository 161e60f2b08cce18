
import pytest
import torch
import torch.nn.functional as F

from seldepth.losses.balanced import BalancedLossConfig, balanced_loss

KX = torch.tensor([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]).view(1, 1, 3, 3)
KY = torch.tensor([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]]).view(1, 1, 3, 3)


def _gaussian_window(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def _reference_loss(p, g, w_grad, w_normal, w_ssim, dynamic_range):
    """The balanced loss written straight from the METER paper and its official code (official Sobel with zero padding, SSIM without padding)."""
    p, g = p.double(), g.double()
    l_depth = (p - g).abs().mean()
    dxp, dyp = F.conv2d(p, KX.double(), padding=1), F.conv2d(p, KY.double(), padding=1)
    dxg, dyg = F.conv2d(g, KX.double(), padding=1), F.conv2d(g, KY.double(), padding=1)
    inner = (slice(None), slice(None), slice(1, -1), slice(1, -1))  # pixels whose 3x3 window is inside the image
    l_grad = (dxp - dxg)[inner].abs().mean() + (dyp - dyg)[inner].abs().mean()
    n_p = torch.cat([-dxp, -dyp, torch.ones_like(dxp)], 1)
    n_g = torch.cat([-dxg, -dyg, torch.ones_like(dxg)], 1)
    cos = (n_p * n_g).sum(1, keepdim=True) / (n_p.norm(dim=1, keepdim=True) * n_g.norm(dim=1, keepdim=True))
    l_normal = (1 - cos)[inner].abs().mean()
    w = _gaussian_window()
    mu_p, mu_g = F.conv2d(p, w), F.conv2d(g, w)
    s_pp = F.conv2d(p * p, w) - mu_p**2
    s_gg = F.conv2d(g * g, w) - mu_g**2
    s_pg = F.conv2d(p * g, w) - mu_p * mu_g
    c1, c2 = (0.01 * dynamic_range) ** 2, (0.03 * dynamic_range) ** 2
    ssim = ((2 * mu_p * mu_g + c1) * (2 * s_pg + c2)) / ((mu_p**2 + mu_g**2 + c1) * (s_pp + s_gg + c2))
    l_ssim = 1 - ssim.mean()
    return l_depth + w_grad * l_grad + w_normal * l_normal + w_ssim * l_ssim, (l_depth, l_grad, l_normal, l_ssim)


@pytest.mark.parametrize("unit, scale", [("cm", 100.0), ("m", 1.0)])
def test_equals_the_written_formula(unit, scale):
    torch.manual_seed(1)
    gt = torch.rand(2, 1, 48, 64) * 8 + 0.5
    pred = (gt + 0.3 * torch.randn_like(gt)).clamp_min(0.1)
    cfg = BalancedLossConfig(unit=unit, w_grad=0.5, w_normal=10.0, w_ssim=10.0, max_depth=10.0)
    total, terms = balanced_loss(pred, gt, torch.ones_like(gt, dtype=torch.bool), cfg)
    ref_total, (d, g, n, s) = _reference_loss(pred * scale, gt * scale, 0.5, 10.0, 10.0, 10.0 * scale)
    assert terms["depth"].item() == pytest.approx(d.item(), rel=1e-5)
    assert terms["grad"].item() == pytest.approx(g.item(), rel=1e-5)
    assert terms["normal"].item() == pytest.approx(n.item(), rel=1e-4, abs=1e-9)
    assert terms["ssim"].item() == pytest.approx(s.item(), rel=1e-4, abs=1e-7)
    assert total.item() == pytest.approx(ref_total.item(), rel=1e-5)


def test_paper_weights_not_official_doubling():
    cfg = BalancedLossConfig()
    assert (cfg.unit, cfg.w_grad, cfg.w_normal, cfg.w_ssim) == ("cm", 0.5, 100.0, 100.0)


def test_invalid_pixels_do_not_change_the_loss():
    torch.manual_seed(2)
    gt = torch.rand(1, 1, 40, 40) * 5 + 1
    pred = gt + 0.2 * torch.randn_like(gt)
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[..., 10:20, 5:25] = False
    a, _ = balanced_loss(pred, gt, valid)
    gt2 = gt.clone()
    gt2[~valid] = 123.0
    b, _ = balanced_loss(pred, gt2, valid)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert torch.isfinite(a)


def test_depth_term_in_chosen_unit():
    gt = torch.full((1, 1, 16, 16), 2.0)
    _, terms = balanced_loss(gt + 0.1, gt, gt > 0, BalancedLossConfig(unit="cm"))
    assert terms["depth"].item() == pytest.approx(10.0, rel=1e-5)  # 0.1 m = 10 cm
    assert terms["grad"].item() == pytest.approx(0.0, abs=1e-4)  # a constant offset has no gradient


def test_gradients_flow_and_are_finite_with_holes():
    gt = torch.rand(2, 1, 24, 32) * 3 + 0.5
    gt[0, 0, :5] = 0
    pred = torch.rand_like(gt).requires_grad_()
    total, _ = balanced_loss(pred, gt, gt > 0)
    total.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_bad_config_and_shapes():
    with pytest.raises(ValueError, match="loss.unit"):
        BalancedLossConfig(unit="ft")
    with pytest.raises(ValueError, match="loss.w_ssim"):
        BalancedLossConfig(w_ssim=-1)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        balanced_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5), torch.zeros(1, 1, 4, 5, dtype=torch.bool))
