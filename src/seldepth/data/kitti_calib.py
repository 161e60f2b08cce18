"""KITTI raw calibration, Velodyne scans, and the projection of a scan to a sparse depth map.

Files of a KITTI raw date folder (``2011_09_26/``):

- ``calib_cam_to_cam.txt``: per camera ``0X``, ``P_rect_0X`` (3x4 projection of the rectified
  camera, whose 3x3 left block is the intrinsics ``K`` of the ``image_0X`` images) and
  ``R_rect_00`` (3x3 rectifying rotation of camera 0).
- ``calib_velo_to_cam.txt``: ``R`` (3x3) and ``T`` (3) from Velodyne to (unrectified) camera 0.
- ``DRIVE/velodyne_points/data/N.bin``: float32 ``x, y, z, reflectance`` per point (Velodyne
  frame: x forward, y left, z up).

Projection convention (the KITTI devkit as used by monodepth2, BTS and PackNet, so that a
map projected here equals their Eigen ground truth and PackNet's ``proj_depth/velodyne``
``.npz``)::

    [u, v, w]^T = P_rect_0X @ R_rect_00 (as 4x4) @ [R | T] (as 4x4) @ [x, y, z, 1]^T
    column = round(u / w) - 1,   row = round(v / w) - 1,   depth = w (metres)

``round`` is numpy's (halves to even). The ``- 1`` (``offset=1``) is the devkit's MATLAB
1-based heritage kept by those code bases; pass ``offset=0`` for the 0-based pixel that
``K`` itself predicts. Points behind the sensor (``x < 0`` in the Velodyne frame) and points
with ``w <= 0`` are dropped, as are pixels outside the image; where several points fall on one
pixel the nearest (smallest ``w``) wins. 0 marks pixels without a point.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from seldepth.data.errors import DatasetError
from seldepth.data.files import read_bytes

CAM_TO_CAM = "calib_cam_to_cam.txt"
VELO_TO_CAM = "calib_velo_to_cam.txt"


def read_calib_file(source: str | os.PathLike | bytes, name: str | None = None) -> dict[str, np.ndarray]:
    """Read a KITTI raw calibration file (lines ``KEY: v1 v2 ...``).

    Lines whose values are not all numbers (``calib_time: 09-Jan-2012 13:57:47``) and lines
    without a ``:`` are skipped.

    Args:
        source: the file's path, or its bytes.
        name: the file to name in errors (default: the path).

    Returns:
        ``{key: (n,) float64 array}``.

    Raises:
        DatasetError: naming the file, when it is missing or cannot be read.
    """
    name = name or str(source)
    raw = read_bytes(source, name, "calibration file")
    data: dict[str, np.ndarray] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        key, sep, values = line.partition(":")
        if not sep or not key.strip():
            continue
        try:
            data[key.strip()] = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            continue
    return data


def calib_matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """The entry ``key`` of a calibration dict, reshaped to ``shape``.

    Raises:
        DatasetError: naming the file ``name`` and the key, when it is missing or has the wrong size.
    """
    if key not in calib:
        raise DatasetError(f"{name}: no {key!r} entry (has {', '.join(sorted(calib)) or 'none'})")
    values = calib[key]
    if values.size != int(np.prod(shape)):
        raise DatasetError(f"{name}: {key!r} has {values.size} values, expected {int(np.prod(shape))} ({shape})")
    return values.reshape(shape)


def _rect_projection(calib_dir: Path, camera: int) -> tuple[dict[str, np.ndarray], str]:
    if camera not in (0, 1, 2, 3):
        raise ValueError(f"camera must be 0, 1, 2 or 3 (image_0X), got {camera!r}")
    path = Path(calib_dir) / CAM_TO_CAM
    return read_calib_file(path), str(path)


def camera_intrinsics(calib_dir: str | os.PathLike, camera: int = 2) -> torch.Tensor:
    """The intrinsics (3, 3) of the rectified ``image_0{camera}``: the left 3x3 of ``P_rect_0{camera}``.

    Args:
        calib_dir: the date folder holding ``calib_cam_to_cam.txt``.
        camera: 0..3 (2 = left colour, 3 = right colour).

    Raises:
        DatasetError: naming the file (and key) when it is missing or lacks ``P_rect_0{camera}``.
    """
    calib, name = _rect_projection(Path(calib_dir), camera)
    P = calib_matrix(calib, f"P_rect_0{camera}", (3, 4), name)
    return torch.from_numpy(P[:, :3].astype(np.float32))


def velo_to_image(calib_dir: str | os.PathLike, camera: int = 2) -> np.ndarray:
    """The (3, 4) matrix ``P_rect_0X @ R_rect_00 @ [R|T]`` from Velodyne points to homogeneous pixels of ``image_0X``.

    Raises:
        DatasetError: naming the calibration file and key at fault.
    """
    calib_dir = Path(calib_dir)
    cam, cam_name = _rect_projection(calib_dir, camera)
    velo_name = str(calib_dir / VELO_TO_CAM)
    velo = read_calib_file(calib_dir / VELO_TO_CAM)
    velo_to_cam = np.eye(4)
    velo_to_cam[:3, :3] = calib_matrix(velo, "R", (3, 3), velo_name)
    velo_to_cam[:3, 3] = calib_matrix(velo, "T", (3,), velo_name)
    rect = np.eye(4)
    rect[:3, :3] = calib_matrix(cam, "R_rect_00", (3, 3), cam_name)
    P = calib_matrix(cam, f"P_rect_0{camera}", (3, 4), cam_name)
    return P @ rect @ velo_to_cam


def read_velodyne(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """Read a Velodyne scan ``.bin`` (little-endian float32 ``x, y, z, reflectance`` per point).

    Returns:
        (N, 4) float32.

    Raises:
        DatasetError: naming the file, when it is missing, unreadable, or not a whole number of
            16-byte points.
    """
    name = name or str(source)
    raw = read_bytes(source, name, "Velodyne scan")
    if len(raw) % 16:
        raise DatasetError(f"{name}: not a Velodyne scan: {len(raw)} bytes is not a multiple of 16 "
                           "(4 float32 per point)")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, 4).astype(np.float32)


def project_points(points: np.ndarray, P_velo_to_image: np.ndarray, image_size: tuple[int, int],
                   offset: int = 1) -> np.ndarray:
    """Project Velodyne points with a (3, 4) matrix to a sparse depth map (the module's convention).

    Args:
        points: (N, 3) or (N, 4) Velodyne points (a 4th column, reflectance, is ignored).
        P_velo_to_image: (3, 4), e.g. from :func:`velo_to_image`.
        image_size: (H, W).
        offset: subtracted from the rounded pixel coordinates (1: devkit/monodepth2; 0: 0-based).

    Returns:
        (H, W) float32 metres, 0 where no point falls.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] not in (3, 4):
        raise ValueError(f"points must be (N, 3) or (N, 4), got shape {points.shape}")
    P = np.asarray(P_velo_to_image, dtype=np.float64)
    if P.shape != (3, 4):
        raise ValueError(f"P_velo_to_image must be (3, 4), got {P.shape}")
    h, w = (int(s) for s in image_size)
    depth = np.zeros((h, w), dtype=np.float32)
    xyz = points[:, :3].astype(np.float64)
    xyz = xyz[np.isfinite(xyz).all(axis=1) & (xyz[:, 0] >= 0)]
    uvw = xyz @ P[:, :3].T + P[:, 3]
    uvw = uvw[uvw[:, 2] > 0]
    if not len(uvw):
        return depth
    col = np.round(uvw[:, 0] / uvw[:, 2]) - offset
    row = np.round(uvw[:, 1] / uvw[:, 2]) - offset
    inside = (col >= 0) & (row >= 0) & (col < w) & (row < h)
    col, row, z = col[inside].astype(np.int64), row[inside].astype(np.int64), uvw[inside, 2]
    flat = row * w + col
    order = np.lexsort((z, flat))  # by pixel, then nearest first
    flat, z = flat[order], z[order]
    first = np.ones(len(flat), dtype=bool)
    first[1:] = flat[1:] != flat[:-1]
    depth.reshape(-1)[flat[first]] = z[first]
    return depth


def project_velodyne(points: np.ndarray, calib_dir: str | os.PathLike, camera: int,
                     image_size: tuple[int, int], offset: int = 1) -> np.ndarray:
    """Project a Velodyne scan into ``image_0{camera}`` with the date folder's calibration.

    Args:
        points: (N, 4) or (N, 3) Velodyne points, e.g. from :func:`read_velodyne`.
        calib_dir: the date folder with ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt``.
        camera: 0..3.
        image_size: (H, W) of the image.
        offset: see :func:`project_points` (default 1, the devkit/monodepth2/PackNet convention).

    Returns:
        (H, W) float32 metres (the projected third coordinate ``w``), 0 where no point falls;
        the nearest point wins a pixel.

    Raises:
        DatasetError: naming a calibration file (and key) that is missing or incomplete.
    """
    return project_points(points, velo_to_image(calib_dir, camera), image_size, offset)
