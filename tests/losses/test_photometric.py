"""View synthesis and the self-supervised losses (vid2depth, Mahjourian et al., CVPR 2018): hand cases and rendered frames."""

import math

import numpy as np
import pytest
import torch
from kornia.geometry.depth import warp_frame_depth

from seldepth.losses.photometric import (
    PhotometricLoss,
    PhotometricLossConfig,
    alignment_loss,
    pose_to_matrix,
    rigid_alignment,
    smoothness_loss,
    warp_to_target,
)


def _K(b, h, w, f=100.0):
    K = torch.tensor([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    return K.repeat(b, 1, 1)


def test_a_sideways_step_shifts_the_image_and_masks_the_columns_that_leave_it():
    h, w = 12, 40
    source = torch.rand(1, 3, h, w)
    depth = torch.ones(1, 1, h, w)  # a wall 1 m away, facing the camera
    T = pose_to_matrix(torch.tensor([[0.1, 0, 0, 0, 0, 0]]))  # target point x -> x + 0.1 m in the source camera
    warped, mask, points = warp_to_target(source, depth, T, _K(1, h, w))
    # u_source = u + f * 0.1 / 1 = u + 10 px: the last 10 columns project outside the source image
    assert mask[0, 0, :, : w - 10].eq(1).all() and mask[0, 0, :, w - 10:].eq(0).all()
    torch.testing.assert_close(warped[..., : w - 10], source[..., 10:])
    assert torch.allclose(points[..., 2], torch.ones(1, h, w))


def test_points_behind_the_source_camera_are_masked():
    h, w = 8, 8
    T = pose_to_matrix(torch.tensor([[0, 0, -2.0, 0, 0, 0]]))  # the source camera 2 m in front of a 1 m wall
    _, mask, _ = warp_to_target(torch.rand(1, 3, h, w), torch.ones(1, 1, h, w), T, _K(1, h, w))
    assert mask.sum() == 0


def test_sampling_is_korniass_warp_frame_depth_inside_the_mask():
    torch.manual_seed(0)
    h, w = 16, 24
    source, depth = torch.rand(2, 3, h, w), torch.rand(2, 1, h, w) * 3 + 1
    T = pose_to_matrix(torch.tensor([[0.05, -0.02, 0.1, 0.01, -0.03, 0.02], [-0.1, 0.0, -0.05, 0.0, 0.05, 0.0]]))
    K = _K(2, h, w, 30.0)
    warped, mask, _ = warp_to_target(source, depth, T, K)
    reference = warp_frame_depth(source, depth, T, K)
    assert mask.mean() > 0.5
    torch.testing.assert_close(warped * mask, reference * mask, atol=1e-5, rtol=1e-5)


def test_rendered_neighbour_warped_with_true_depth_and_pose_reproduces_the_target():
    from seldepth.data.synthetic import render_sequence

    frames = render_sequence((7, 3), (96, 128), 2)
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float()
    target, source = (to_t(f["rgb"]).permute(2, 0, 1)[None] / 255 for f in frames)
    depth = to_t(frames[0]["depth"])[None, None]
    K = to_t(frames[0]["K"])[None]
    T = torch.from_numpy(np.linalg.inv(frames[1]["pose"]) @ frames[0]["pose"]).float()[None]
    warped, mask, _ = warp_to_target(source, depth, T, K)
    error = ((warped - target).abs().mean(1, keepdim=True))[mask.bool()]
    still = ((source - target).abs().mean(1, keepdim=True))[mask.bool()]
    assert mask.mean() > 0.8
    assert error.median() < 0.01 and error.mean() < 0.03  # bilinear sampling and a few occlusion edges
    assert still.mean() > 3 * error.mean()  # the camera moved: without the warp the frames differ


def test_pose_to_matrix_by_hand():
    T = pose_to_matrix(torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, math.pi / 2]))
    expected = torch.tensor([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1.0]])
    torch.testing.assert_close(T, expected, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"pose must be \(..., 6\)"):
        pose_to_matrix(torch.zeros(2, 7))


def test_rigid_alignment_recovers_a_transform_and_the_alignment_loss_is_zero_when_depths_agree():
    torch.manual_seed(0)
    p = torch.randn(2, 50, 3)
    T = pose_to_matrix(torch.tensor([[0.3, -0.2, 0.1, 0.2, -0.1, 0.3], [0, 0, 0, 0, 0, 0.0]]))
    q = p @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
    torch.testing.assert_close(rigid_alignment(p, q, torch.ones(2, 50)), T, atol=1e-5, rtol=0)
    points = torch.rand(1, 4, 5, 3) + torch.tensor([0, 0, 2.0])
    agree = points[..., 2:].permute(0, 3, 1, 2)  # the source depth along each ray is exactly the point's
    assert alignment_loss(points, agree, torch.ones(1, 1, 4, 5)) < 1e-4
    assert alignment_loss(points, agree * 1.5, torch.ones(1, 1, 4, 5)) > 0.1


def test_smoothness_is_zero_for_constant_depth_and_scales_with_disparity_unless_normalised():
    image = torch.rand(1, 3, 8, 8)
    assert smoothness_loss(torch.full((1, 1, 8, 8), 3.0), image) == 0
    depth = torch.rand(1, 1, 8, 8) + 1
    torch.testing.assert_close(smoothness_loss(depth * 7, image), smoothness_loss(depth, image) / 7)
    torch.testing.assert_close(smoothness_loss(depth, image, True), smoothness_loss(depth * 7, image, True))
    # the edge-aware term by hand on two equal rows: |d(1/D)| exp(-mean_c |dI|) = |1/2 - 1| exp(-0.5), no y change
    d, img = torch.tensor([[[[1.0, 2.0], [1.0, 2.0]]]]), torch.tensor([[[[0.0, 0.5], [0.0, 0.5]]]]).repeat(1, 3, 1, 1)
    assert float(smoothness_loss(d, img)) == pytest.approx(0.5 * math.exp(-0.5))


def test_the_loss_is_zero_for_a_perfect_warp_and_weights_add_up():
    h, w = 12, 40
    torch.manual_seed(0)
    target = torch.rand(1, 3, h, w)
    source = torch.zeros_like(target)
    source[..., : w - 10] = target[..., 10:]  # the wall seen from 0.1 m to the right: shifted 10 px left
    T = pose_to_matrix(torch.tensor([[-0.1, 0, 0, 0, 0, 0]]))[:, None]
    loss = PhotometricLoss(PhotometricLossConfig(w_smoothness=0.0, scales=1))
    total, terms = loss(target, source[:, None], torch.ones(1, 1, h, w), T, _K(1, h, w))
    with pytest.raises(ValueError, match=r"4 scales reduce \(12, 40\) frames below 4 pixels"):
        PhotometricLoss()(target, source[:, None], torch.ones(1, 1, h, w), T, _K(1, h, w))
    assert terms["reconstruction"] < 1e-6 and total < 0.05  # SSIM's 3x3 window sees the masked border
    with pytest.raises(ValueError, match="w_alignment > 0 needs the sources' depths"):
        PhotometricLoss(PhotometricLossConfig(w_alignment=0.1, scales=1))(target, source[:, None], torch.ones(1, 1, h, w), T, _K(1, h, w))


def test_min_reduction_scores_each_pixel_against_its_best_source():
    h, w = 12, 40
    torch.manual_seed(0)
    target = torch.rand(1, 3, h, w)
    good = torch.zeros_like(target)
    good[..., : w - 10] = target[..., 10:]  # seen from 0.1 m to the right
    bad = torch.rand(1, 3, h, w)
    T = pose_to_matrix(torch.tensor([[-0.1, 0, 0, 0, 0, 0], [-0.1, 0, 0, 0, 0, 0]]))[None]
    sources, depth, K = torch.stack([good, bad], 1), torch.ones(1, 1, h, w), _K(1, h, w)
    cfg = dict(w_smoothness=0.0, scales=1)
    _, best = PhotometricLoss(PhotometricLossConfig(reduce="min", **cfg))(target, sources, depth, T, K)
    _, mean = PhotometricLoss(PhotometricLossConfig(reduce="mean", **cfg))(target, sources, depth, T, K)
    assert best["reconstruction"] < 1e-6 < mean["reconstruction"]
    assert best["mask"] == pytest.approx((w - 10) / w)  # the last 10 columns are outside both sources


def test_coarser_scales_see_the_same_geometry():
    from seldepth.losses.photometric import downscale

    frames, depth, K = torch.rand(2, 3, 3, 16, 24), torch.rand(2, 1, 16, 24) + 1, _K(2, 16, 24)
    small, d, Ks = downscale(frames, depth, K, 4)
    assert small.shape == (2, 3, 3, 4, 6) and d.shape == (2, 1, 4, 6)
    torch.testing.assert_close(small[0, 1, 2, 0, 0], frames[0, 1, 2, :4, :4].mean())
    # the pixel centre (1.5, 1.5) of the 4x4 block maps to (0, 0): cx' = (cx + 0.5) / 4 - 0.5
    assert Ks[0, 0, 2] == pytest.approx((K[0, 0, 2] + 0.5) / 4 - 0.5) and Ks[0, 0, 0] == pytest.approx(K[0, 0, 0] / 4)


def test_the_best_source_is_chosen_by_0_85_l1_plus_0_15_ssim_error():
    # source "offset" is the target plus 0.1 (L1 0.1, structure kept: small SSIM error); source "noise" is the
    # target with +-0.05 noise (L1 0.05, structure lost: large SSIM error). 0.85 L1 + 0.15 SSIM prefers "noise"
    # on (nearly) every pixel; swapped weights (0.15 L1 + 0.85 SSIM) would prefer "offset".
    h, w = 16, 16
    g = torch.Generator().manual_seed(0)
    target = 0.2 + 0.6 * torch.rand(1, 3, h, w, generator=g)
    offset = target + 0.1
    noise = target + 0.05 * torch.where(torch.rand(1, 3, h, w, generator=g) < 0.5, -1.0, 1.0)
    T = torch.eye(4).repeat(1, 2, 1, 1)
    sources, depth, K = torch.stack([offset, noise], 1), torch.ones(1, 1, h, w), _K(1, h, w)
    cfg = PhotometricLossConfig(reduce="min", w_smoothness=0.0, scales=1)
    _, terms = PhotometricLoss(cfg)(target, sources, depth, T, K)
    assert float(terms["reconstruction"]) == pytest.approx(0.05, abs=1e-4)
