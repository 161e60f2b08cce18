"""Pinhole camera of the synthetic renderer: NYU-like intrinsics and camera-to-world poses.

Camera frame (OpenCV): x right, y down, z forward (the optical axis). The pose is the 4x4
camera-to-world matrix ``[R | c]``: a point ``X_cam`` is at ``R @ X_cam + c`` in the world
(z up). ``yaw`` turns the camera about the world z axis (``0`` looks along +x, ``pi / 2``
along +y); ``pitch`` tilts it up (positive) or down (negative).
"""

from __future__ import annotations

import math

import numpy as np

from seldepth.data.nyu_densedepth import nyu_intrinsics


def intrinsics(size: tuple[int, int]) -> np.ndarray:
    """NYU's intrinsics scaled to an image of ``size``.

    Args:
        size: (H, W) of the image.

    Returns:
        (3, 3) float64 ``K``; the pixel ``(col, row)`` has image coordinates ``(col, row)``.
    """
    return nyu_intrinsics(*size).double().numpy()


def look_rotation(yaw: float, pitch: float) -> np.ndarray:
    """(3, 3) camera-to-world rotation of a camera with no roll, turned by ``yaw``, tilted by ``pitch`` (radians)."""
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    forward = np.array([cp * cy, cp * sy, sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=1)


def camera_pose(position, yaw: float, pitch: float) -> np.ndarray:
    """(4, 4) camera-to-world pose of a camera at ``position`` (3,) metres with ``yaw``, ``pitch`` (radians)."""
    pose = np.eye(4)
    pose[:3, :3] = look_rotation(yaw, pitch)
    pose[:3, 3] = np.asarray(position, dtype=np.float64)
    return pose


def camera_rays(size: tuple[int, int], K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame ray directions with z = 1 through every pixel.

    Returns:
        (x, y): (1, W) and (H, 1) float64 ``K^-1 [col, row, 1]`` components.
    """
    h, w = size
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    x = (np.arange(w, dtype=np.float64) - cx) / fx
    y = (np.arange(h, dtype=np.float64) - cy) / fy
    return x[None, :], y[:, None]
