"""Depth to a coloured point cloud: pinhole unprojection and binary PLY files.

Camera coordinates are OpenCV's: X right, Y down, Z forward (the depth), metres. Pixel
centres are at integer (u, v): u the column, v the row.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seldepth.atomic import atomic_path

INTRINSICS_HELP = ("give --fx --fy --cx --cy (pixels), or --fov DEG (horizontal field of view, principal point at "
                   "the image centre), or use a model file whose metadata has 'intrinsics'")


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics, either fixed (pixels) or from a horizontal field of view.

    Attributes:
        fx, fy, cx, cy: focal lengths and principal point in pixels (fixed; ``fy`` defaults to
            ``fx``, ``cx``/``cy`` to the image centre ((W-1)/2, (H-1)/2)).
        fov: horizontal field of view in degrees instead of ``fx``/``fy``: fx = fy = W / (2 tan(fov/2)).
        size: (H, W) the fixed values refer to; an image of another size gets them scaled.
            ``None``: use them as they are for every image.
    """

    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    fov: float | None = None
    size: tuple[int, int] | None = None

    def __post_init__(self):
        if (self.fov is None) == (self.fx is None):
            raise ValueError("intrinsics need either fx (with optional fy, cx, cy) or fov, not both or neither; "
                             + INTRINSICS_HELP)
        if self.fov is not None and not 0 < self.fov < 180:
            raise ValueError(f"--fov must be in (0, 180) degrees, got {self.fov}")
        for key in ("fx", "fy"):
            value = getattr(self, key)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{key} must be a positive focal length in pixels, got {value}")

    def at(self, height: int, width: int) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels for an image of (height, width)."""
        if self.fov is not None:
            f = width / (2.0 * math.tan(math.radians(self.fov) / 2.0))
            return f, f, (width - 1) / 2.0, (height - 1) / 2.0
        fx = self.fx
        fy = self.fy if self.fy is not None else fx
        cx = self.cx if self.cx is not None else None
        cy = self.cy if self.cy is not None else None
        if self.size is not None and tuple(self.size) != (height, width):
            sy, sx = height / self.size[0], width / self.size[1]
            fx, fy = fx * sx, fy * sy
            # Pixel centres at integers: x' + 0.5 = (x + 0.5) * s.
            cx = (cx + 0.5) * sx - 0.5 if cx is not None else None
            cy = (cy + 0.5) * sy - 0.5 if cy is not None else None
        return fx, fy, (width - 1) / 2.0 if cx is None else cx, (height - 1) / 2.0 if cy is None else cy


def intrinsics_from_metadata(metadata: dict | None) -> Intrinsics | None:
    """Intrinsics recorded in a model file's metadata under ``intrinsics``, else ``None``.

    Accepted forms (a dict or its JSON string): ``{"fx", "fy", "cx", "cy"[, "height", "width"]}``,
    ``{"fov"}``, or a 3x3 matrix ``K`` (``[[fx,0,cx],[0,fy,cy],[0,0,1]]``, optionally
    ``{"K": ..., "height": .., "width": ..}``).
    """
    value = (metadata or {}).get("intrinsics")
    if value in (None, "", {}):
        return None
    try:
        if isinstance(value, str):
            value = json.loads(value)
        size = None
        if isinstance(value, dict) and "K" in value:
            if "height" in value and "width" in value:
                size = (int(value["height"]), int(value["width"]))
            value = value["K"]
        if isinstance(value, (list, tuple)):
            K = np.asarray(value, dtype=np.float64)
            if K.shape != (3, 3):
                raise ValueError(f"K has shape {K.shape}")
            return Intrinsics(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], size=size)
        if "fov" in value:
            return Intrinsics(fov=float(value["fov"]))
        if "height" in value and "width" in value:
            size = (int(value["height"]), int(value["width"]))
        return Intrinsics(**{k: float(value[k]) for k in ("fx", "fy", "cx", "cy") if value.get(k) is not None}, size=size)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"model metadata 'intrinsics' is not usable ({exc}): {value!r}") from None


def resolve_intrinsics(fx=None, fy=None, cx=None, cy=None, fov=None, metadata: dict | None = None) -> Intrinsics | None:
    """Intrinsics from explicit values (``fx``.. or ``fov``), else from model metadata, else ``None``."""
    if fov is not None or any(v is not None for v in (fx, fy, cx, cy)):
        if fov is not None and any(v is not None for v in (fx, fy)):
            raise ValueError("give either --fov or --fx/--fy, not both")
        if fov is None and fx is None:
            raise ValueError("--fy, --cx or --cy given without --fx; " + INTRINSICS_HELP)
        return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, fov=fov)
    return intrinsics_from_metadata(metadata)


def unproject(depth: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole unprojection of the valid pixels: X = (u - cx) Z / fx, Y = (v - cy) Z / fy, Z = depth.

    Args:
        depth: (H, W) metres; pixels that are not finite or <= 0 are left out.

    Returns:
        (points, valid): (N, 3) float32 XYZ in metres in row-major pixel order, and the (H, W) bool mask.
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"expected a (H, W) depth map in metres, got shape {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    v, u = np.nonzero(valid)
    z = d[v, u]
    points = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=1).astype(np.float32)
    return points, valid


def write_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray | None = None) -> Path:
    """Write a binary little-endian PLY of float32 x, y, z and (optionally) uchar red, green, blue; atomic.

    Args:
        points: (N, 3) metres.
        colors: (N, 3) uint8 RGB.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected (N, 3) points, got shape {points.shape}")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != points.shape:
            raise ValueError(f"expected (N, 3) colours for {len(points)} points, got shape {colors.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rows = np.empty(len(points), dtype=fields)
    rows["x"], rows["y"], rows["z"] = points[:, 0], points[:, 1], points[:, 2]
    header = ["ply", "format binary_little_endian 1.0", "comment seldepth: camera coordinates X right, Y down, Z forward, metres",
              f"element vertex {len(points)}", "property float x", "property float y", "property float z"]
    if colors is not None:
        rows["red"], rows["green"], rows["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rows.tobytes())
    return Path(path)


def write_depth_ply(path: str | os.PathLike, depth: np.ndarray, rgb: np.ndarray, intrinsics: Intrinsics) -> Path:
    """One coloured point per valid pixel of ``depth`` (H, W metres); ``rgb`` (H, W, 3) uint8."""
    rgb = np.asarray(rgb)
    if rgb.shape != (*np.shape(depth), 3):
        raise ValueError(f"expected (H, W, 3) colours for a depth map of shape {np.shape(depth)}, got {rgb.shape}")
    points, valid = unproject(depth, *intrinsics.at(*np.shape(depth)))
    return write_ply(path, points, rgb[valid])
