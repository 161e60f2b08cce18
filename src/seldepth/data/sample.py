"""The sample dict every reader returns, built and checked in one place.

Checks (each a :class:`DatasetError` naming the file): RGB and depth of different sizes,
NaN, infinite or negative depth, a depth map without a single valid pixel, semantics or
intrinsics of the wrong shape. Depth is never resized here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from seldepth.data.errors import DatasetError
from seldepth.data.files import load_npy


def make_sample(image: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, meta: dict,
                semantics: torch.Tensor | None = None, rgb_name: str | None = None,
                depth_name: str | None = None) -> dict:
    """A checked sample dict.

    Args:
        image: (3, H, W) float RGB in [0, 1].
        depth: (1, H, W) or (H, W) float metres, 0 where invalid.
        K: (3, 3) intrinsics of the image.
        meta: paths and ids (kept as given).
        semantics: optional (H, W) class ids.
        rgb_name, depth_name: the files to name in errors (default ``meta["rgb"]``, ``meta["depth"]``).

    Returns:
        ``{"image", "depth", "valid", "K", "meta"[, "semantics"]}`` with ``valid = depth > 0``.

    Raises:
        DatasetError: naming the file(s) at fault.
    """
    rgb_name = rgb_name or str(meta.get("rgb", "?"))
    depth_name = depth_name or str(meta.get("depth", "?"))
    depth = torch.as_tensor(depth, dtype=torch.float32)
    if depth.ndim == 2:
        depth = depth[None]
    if image.ndim != 3 or image.shape[0] != 3:
        raise DatasetError(f"{rgb_name}: expected an RGB image, got shape {tuple(image.shape)}")
    if depth.ndim != 3 or depth.shape[0] != 1:
        raise DatasetError(f"{depth_name}: expected a single-channel depth map, got shape {tuple(depth.shape)}")
    if image.shape[-2:] != depth.shape[-2:]:
        raise DatasetError(f"RGB {rgb_name} is {tuple(image.shape[-2:])} but depth {depth_name} is "
                           f"{tuple(depth.shape[-2:])} (H, W); they must be the same size")
    if not torch.isfinite(depth).all():
        n = int((~torch.isfinite(depth)).sum())
        raise DatasetError(f"{depth_name}: {n} depth values are NaN or infinite (invalid pixels must be 0)")
    if (depth < 0).any():
        raise DatasetError(f"{depth_name}: {int((depth < 0).sum())} depth values are negative (min {depth.min().item():g})")
    valid = depth > 0
    if not valid.any():
        raise DatasetError(f"{depth_name}: the depth map has no valid pixel (all zero)")
    K = torch.as_tensor(K, dtype=torch.float32)
    if K.shape != (3, 3) or not torch.isfinite(K).all():
        raise DatasetError(f"{rgb_name}: intrinsics must be a finite 3x3 matrix, got {K.tolist()}")
    sample = {"image": image, "depth": depth, "valid": valid, "K": K, "meta": meta}
    if semantics is not None:
        semantics = torch.as_tensor(semantics).long()
        if semantics.shape != depth.shape[-2:]:
            raise DatasetError(f"semantics of {rgb_name} are {tuple(semantics.shape)}, expected {tuple(depth.shape[-2:])}")
        sample["semantics"] = semantics
    return sample


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """The (3, 3) pinhole matrix of ``fx, fy, cx, cy``."""
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float32)


def read_intrinsics_file(path: Path) -> torch.Tensor:
    """A finite 3x3 intrinsics matrix from ``.npy`` or whitespace-separated text.

    Raises:
        DatasetError: naming the file, when it is unreadable or not a finite 3x3 matrix.
    """
    try:
        data = Path(path).read_bytes()
        arr = (load_npy(data, str(path), max_elements=1000) if str(path).endswith(".npy")
               else np.loadtxt(io.StringIO(data.decode("utf-8-sig"))))
        arr = np.asarray(arr, dtype=np.float64)
    except DatasetError:
        raise
    except (OSError, ValueError, UnicodeDecodeError, EOFError) as exc:
        raise DatasetError(f"{path}: expected a 3x3 intrinsics matrix ({exc})") from None
    if arr.shape != (3, 3) or not np.isfinite(arr).all():
        raise DatasetError(f"{path}: expected a finite 3x3 intrinsics matrix, got shape {arr.shape}")
    return torch.from_numpy(arr).float()


@dataclass(frozen=True)
class FrameId:
    """Where a sample sits in a video: its sequence, its frame number and its camera-to-world pose (4, 4) if known."""

    sequence: str
    number: int
    pose: np.ndarray | None = None
