"""Self-supervised depth from video (vid2depth: Mahjourian et al., CVPR 2018; see docs/references.md).

View synthesis: a target pixel [i, j] with predicted depth D is lifted to Q = D K^-1 [i, j, 1]^T,
moved into a source camera by the target-to-source transform T, projected with K, and the
source frame is sampled there bilinearly. Where the projection lands inside the source image
(and in front of its camera) the "principled mask" is 1, elsewhere 0, and those pixels are not
scored. The loss of a target and its sources:

* reconstruction: mean |warped - target| over masked pixels (weight 0.85);
* SSIM: mean clip((1 - SSIM) / 2, 0, 1) over masked pixels, kornia's SSIM with a 3x3 window
  (C1 = 0.01^2, C2 = 0.03^2 as in vid2depth; kornia's window is Gaussian, vid2depth's a box) (0.15);
* edge-aware smoothness |dD| exp(-|dI|) on the disparity 1/D (kornia's
  ``inverse_depth_smoothness_loss``) (0.05); ``normalise_disparity`` divides the disparity by its
  mean per image first (monodepth2's variant, scale-free; use a weight near 1e-3 with it);
* optional 3D alignment (ICP-style, weight 0 by default, 0.1 in vid2depth's examples): the
  target's points moved into the source camera are aligned to the source's own points at the
  same pixels by the best rigid transform T' (closed form, Kabsch); the loss is
  |T' - I| + mean |residual|, small when the two depth maps and the pose agree in 3D.

All frames are (B, 3, H, W) RGB in [0, 1]; depth is (B, 1, H, W), any positive unit (self-
supervised depth has a free scale); K is (B, 3, 3) for that H, W.

**Sources**: with ``reduce: min`` (default) each target pixel is scored against the source
that reproduces it best (0.85 L1 + 0.15 SSIM error per pixel, among the sources where it is
inside the mask), and a pixel inside no source's mask is not scored (monodepth2's minimum
reprojection). With ``mean`` every source is scored over its own mask and the sources averaged
(vid2depth); there a pose that pushes pixels out of the source image lowers the loss, which on
forward motion teaches the pose network the wrong direction for the next frame.

**Scales**: as vid2depth, the terms are computed at 4 scales, the frames, the depth and K
reduced by 1, 2, 4 and 8 (2x2 averages), and averaged (the smoothness of scale s weighted by
1/2^s as in vid2depth). The coarse scales give the pose and depth a gradient for motions of
many pixels, which bilinear sampling at full resolution cannot see.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.geometry.camera.perspective import project_points
from kornia.geometry.conversions import axis_angle_to_rotation_matrix, normalize_pixel_coordinates
from kornia.geometry.depth import depth_to_3d_v2
from kornia.geometry.linalg import transform_points
from kornia.losses import inverse_depth_smoothness_loss
from kornia.metrics import ssim
from torch import nn

from seldepth.defaults import check_number

MIN_Z = 1e-3  # points closer to (or behind) a camera than this do not project


def pose_to_matrix(pose: torch.Tensor) -> torch.Tensor:
    """(..., 6) [tx, ty, tz, rx, ry, rz] (translation, axis-angle rotation) -> (..., 4, 4) transform.

    Example:
        >>> pose_to_matrix(torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 0.0]))[:3, 3]
        tensor([1., 2., 3.])
    """
    if pose.shape[-1] != 6:
        raise ValueError(f"pose must be (..., 6) [translation, axis-angle], got {tuple(pose.shape)}")
    lead = pose.shape[:-1]
    flat = pose.reshape(-1, 6)
    T = torch.eye(4, dtype=pose.dtype, device=pose.device).repeat(len(flat), 1, 1)
    T[:, :3, :3] = axis_angle_to_rotation_matrix(flat[:, 3:])
    T[:, :3, 3] = flat[:, :3]
    return T.reshape(*lead, 4, 4)


def _check(frame: torch.Tensor, depth: torch.Tensor, transform: torch.Tensor, K: torch.Tensor) -> None:
    b, _, h, w = depth.shape
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, H, W), got {tuple(depth.shape)}")
    if frame.ndim != 4 or frame.shape[0] != b or frame.shape[-2:] != (h, w):
        raise ValueError(f"source frame must be (B, C, H, W) = ({b}, C, {h}, {w}), got {tuple(frame.shape)}")
    if transform.shape != (b, 4, 4) or K.shape != (b, 3, 3):
        raise ValueError(f"transform must be ({b}, 4, 4) and K ({b}, 3, 3), got {tuple(transform.shape)}, {tuple(K.shape)}")


def warp_to_target(source: torch.Tensor, depth: torch.Tensor, transform: torch.Tensor,
                   K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Synthesise the target view from a source frame.

    Args:
        source: (B, C, H, W) the source frame (or any map of it, e.g. its depth).
        depth: (B, 1, H, W) the target's depth.
        transform: (B, 4, 4) target-to-source camera transform.
        K: (B, 3, 3) intrinsics of both frames at (H, W).

    Returns:
        ``warped`` (B, C, H, W): the source sampled where each target pixel projects (bilinear, the
        same sampling as kornia's ``warp_frame_depth``); ``mask`` (B, 1, H, W) float: 1 where the
        projection lies inside the source image and in front of its camera; ``points`` (B, H, W, 3)
        the target's points in the source camera.
    """
    _check(source, depth, transform, K)
    h, w = depth.shape[-2:]
    points = transform_points(transform[:, None], depth_to_3d_v2(depth[:, 0], K))  # (B, H, W, 3) in the source camera
    z = points[..., 2:]
    in_front = z > MIN_Z
    safe = torch.where(in_front, points, torch.ones_like(points))  # no division by ~0 behind the camera
    pixels = project_points(safe, K[:, None, None])  # (B, H, W, 2) source pixel coordinates
    inside = (pixels[..., 0] >= 0) & (pixels[..., 0] <= w - 1) & (pixels[..., 1] >= 0) & (pixels[..., 1] <= h - 1)
    mask = (inside & in_front[..., 0]).to(depth.dtype)[:, None]
    grid = normalize_pixel_coordinates(pixels, h, w)
    warped = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped, mask, points


def downscale(frames: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, factor: int):
    """Frames (..., C, H, W) and depth (B, 1, H, W) averaged over ``factor`` x ``factor`` blocks, K for the smaller grid."""
    if factor == 1:
        return frames, depth, K
    lead = frames.shape[:-3]
    small = F.avg_pool2d(frames.reshape(-1, *frames.shape[-3:]), factor)
    small = small.view(*lead, *small.shape[-3:])
    K = K.clone()
    K[:, :2, :2] /= factor
    K[:, :2, 2] = (K[:, :2, 2] + 0.5) / factor - 0.5
    return small, F.avg_pool2d(depth, factor), K


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` (B, C, H, W) over the pixels where ``mask`` (B, 1, H, W) is 1 (0 if none)."""
    weight = mask.expand_as(x)
    return (x * weight).sum() / weight.sum().clamp_min(1)


def ssim_error(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel clip((1 - SSIM(x, y)) / 2, 0, 1), kornia's SSIM with a 3x3 window: (B, C, H, W)."""
    return ((1 - ssim(x, y, 3)) / 2).clamp(0, 1)


def smoothness_loss(depth: torch.Tensor, image: torch.Tensor, normalise: bool = False) -> torch.Tensor:
    """Edge-aware smoothness of the disparity 1/depth (kornia's ``inverse_depth_smoothness_loss``).

    ``normalise``: divide the disparity by its mean per image first (monodepth2), which makes the
    term scale-free; vid2depth's (the default) is on the raw disparity, so it weakens as the
    depth's free scale grows.
    """
    disparity = 1 / depth.clamp_min(MIN_Z)
    if normalise:
        disparity = disparity / disparity.mean(dim=(1, 2, 3), keepdim=True)
    return inverse_depth_smoothness_loss(disparity, image)


def rigid_alignment(points: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The rigid transform (B, 4, 4) that best moves ``points`` onto ``targets`` (weighted least squares, Kabsch).

    Args:
        points, targets: (B, N, 3) corresponding points; weight: (B, N) >= 0.
    """
    wsum = weight.sum(1, keepdim=True).clamp_min(1e-8)
    wn = (weight / wsum)[..., None]
    mp, mt = (points * wn).sum(1, keepdim=True), (targets * wn).sum(1, keepdim=True)
    cov = ((points - mp) * wn).transpose(1, 2) @ (targets - mt)  # (B, 3, 3)
    U, _, Vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(Vh.transpose(1, 2) @ U.transpose(1, 2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = Vh.transpose(1, 2) @ D @ U.transpose(1, 2)
    T = torch.eye(4, dtype=points.dtype, device=points.device).repeat(len(points), 1, 1)
    T[:, :3, :3] = R
    T[:, :3, 3] = (mt - mp @ R.transpose(1, 2))[:, 0]
    return T


def alignment_loss(points: torch.Tensor, depth_warped: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """vid2depth's 3D alignment term: |T' - I| + mean |T' p - q| over masked pixels.

    Args:
        points: (B, H, W, 3) the target's points p in the source camera (from :func:`warp_to_target`).
        depth_warped: (B, 1, H, W) the source frame's own depth sampled where p projects
            (:func:`warp_to_target` of the source depth); q is the source's point on the same ray,
            q = p / p_z * depth_warped.
        mask: (B, 1, H, W) the principled mask.
    """
    b = points.shape[0]
    z = points[..., 2:].clamp_min(MIN_Z)
    q = points / z * depth_warped.permute(0, 2, 3, 1)  # the source's point along the same ray
    p, q, w = points.reshape(b, -1, 3), q.reshape(b, -1, 3), mask.reshape(b, -1)
    T = rigid_alignment(p, q, w)
    moved = transform_points(T, p)
    residual = ((moved - q).abs().sum(-1) * w).sum() / w.sum().clamp_min(1)
    return (T - torch.eye(4, dtype=T.dtype, device=T.device)).abs().mean() + residual


@dataclass(frozen=True)
class PhotometricLossConfig:
    """Weights of the self-supervised loss (``selfsup:`` in the training config); vid2depth's by default."""

    w_reconstruction: float = 0.85
    w_ssim: float = 0.15
    w_smoothness: float = 0.05
    w_alignment: float = 0.0
    normalise_disparity: bool = False
    scales: int = 4
    reduce: str = "min"

    def __post_init__(self):
        if self.reduce not in ("min", "mean"):
            raise ValueError(f"selfsup.loss.reduce must be 'min' or 'mean', got {self.reduce!r}")
        check_number("selfsup.loss.scales", self.scales, 1, integer=True)
        for name in ("w_reconstruction", "w_ssim", "w_smoothness", "w_alignment"):
            check_number(f"selfsup.loss.{name}", getattr(self, name), 0)


class PhotometricLoss(nn.Module):
    """``forward(target, sources, depth, transforms, K, source_depths=None) -> (total, terms)``.

    Args of forward:
        target: (B, 3, H, W); sources: (B, S, 3, H, W); depth: (B, 1, H, W) the target's.
        transforms: (B, S, 4, 4) target-to-source; K: (B, 3, 3).
        source_depths: (B, S, 1, H, W), needed when ``w_alignment > 0``.

    Returns:
        The weighted total and the unweighted terms (``reconstruction``, ``ssim``, ``smoothness``,
        ``alignment``, ``mask``: the fraction of target pixels inside some source's mask), averaged
        over the scales.
    """

    def __init__(self, config: PhotometricLossConfig = PhotometricLossConfig()):
        super().__init__()
        self.config = config

    def forward(self, target, sources, depth, transforms, K, source_depths=None):
        c = self.config
        if sources.ndim != 5 or transforms.shape[:2] != sources.shape[:2]:
            raise ValueError(f"sources must be (B, S, 3, H, W) and transforms (B, S, 4, 4); got {tuple(sources.shape)}, "
                             f"{tuple(transforms.shape)}")
        if c.w_alignment > 0 and source_depths is None:
            raise ValueError("selfsup.w_alignment > 0 needs the sources' depths")
        terms = {"reconstruction": 0.0, "ssim": 0.0, "alignment": 0.0, "mask": 0.0, "smoothness": 0.0}
        n, k = sources.shape[1], c.scales
        if min(depth.shape[-2:]) // 2 ** (k - 1) < 4:
            raise ValueError(f"selfsup.loss.scales: {k} scales reduce {tuple(depth.shape[-2:])} frames below 4 pixels; "
                             f"use fewer scales or larger frames")
        for scale in range(k):
            f = 2 ** scale
            frames, d, Ks = downscale(torch.cat([target[:, None], sources], 1), depth, K, f)
            tgt, srcs = frames[:, 0], frames[:, 1:]
            src_depths = None
            if c.w_alignment > 0:
                src_depths = F.avg_pool2d(source_depths.flatten(0, 1), f).view(*source_depths.shape[:3], *d.shape[-2:]) \
                    if f > 1 else source_depths
            l1s, ssims, masks = [], [], []
            for s in range(n):
                warped, mask, points = warp_to_target(srcs[:, s], d, transforms[:, s], Ks)
                l1s.append((warped - tgt).abs().mean(1, keepdim=True))
                ssims.append(ssim_error(warped, tgt).mean(1, keepdim=True))
                masks.append(mask)
                if c.w_alignment > 0:
                    depth_warped, _, _ = warp_to_target(src_depths[:, s], d, transforms[:, s], Ks)
                    terms["alignment"] = terms["alignment"] + alignment_loss(points, depth_warped, mask) / (n * k)
            if scale == 0:
                terms["mask"] = terms["mask"] + torch.stack(masks).amax(0).mean().detach()
            if c.reduce == "min":
                l1, sim, mask = torch.stack(l1s), torch.stack(ssims), torch.stack(masks)
                error = torch.where(mask > 0, c.w_reconstruction * l1 + c.w_ssim * sim, torch.full_like(l1, float("inf")))
                best = error.argmin(0, keepdim=True)
                seen = mask.amax(0)
                terms["reconstruction"] = terms["reconstruction"] + masked_mean(l1.gather(0, best)[0], seen) / k
                terms["ssim"] = terms["ssim"] + masked_mean(sim.gather(0, best)[0], seen) / k
            else:
                for l1, sim, mask in zip(l1s, ssims, masks):
                    terms["reconstruction"] = terms["reconstruction"] + masked_mean(l1, mask) / (n * k)
                    terms["ssim"] = terms["ssim"] + masked_mean(sim, mask) / (n * k)
            terms["smoothness"] = terms["smoothness"] + smoothness_loss(d, tgt, c.normalise_disparity) / (f * k)
        total = (c.w_reconstruction * terms["reconstruction"] + c.w_ssim * terms["ssim"]
                 + c.w_smoothness * terms["smoothness"] + c.w_alignment * terms["alignment"])
        out = {k: (v.detach() if torch.is_tensor(v) else torch.tensor(float(v))) for k, v in terms.items()}
        if c.w_alignment == 0:
            out.pop("alignment")
        return total, out
