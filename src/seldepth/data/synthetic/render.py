"""Vectorised ray caster: RGB, metric z-depth and semantic classes of a scene seen by a pinhole camera.

One camera ray per pixel, with camera-frame direction ``K^-1 [col, row, 1]`` (z component 1), so
the hit parameter ``t`` of a ray is the z-depth of its hit point. The room box is intersected
in closed form; each solid is tested only on the pixels of its projected bounding box. Shading
is Lambert with one or two point lights, ambient light and cast shadows; a shadow ray is tested
only against the solids whose shadow cone (from the light, around the solid's bounding sphere)
contains the hit point. All work is NumPy array arithmetic in float32; no loop runs over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from seldepth.data.synthetic.camera import camera_rays, intrinsics
from seldepth.data.synthetic.geometry import (
    CEILING,
    CLASSES,
    FLOOR,
    WALL,
    Scene,
    room_hits,
)
from seldepth.data.synthetic.scene import sample_scene, sample_trajectory
from seldepth.data.synthetic.textures import albedo

MIN_DEPTH = 0.3
MAX_DEPTH = 10.0
_ROOM_FACES = 6  # ids 0..5 are the room's faces, 6 + k the k-th solid
_SHADOW_EPS = 2e-3
_EXPOSURE = 1.6
_LUT_SQRT_MAX = 2.5  # radiance 6.25 maps to 255 anyway
_LUT_SCALE = 4096 / _LUT_SQRT_MAX
_LUT = (np.power(1.0 - np.exp(-_EXPOSURE * ((np.arange(4097) + 0.5) / _LUT_SCALE) ** 2), 1.0 / 2.2) * 255.0 + 0.5
        ).astype(np.uint8)


def _check_size(size) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (H, W), two positive integers, got {size!r}") from None
    if h < 1 or w < 1 or (h, w) != tuple(size):
        raise ValueError(f"size must be (H, W), two positive integers, got {size!r}")
    return h, w


def _screen_rect(prim, R_w2c, t_w2c, K, h, w):
    """Pixel rectangle (r0, r1, c0, c1) that holds the solid's projection, or None when it is behind the camera."""
    lo, hi = prim.bounds()
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    cam = corners @ R_w2c.T + t_w2c
    z = cam[:, 2]
    if z.max() <= 1e-3:
        return None
    if z.min() <= 1e-3:
        return 0, h, 0, w
    u = K[0, 0] * cam[:, 0] / z + K[0, 2]
    v = K[1, 1] * cam[:, 1] / z + K[1, 2]
    c0, c1 = max(0, int(math.floor(u.min())) - 1), min(w, int(math.ceil(u.max())) + 2)
    r0, r1 = max(0, int(math.floor(v.min())) - 1), min(h, int(math.ceil(v.max())) + 2)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def render(scene: Scene, pose: np.ndarray, K: np.ndarray | None = None, size: tuple[int, int] = (192, 256)) -> dict:
    """Render a scene from a camera.

    Args:
        scene: the room, its solids and lights.
        pose: (4, 4) camera-to-world pose (OpenCV camera axes: x right, y down, z forward).
        K: (3, 3) intrinsics; default NYU's scaled to ``size``.
        size: (H, W) of the output.

    Returns:
        dict with ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 z-depth in metres clipped to
        [0.3, 10], ``semantics`` (H, W) uint8 class ids (see ``CLASSES``), ``K`` (3, 3) float64,
        ``pose`` (4, 4) float64 camera-to-world.
    """
    h, w = _check_size(size)
    K = intrinsics((h, w)) if K is None else np.asarray(K, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    if K.shape != (3, 3) or pose.shape != (4, 4):
        raise ValueError(f"expected K (3, 3) and pose (4, 4), got {K.shape} and {pose.shape}")
    R, o = pose[:3, :3], pose[:3, 3]
    origin = tuple(float(v) for v in o)
    xs, ys = camera_rays((h, w), K)
    f32 = np.float32
    # World ray directions (H, W) per component, camera-z = 1.
    dx = (R[0, 0] * xs + (R[0, 1] * ys + R[0, 2])).astype(f32)
    dy = (R[1, 0] * xs + (R[1, 1] * ys + R[1, 2])).astype(f32)
    dz = (R[2, 0] * xs + (R[2, 1] * ys + R[2, 2])).astype(f32)

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t, ids = room_hits(scene.size, origin, (dx, dy, dz))
        ids = ids.astype(np.int16)
        R_w2c, t_w2c = R.T, -R.T @ o
        for k, prim in enumerate(scene.primitives):
            rect = _screen_rect(prim, R_w2c, t_w2c, K, h, w)
            if rect is None:
                continue
            r0, r1, c0, c1 = rect
            sub = (slice(r0, r1), slice(c0, c1))
            t_sub = t[sub]
            tn, tf = prim.interval(origin, (dx[sub], dy[sub], dz[sub]))
            hit = (tn < tf) & (tn > 0) & (tn < t_sub)
            np.copyto(t_sub, tn, where=hit)
            ids[sub][hit] = _ROOM_FACES + k
        rgb = _shade(scene, origin, (dx, dy, dz), t, ids, float(K[0, 0]))

    labels = np.empty(_ROOM_FACES + len(scene.primitives), dtype=np.uint8)
    labels[:_ROOM_FACES] = (FLOOR, CEILING, WALL, WALL, WALL, WALL)
    labels[_ROOM_FACES:] = [p.label for p in scene.primitives]
    depth = np.clip(t, MIN_DEPTH, MAX_DEPTH).astype(np.float32)
    return {"rgb": rgb, "depth": depth, "semantics": labels[ids], "K": K, "pose": pose}


def _room_surface(scene: Scene, face: int, x, y, z):
    """Normals and texture coordinates of room face ``face`` at points on it."""
    W, D, H = scene.size
    n = np.ones_like(x)
    zero = np.zeros_like(x)
    if face == 0:
        return (zero, zero, n), (x, y), scene.floor
    if face == 1:
        return (zero, zero, -n), (x, y), scene.ceiling
    if face in (2, 3):
        return (zero, n if face == 2 else -n, zero), (x, z), scene.walls[face - 2]
    return (n if face == 4 else -n, zero, zero), (y, z), scene.walls[face - 2]


def _shade(scene: Scene, origin, d, t, ids, focal: float) -> np.ndarray:
    """Lambert shading with shadows; returns (H, W, 3) uint8 sRGB."""
    h, w = t.shape
    n_pix = h * w
    flat_ids = ids.reshape(-1)
    tf = t.reshape(-1)
    ddx, ddy, ddz = d[0].reshape(-1), d[1].reshape(-1), d[2].reshape(-1)
    px = origin[0] + tf * ddx
    py = origin[1] + tf * ddy
    pz = origin[2] + tf * ddz
    ray_len = np.sqrt(ddx * ddx + ddy * ddy + ddz * ddz)  # per unit of z-depth
    nx = np.empty(n_pix, np.float32)
    ny = np.empty(n_pix, np.float32)
    nz = np.empty(n_pix, np.float32)
    alb = np.empty((n_pix, 3), np.float32)

    # Group the pixels by surface id once (a stable sort keeps the result deterministic).
    order = np.argsort(flat_ids, kind="stable")
    counts = np.bincount(flat_ids, minlength=_ROOM_FACES + len(scene.primitives))
    starts = np.concatenate([[0], np.cumsum(counts)])
    for sid in np.flatnonzero(counts):
        idx = order[starts[sid]:starts[sid + 1]]
        x, y, z = px[idx], py[idx], pz[idx]
        if sid < _ROOM_FACES:
            (sx, sy, sz), (u, v), mat = _room_surface(scene, int(sid), x, y, z)
        else:
            prim = scene.primitives[sid - _ROOM_FACES]
            (sx, sy, sz), (u, v) = prim.surface(x, y, z)
            mat = prim.material
        nx[idx], ny[idx], nz[idx] = sx, sy, sz
        # Pixel footprint on the surface: ray length / focal, stretched by the grazing angle.
        rl = ray_len[idx]
        cos = np.abs(sx * ddx[idx] + sy * ddy[idx] + sz * ddz[idx]) / rl
        footprint = tf[idx] * rl * (1.0 / focal) / np.maximum(cos, 0.25)
        alb[idx] = albedo(mat, u, v, footprint)

    # Ambient: a little brighter on upward-facing surfaces (light bounced off the ceiling region).
    amb = np.asarray(scene.ambient, np.float32)
    light = (0.85 + 0.15 * nz)[:, None] * amb
    for L in scene.lights:
        lx, ly, lz = (float(c) for c in L.position)
        vx, vy, vz = lx - px, ly - py, lz - pz
        d2 = vx * vx + vy * vy + vz * vz
        inv_d = 1.0 / np.sqrt(d2)
        ndotl = (nx * vx + ny * vy + nz * vz) * inv_d
        lit = ndotl > 0
        shadow = _shadowed(scene, (lx, ly, lz), (px, py, pz), (nx, ny, nz), (vx, vy, vz), inv_d, lit, flat_ids)
        irr = np.where(lit & ~shadow, ndotl * (float(L.intensity) / (d2 + 1.0)), 0.0).astype(np.float32)
        light += irr[:, None] * np.asarray(L.color, np.float32)
    radiance = alb * light
    # Filmic-like tone curve and sRGB gamma through a table indexed by sqrt(radiance) (fine near black).
    index = np.fmin(np.sqrt(radiance) * _LUT_SCALE, float(_LUT.size - 1)).astype(np.int32)
    return _LUT[index].reshape(h, w, 3)


def _shadowed(scene, light, p, n, v, inv_d, lit, flat_ids):
    """Which lit points a solid hides from the light at ``light``."""
    shadow = np.zeros(lit.shape, dtype=bool)
    if not scene.primitives:
        return shadow
    lx, ly, lz = light
    # Unit direction from the light to each point, and the distance.
    ux, uy, uz = -v[0] * inv_d, -v[1] * inv_d, -v[2] * inv_d
    dist = 1.0 / inv_d
    for k, prim in enumerate(scene.primitives):
        if not prim.casts_shadow:
            continue
        (cx, cy, cz), r = prim.bounding_sphere()
        wx, wy, wz = cx - lx, cy - ly, cz - lz
        dw = math.sqrt(wx * wx + wy * wy + wz * wz)
        if dw > r:
            cos_cone = math.sqrt(1.0 - (r / dw) ** 2)
            inside = (ux * (wx / dw) + uy * (wy / dw) + uz * (wz / dw)) > cos_cone
            cand = np.flatnonzero(inside & lit)
            cand = cand[dist[cand] > dw - r]
        else:
            cand = np.flatnonzero(lit)
        cand = cand[(flat_ids[cand] != _ROOM_FACES + k) & ~shadow[cand]]
        if cand.size == 0:
            continue
        ox = p[0][cand] + _SHADOW_EPS * n[0][cand]
        oy = p[1][cand] + _SHADOW_EPS * n[1][cand]
        oz = p[2][cand] + _SHADOW_EPS * n[2][cand]
        tn, tf = prim.interval((ox, oy, oz), (lx - ox, ly - oy, lz - oz))
        occluded = np.maximum(tn, 1e-4) < np.minimum(tf, 1.0)
        shadow[cand[occluded]] = True
    return shadow


def _rng(rng_or_seed) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    if isinstance(rng_or_seed, (int, np.integer)):
        return np.random.default_rng(int(rng_or_seed))
    if isinstance(rng_or_seed, Sequence):
        return np.random.default_rng([int(s) for s in rng_or_seed])
    raise ValueError("rng must be a numpy Generator, an int seed or a sequence of ints, "
                     f"got {type(rng_or_seed).__name__}")


def render_sequence(rng_or_seed, size: tuple[int, int] = (192, 256), sequence_length: int = 1, *,
                    scene: Scene | None = None, num_objects: int | None = None, **camera) -> list[dict]:
    """Render ``sequence_length`` frames of one random scene along a smooth camera path.

    Args:
        rng_or_seed: a ``numpy.random.Generator``, an int seed, or a sequence of ints such as
            ``(seed, index)`` (the generator of scene ``index`` of a data set with ``seed``).
        size: (H, W) of the frames.
        sequence_length: number of frames T >= 1.
        scene: a scene to use instead of a random one.
        num_objects: override of the number of solids (see :func:`sample_scene`).
        **camera: camera overrides ``position``, ``height``, ``yaw``, ``pitch`` (radians) of the
            first frame, or ``pose`` (4, 4) to render exactly that camera (T = 1 only).

    Returns:
        T dicts as returned by :func:`render`, plus ``scene`` (the :class:`Scene`).
    """
    size = _check_size(size)
    if int(sequence_length) != sequence_length or sequence_length < 1:
        raise ValueError(f"sequence_length must be an integer >= 1, got {sequence_length!r}")
    rng = _rng(rng_or_seed)
    if scene is None:
        scene = sample_scene(rng, num_objects=num_objects)
    pose = camera.pop("pose", None)
    if pose is not None:
        if sequence_length != 1:
            raise ValueError("pose fixes a single camera; it needs sequence_length=1")
        poses = [np.asarray(pose, dtype=np.float64)]
    else:
        poses = sample_trajectory(scene, rng, int(sequence_length), **camera)
    K = intrinsics(size)
    frames = []
    for p in poses:
        frame = render(scene, p, K, size)
        frame["scene"] = scene
        frames.append(frame)
    return frames


def render_frame(rng_or_seed, size: tuple[int, int] = (192, 256), *, scene: Scene | None = None,
                 num_objects: int | None = None, **camera) -> dict:
    """Render one frame of a random scene.

    ``render_frame((seed, i), size)`` is frame ``i`` of ``generate(..., seed=seed)`` when
    ``sequence_length`` is 1.

    Args:
        rng_or_seed: a ``numpy.random.Generator``, an int seed or a sequence of ints.
        size: (H, W) of the frame.
        scene: a scene to use instead of a random one.
        num_objects: override of the number of solids (``0``: an empty room).
        **camera: ``pose`` (4, 4) camera-to-world, or any of ``position`` ((x, y) or (x, y, z)
            metres), ``height`` (metres), ``yaw``, ``pitch`` (radians).

    Returns:
        dict with ``rgb`` (H, W, 3) uint8, ``depth`` (H, W) float32 metres, ``semantics``
        (H, W) uint8, ``K`` (3, 3), ``pose`` (4, 4) camera-to-world and ``scene``.

    Example:
        >>> frame = render_frame(0, (96, 128), pitch=0.0)
        >>> frame["rgb"].shape, frame["depth"].dtype
        ((96, 128, 3), dtype('float32'))
    """
    return render_sequence(rng_or_seed, size, 1, scene=scene, num_objects=num_objects, **camera)[0]


__all__ = ["CLASSES", "MAX_DEPTH", "MIN_DEPTH", "render", "render_frame", "render_sequence"]
