"""Per-unit, per-depth-bin responses: the one implementation shared by dissection and the regulariser.

For a unit k with activation map A_k (h, w) and a depth map (H, W) split into bins, the
response of bin d is (You et al., ICCV 2021; see docs/references.md)::

    R[k, d] = sum_p up(A_k)(p) M_d(p) / sum_p M_d(p)

with ``up`` bilinear upsampling to (H, W) (``align_corners=False``) and ``M_d`` the mask of
the valid pixels in bin d. Upsampling every channel to the ground-truth size is the costly
part of a plain implementation; here it never happens. ``up`` is linear and separable,
``up(A) = Wr A Wc^T`` with row weights ``Wr`` (H, h) and column weights ``Wc`` (W, w), so

    sum_p up(A_k)(p) M_d(p) = sum_q A_k(q) P_d(q),    P_d = Wr^T M_d Wc   (h, w)

``P_d`` (the adjoint of the upsampling applied to the bin mask, :func:`project_bins`) is
built without forming ``M_d``: ``Wr`` and ``Wc`` have two taps per row, so every pixel adds
its four weights ``Wr[y, r] Wc[x, c]`` at (bin, r, c) with ``scatter_add_``. All unit sums
of a layer are then one (K x hw) @ (hw x N_b) matmul per image. The result is exact up to
float rounding and differentiable in the activations (``P`` does not depend on them).

Masks of several layers that share an activation grid and N_b share one projection
(``projected=``), which is how the dissection runs 16 layers for the price of 5 grids.

Conventions: sums and counts only; dividing (``R = sums / counts``) and the selectivity index
(:func:`selectivity_index`) treat empty bins explicitly.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch


class BinnedResponses(NamedTuple):
    """Per-unit per-bin activation sums and per-bin pixel counts.

    Attributes:
        sums: (K, N_b), or (B, K, N_b) per image: sum over pixels of bin d of the upsampled activation.
        counts: (N_b,), or (B, N_b) per image: number of valid pixels in bin d (same dtype as ``sums``).
    """

    sums: torch.Tensor
    counts: torch.Tensor


@functools.lru_cache(maxsize=128)
def _linear_taps(in_size: int, out_size: int, dtype: torch.dtype, device: torch.device):
    """The two source taps of every output index of 1-D linear interpolation (``align_corners=False``).

    Follows PyTorch's ``upsample_bilinear2d`` with an output size given: source coordinate
    ``s = (i + 0.5) * in / out - 0.5`` clamped at 0, taps ``floor(s)`` and ``min(floor(s) + 1, in - 1)``
    with weights ``1 - frac`` and ``frac``.

    Returns:
        (idx0, idx1, w0, w1): (out,) int64, (out,) int64, (out,) dtype, (out,) dtype.
    """
    i = torch.arange(out_size, dtype=torch.float64)
    src = ((i + 0.5) * (in_size / out_size) - 0.5).clamp_min(0.0)
    idx0 = src.floor().long().clamp_max(in_size - 1)
    lam = (src - idx0).clamp(0.0, 1.0)
    idx1 = (idx0 + 1).clamp_max(in_size - 1)
    return (idx0.to(device), idx1.to(device), (1.0 - lam).to(device=device, dtype=dtype), lam.to(device=device, dtype=dtype))


@functools.lru_cache(maxsize=128)
def interpolation_matrix(in_size: int, out_size: int, dtype: torch.dtype = torch.float64,
                         device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Dense 1-D bilinear (``align_corners=False``) interpolation matrix.

    Args:
        in_size: source length (h or w).
        out_size: target length (H or W).

    Returns:
        (out_size, in_size) matrix ``Wt`` with ``F.interpolate(x, out_size)`` = ``Wt @ x`` along that axis.
        Cached per (in_size, out_size, dtype, device); do not modify in place.
    """
    idx0, idx1, w0, w1 = _linear_taps(in_size, out_size, dtype, device)
    m = torch.zeros(out_size, in_size, dtype=dtype, device=device)
    rows = torch.arange(out_size, device=device)
    m.index_put_((rows, idx0), w0, accumulate=True)
    m.index_put_((rows, idx1), w1, accumulate=True)
    return m


def _check_bins(bins: torch.Tensor, num_bins: int) -> None:
    if bins.ndim != 3:
        raise ValueError(f"bins: expected (B, H, W) bin indices, got shape {tuple(bins.shape)}")
    if bins.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        raise ValueError(f"bins: expected an integer tensor, got {bins.dtype}")
    if not isinstance(num_bins, int) or num_bins < 1:
        raise ValueError(f"num_bins: expected a positive integer, got {num_bins!r}")
    if bins.numel():
        lo, hi = torch.aminmax(bins)
        if int(hi) >= num_bins or int(lo) < -1:
            raise ValueError(f"bins: indices must lie in [-1, {num_bins}) (-1 = invalid), got {int(lo)}..{int(hi)}")


def bin_counts(bins: torch.Tensor, num_bins: int, per_image: bool = False, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Valid pixels per bin.

    Args:
        bins: (B, H, W) int bin indices, -1 = invalid.
        num_bins: N_b.
        per_image: keep the batch dimension.

    Returns:
        (N_b,) or (B, N_b) counts as ``dtype``.
    """
    _check_bins(bins, num_bins)
    return _bin_counts(bins.long(), num_bins, per_image).to(dtype)


def _bin_counts(bins: torch.Tensor, num_bins: int, per_image: bool) -> torch.Tensor:
    slots = num_bins + 1  # slot 0 collects the invalid pixels (-1)
    if per_image:
        offs = torch.arange(bins.shape[0], device=bins.device).view(-1, 1, 1) * slots
        counts = torch.bincount((bins + 1 + offs).view(-1), minlength=bins.shape[0] * slots)
        return counts.view(bins.shape[0], slots)[:, 1:]
    return torch.bincount((bins + 1).view(-1), minlength=slots)[1:]


@functools.lru_cache(maxsize=32)
def _scatter_plan(H: int, W: int, h: int, w: int, dtype: torch.dtype, device: torch.device):
    """Where and how much each pixel of an (H, W) map adds on an (h + 1, w + 1) padded grid.

    Returns:
        (index, weights, pairs): index (H * W,) int64 = ``r0[y] * (w + 1) + c0[x]``, the top-left
        tap; weights (4, H * W) of ``dtype`` for the taps (r0, c0), (r0, c0 + 1), (r0 + 1, c0),
        (r0 + 1, c0 + 1); pairs (2, H * W) complex: the taps of one row as real and imaginary part.
    """
    r0, _, rw0, rw1 = _linear_taps(h, H, torch.float64, device)
    c0, _, cw0, cw1 = _linear_taps(w, W, torch.float64, device)
    index = (r0.view(H, 1) * (w + 1) + c0.view(1, W)).reshape(-1)
    weights = torch.stack([torch.outer(rw0, cw0), torch.outer(rw0, cw1), torch.outer(rw1, cw0), torch.outer(rw1, cw1)])
    weights = weights.reshape(4, H * W).to(dtype)
    pairs = torch.complex(weights[0::2], weights[1::2]) if dtype in (torch.float32, torch.float64) else None
    return index, weights, pairs


def project_slots(slots: torch.Tensor, num_slots: int, size: tuple[int, int], dtype: torch.dtype,
                   overwrite: bool = False) -> torch.Tensor:
    """Adjoint of bilinear upsampling applied to the one-hot masks of ``slots``.

    Every pixel adds its four bilinear weights ``Wr[y, r] * Wc[x, c]`` at (image, slot, r, c)
    with ``scatter_add_`` (the weights depend only on the pixel's position, so they are
    broadcast over the batch, not copied). On CPU the two taps of a row travel as the real and
    imaginary part of one complex number (tap (r, c) and tap (r, c + 1)): two scatters instead
    of four. The grid has one spare row and column: at the bottom and right borders both taps
    are the last row / column (PyTorch clamps the index), so the spare ones are folded back.

    Args:
        slots: (B, H, W) int64 in [0, num_slots), every pixel in exactly one slot.
        num_slots: number of slots S.
        size: (h, w) of the activation grid.
        dtype: float dtype of the result.
        overwrite: use ``slots`` (int64, contiguous) as scratch space instead of allocating.

    Returns:
        (B, S, h, w) view (not contiguous).
    """
    B, H, W = slots.shape
    h, w = size
    hp, wp = h + 1, w + 1
    index, weights, pairs = _scatter_plan(H, W, h, w, dtype, slots.device)
    flat = slots.reshape(B, H * W)
    idx = torch.add(index, flat, alpha=hp * wp, out=flat if overwrite else None)  # (B, H * W)
    if pairs is not None and slots.device.type == "cpu":
        packed = torch.zeros(B, num_slots * hp * wp, dtype=pairs.dtype)
        packed.scatter_add_(1, idx, pairs[0].expand(B, H * W))  # row r0: taps c0 (real), c0 + 1 (imaginary)
        packed[:, wp:].scatter_add_(1, idx, pairs[1].expand(B, H * W))  # row r0 + 1
        parts = torch.view_as_real(packed)
        grid = parts[..., 0].clone()
        grid[:, 1:] += parts[:, :-1, 1]
    else:
        grid = torch.zeros(B, num_slots * hp * wp, dtype=dtype, device=slots.device)
        for tap, offset in enumerate((0, 1, wp, wp + 1)):  # four taps, each one vectorised scatter
            grid[:, offset:].scatter_add_(1, idx, weights[tap].expand(B, H * W))
    grid = grid.view(B, num_slots, hp, wp)
    grid[:, :, h - 1] += grid[:, :, h]
    grid[:, :, :, w - 1] += grid[:, :, :, w]
    return grid[:, :, :h, :w]


def project_bins(bins: torch.Tensor, num_bins: int, size: tuple[int, int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bin masks mapped onto an activation grid by the adjoint of bilinear upsampling.

    ``P[b, d] = Wr^T M_{b,d} Wc``, where ``M_{b,d}`` (H, W) is the 0/1 mask of image b's valid
    pixels in bin d and ``Wr`` (H, h), ``Wc`` (W, w) are the bilinear weights
    (``align_corners=False``) from (h, w) up to (H, W). Then for any activation map A (h, w):
    ``sum(F.interpolate(A, (H, W)) * M_{b,d}) == sum(A * P[b, d])``.

    Cost: the masks (B, N_b, H, W) are never formed. ``Wr`` and ``Wc`` have two taps per row,
    so ``Wr^T M Wc`` is four scattered adds per pixel (``scatter_add_`` into (B, N_b, h, w),
    weights ``Wr[y, r] * Wc[x, c]``; on CPU as two scatters of complex pairs): 4·B·H·W adds,
    whatever N_b. (The separable form — column
    taps into (H, N_b, w), then the rows — does fewer adds but through an intermediate N_b·w/W
    times the image, slower on CPU for N_b of 16 or more.)

    Args:
        bins: (B, H, W) int bin indices, -1 = invalid.
        num_bins: N_b.
        size: (h, w) of the activation grid.
        dtype: float dtype of the result (float32 or float64).

    Returns:
        (B, N_b, h, w) tensor of ``dtype`` on ``bins.device`` (a view, not contiguous).

    Example:
        >>> bins = torch.randint(-1, 4, (2, 30, 40))
        >>> project_bins(bins, 4, (7, 9)).shape
        torch.Size([2, 4, 7, 9])
    """
    _check_bins(bins, num_bins)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size: expected (h, w) of positive ints, got {size!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype: expected a float dtype, got {dtype}")
    b = bins.long()
    slots = torch.where(b < 0, num_bins, b)  # invalid pixels go to a spare slot, dropped below
    return project_slots(slots, num_bins + 1, (int(size[0]), int(size[1])), dtype, overwrite=True)[:, :num_bins]


def binned_responses(activations: torch.Tensor, bins: torch.Tensor | None, num_bins: int, per_image: bool = False,
                     projected: torch.Tensor | None = None, counts: torch.Tensor | None = None) -> BinnedResponses:
    """Per-unit per-bin sums of bilinearly upsampled activations, and per-bin pixel counts.

    Equal (up to float rounding) to upsampling ``activations`` to the size of ``bins`` with
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` and summing each channel over
    the pixels of each bin, but without forming the upsampled maps (see :func:`project_bins`).
    Differentiable with respect to ``activations``; no Python loop over images or bins.

    Args:
        activations: (B, K, h, w) float32 or float64 activations of one layer.
        bins: (B, H, W) int bin indices of the ground truth, -1 = invalid / out of range
            (may be None when ``projected`` and ``counts`` are both given).
        num_bins: N_b.
        per_image: return (B, K, N_b) sums and (B, N_b) counts instead of batch totals.
        projected: optional result of ``project_bins(bins, num_bins, (h, w), activations.dtype)``
            to reuse across layers that share (N_b, h, w).
        counts: optional result of ``bin_counts(bins, num_bins, per_image)`` to reuse likewise.

    Returns:
        :class:`BinnedResponses` with ``sums`` (K, N_b) or (B, K, N_b) and ``counts`` (N_b,)
        or (B, N_b), both of ``activations.dtype``. Mean responses are ``sums / counts``
        where ``counts > 0``.

    Example:
        >>> acts = torch.randn(2, 8, 6, 8, requires_grad=True)
        >>> bins = torch.randint(-1, 5, (2, 48, 64))
        >>> out = binned_responses(acts, bins, 5)
        >>> out.sums.shape, out.counts.shape
        (torch.Size([8, 5]), torch.Size([5]))
    """
    if activations.ndim != 4:
        raise ValueError(f"activations: expected (B, K, h, w), got shape {tuple(activations.shape)}")
    if not activations.is_floating_point():
        raise ValueError(f"activations: expected a float tensor, got {activations.dtype}")
    B, K, h, w = activations.shape
    if bins is None:
        if projected is None or counts is None:
            raise ValueError("bins: required unless both projected and counts are given")
    elif bins.ndim != 3 or bins.shape[0] != B:
        raise ValueError(f"bins: expected (B, H, W) with B = {B} like the activations, got {tuple(bins.shape)}")
    elif bins.device != activations.device:
        raise ValueError(f"bins: on {bins.device} but activations on {activations.device}")
    if projected is None:
        projected = project_bins(bins, num_bins, (h, w), activations.dtype)
    elif tuple(projected.shape) != (B, num_bins, h, w):
        raise ValueError(f"projected: expected shape {(B, num_bins, h, w)}, got {tuple(projected.shape)}")
    a = activations.reshape(B, K, h * w)
    p = projected.reshape(B, num_bins, h * w).to(activations.dtype)
    sums = torch.bmm(a, p.transpose(1, 2))  # (B, K, N_b): one (K x hw) @ (hw x N_b) per image, no copies
    if not per_image:
        sums = sums.sum(0)
    if counts is None:
        counts = bin_counts(bins, num_bins, per_image=per_image, dtype=activations.dtype)
    elif tuple(counts.shape) != ((B, num_bins) if per_image else (num_bins,)):
        raise ValueError(f"counts: expected shape {(B, num_bins) if per_image else (num_bins,)}, got {tuple(counts.shape)}")
    return BinnedResponses(sums, counts.to(activations.dtype))


def mean_responses(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """R = sums / counts, 0 in empty bins (their ``counts`` are 0; see :func:`selectivity_index`).

    Args:
        sums: (..., K, N_b).
        counts: (..., N_b).

    Returns:
        (..., K, N_b) mean responses, same dtype as ``sums``.
    """
    c = counts.to(sums.dtype).unsqueeze(-2)
    return torch.where(c > 0, sums / c.clamp_min(1), torch.zeros_like(sums))


class Selectivity(NamedTuple):
    """Depth selectivity of the units of a layer.

    Attributes:
        ds: (K,) selectivity index in [0, 1] (in [-1, 1] with an assigned ``preferred`` bin; 0 where undefined).
        preferred_bin: (K,) int64, the bin of largest |R| (or the assigned bin).
        defined: (K,) bool, False where DS is undefined (fewer than two non-empty bins) and set to 0.
    """

    ds: torch.Tensor
    preferred_bin: torch.Tensor
    defined: torch.Tensor


def selectivity_index(responses: torch.Tensor, nonempty: torch.Tensor | None = None,
                      preferred: torch.Tensor | None = None, eps: float = 1e-12) -> Selectivity:
    """Depth selectivity index of each unit (You et al., ICCV 2021).

    ``DS = (|R^max| - |R^-max|) / (|R^max| + |R^-max|)`` computed on the magnitudes ``|R|`` of
    the signed mean responses: ``|R^max|`` is the largest ``|R|`` among non-empty bins (or
    ``|R|`` of ``preferred`` when given, e.g. the assigned bin of the regulariser) and
    ``|R^-max|`` the mean of ``|R|`` over the OTHER NON-EMPTY bins. This is the convention
    that reproduces the reference figures of the official NYU METER-xxs on nyu_test_sample (R averages signed
    activations; DS takes |R| per bin, then the mean). Empty bins are left out (they are not
    R = 0). A unit whose responses are all 0 has DS 0; a unit with fewer than two non-empty
    bins has DS 0 and ``defined`` False. Never NaN; differentiable in ``responses``.

    Args:
        responses: (..., K, N_b) mean responses R.
        nonempty: (N_b,) or (..., N_b) bool, bins with at least one pixel (default: all).
        preferred: optional (K,) int64 bin per unit to use instead of the argmax of |R|.
        eps: guards the division for all-zero units.

    Returns:
        :class:`Selectivity` with ``ds`` and ``preferred_bin`` of shape (..., K).

    Example:
        >>> R = torch.tensor([[0.0, 1.0, 0.0], [2.0, 2.0, 2.0]])
        >>> selectivity_index(R).ds
        tensor([1., 0.])
    """
    if responses.ndim < 2:
        raise ValueError(f"responses: expected (..., K, N_b), got shape {tuple(responses.shape)}")
    n_b = responses.shape[-1]
    if nonempty is None:
        nonempty = torch.ones(n_b, dtype=torch.bool, device=responses.device)
    nonempty = nonempty.bool().unsqueeze(-2).expand(responses.shape)
    absr = responses.abs()
    if preferred is None:
        preferred = torch.where(nonempty, absr, torch.full_like(absr, -1.0)).argmax(-1)
    else:
        preferred = preferred.to(device=responses.device, dtype=torch.long).expand(responses.shape[:-1])
    one_hot = torch.nn.functional.one_hot(preferred, n_b).bool()
    r_max = responses.gather(-1, preferred.unsqueeze(-1)).squeeze(-1).abs()
    others = nonempty & ~one_hot
    n_others = others.sum(-1)
    mean_others = (absr * others).sum(-1) / n_others.clamp_min(1)
    a, b = r_max, mean_others
    denom = a + b
    ds = (a - b) / denom.clamp_min(eps)
    defined = (n_others > 0) & (nonempty & one_hot).any(-1)
    ds = torch.where(defined & (denom > 0), ds, torch.zeros_like(ds))
    return Selectivity(ds, preferred, defined)
