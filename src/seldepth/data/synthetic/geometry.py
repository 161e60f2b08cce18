"""Solid primitives of a synthetic room and their vectorised ray intersections.

World frame: metres, ``z`` up, the floor is ``z = 0``; the room spans ``[0, W] x [0, D] x [0, H]``.

Every primitive is a convex solid, so a ray ``o + t d`` meets it in one interval
``[t_near, t_far]`` (empty when ``t_near >= t_far`` or NaN). :meth:`interval` returns that
interval for many rays at once; the same call serves camera rays (``o`` a point, ``d`` arrays)
and shadow rays (``o`` and ``d`` arrays). Directions need not be unit vectors: ``t`` is in
units of ``d``, which lets the renderer use rays with camera-z component 1 so that ``t`` is the
z-depth directly.

All arithmetic keeps the dtype of the ray arrays (float32 in the renderer): the parameters of
a primitive are stored as Python floats, which never up-cast a NumPy array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# Semantic classes (uint8 ids in the written semantics PNG).
CLASSES = ("floor", "ceiling", "wall", "furniture", "object")
FLOOR, CEILING, WALL, FURNITURE, OBJECT = range(5)


@dataclass
class Material:
    """A procedural surface texture (see :mod:`seldepth.data.synthetic.textures`).

    Attributes:
        kind: ``plain``, ``noise``, ``wood``, ``planks``, ``tiles``, ``stripes`` or ``carpet``.
        colors: linear RGB colours in [0, 1] that the pattern mixes (at least one).
        scale: size of the pattern in metres (tile size, stripe period, plank width ...).
    """

    kind: str
    colors: tuple[tuple[float, float, float], ...]
    scale: float = 1.0


@dataclass
class Primitive:
    """Common part of the solids: semantic class, material, shadow casting and derived bounds.

    ``casts_shadow=False`` marks things flat against a wall (doors, skirting, pictures) whose
    shadows would be invisible; the renderer then skips their shadow tests.
    """

    label: int = field(default=FURNITURE, kw_only=True)
    material: Material | None = field(default=None, kw_only=True)
    casts_shadow: bool = field(default=True, kw_only=True)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - overridden
        raise NotImplementedError

    def bounding_sphere(self) -> tuple[tuple[float, float, float], float]:
        lo, hi = self.bounds()
        c = (lo + hi) / 2
        return (float(c[0]), float(c[1]), float(c[2])), float(np.linalg.norm(hi - lo) / 2)

    def footprint(self) -> tuple[float, float, float, float]:
        """Axis-aligned floor-plan rectangle ``(x0, y0, x1, y1)`` that contains the solid."""
        lo, hi = self.bounds()
        return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

    @property
    def top(self) -> float:
        return float(self.bounds()[1][2])


@dataclass
class Box(Primitive):
    """A box with half extents ``half`` around ``center``, rotated by ``yaw`` (radians) about z.

    Its local x axis is ``(cos yaw, sin yaw, 0)``.
    """

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float = 0.0

    def __post_init__(self):
        self.center = tuple(float(v) for v in self.center)
        self.half = tuple(float(v) for v in self.half)
        self.yaw = float(self.yaw)
        self._c, self._s = math.cos(self.yaw), math.sin(self.yaw)

    def bounds(self):
        c, s = abs(self._c), abs(self._s)
        hx, hy, hz = self.half
        ex, ey = c * hx + s * hy, s * hx + c * hy
        cx, cy, cz = self.center
        return np.array([cx - ex, cy - ey, cz - hz]), np.array([cx + ex, cy + ey, cz + hz])

    def to_local(self, x, y, z):
        """World points or offsets (arrays) -> box-local coordinates relative to the centre."""
        cx, cy, cz = self.center
        rx, ry = x - cx, y - cy
        return self._c * rx + self._s * ry, self._c * ry - self._s * rx, z - cz

    def interval(self, o, d):
        """Entry and exit parameters of rays ``o + t d``.

        Args:
            o: (ox, oy, oz), floats or arrays broadcastable with ``d``.
            d: (dx, dy, dz) arrays.

        Returns:
            (t_near, t_far) arrays; the ray misses where ``not t_near < t_far``.
        """
        ox, oy, oz = self.to_local(*o)
        dx, dy, dz = d
        if self.yaw != 0.0:
            dx, dy = self._c * dx + self._s * dy, self._c * dy - self._s * dx
        t_near = t_far = None
        for lo, ld, h in ((ox, dx, self.half[0]), (oy, dy, self.half[1]), (oz, dz, self.half[2])):
            inv = 1.0 / ld
            a = (-h - lo) * inv
            b = (h - lo) * inv
            near, far = np.minimum(a, b), np.maximum(a, b)
            t_near = near if t_near is None else np.maximum(t_near, near)
            t_far = far if t_far is None else np.minimum(t_far, far)
        return t_near, t_far

    def surface(self, x, y, z):
        """Normals and texture coordinates at points on the surface.

        Returns:
            (nx, ny, nz), (u, v): world unit normals and surface coordinates in metres; ``u`` runs
            along the box's local x on the faces that contain it (wood grain follows it).
        """
        lx, ly, lz = self.to_local(x, y, z)
        hx, hy, hz = self.half
        ex, ey, ez = np.abs(hx - np.abs(lx)), np.abs(hy - np.abs(ly)), np.abs(hz - np.abs(lz))
        face_x = (ex <= ey) & (ex <= ez)
        face_y = ~face_x & (ey <= ez)
        face_z = ~face_x & ~face_y
        one = np.ones_like(lx)
        zero = np.zeros_like(lx)
        nlx = np.where(face_x, np.copysign(one, lx), zero)
        nly = np.where(face_y, np.copysign(one, ly), zero)
        nlz = np.where(face_z, np.copysign(one, lz), zero)
        nx, ny = self._c * nlx - self._s * nly, self._s * nlx + self._c * nly
        u = np.where(face_x, ly, lx)
        v = np.where(face_z, ly, lz)
        return (nx, ny, nlz), (u + hx, v + hz)


@dataclass
class Cylinder(Primitive):
    """A vertical cylinder of ``radius`` around ``(cx, cy)`` from height ``z0`` to ``z1``."""

    center: tuple[float, float]
    radius: float
    z0: float
    z1: float

    def __post_init__(self):
        self.center = tuple(float(v) for v in self.center[:2])
        self.radius, self.z0, self.z1 = float(self.radius), float(self.z0), float(self.z1)

    def bounds(self):
        cx, cy = self.center
        r = self.radius
        return np.array([cx - r, cy - r, self.z0]), np.array([cx + r, cy + r, self.z1])

    def interval(self, o, d):
        """Entry and exit parameters of rays ``o + t d`` (see :meth:`Box.interval`)."""
        ox, oy, oz = o
        dx, dy, dz = d
        cx, cy = self.center
        rx, ry = ox - cx, oy - cy
        a = dx * dx + dy * dy + 1e-12  # a vertical ray: the roots run off to +-inf, or NaN (miss)
        b = rx * dx + ry * dy
        c = rx * rx + ry * ry - self.radius * self.radius
        sq = np.sqrt(b * b - a * c)  # NaN where the ray misses the infinite cylinder
        t0, t1 = (-b - sq) / a, (-b + sq) / a
        inv = 1.0 / dz
        za, zb = (self.z0 - oz) * inv, (self.z1 - oz) * inv
        return np.maximum(t0, np.minimum(za, zb)), np.minimum(t1, np.maximum(za, zb))

    def surface(self, x, y, z):
        """Normals and texture coordinates (arc length, height) at surface points."""
        cx, cy = self.center
        rx, ry = x - cx, y - cy
        rho = np.sqrt(rx * rx + ry * ry)
        side_err = np.abs(rho - self.radius)
        top_err, bottom_err = np.abs(z - self.z1), np.abs(z - self.z0)
        cap = np.minimum(top_err, bottom_err) < side_err
        inv = 1.0 / np.maximum(rho, 1e-6)
        zero = np.zeros_like(x)
        nx = np.where(cap, zero, rx * inv)
        ny = np.where(cap, zero, ry * inv)
        nz = np.where(cap, np.where(top_err < bottom_err, 1.0, -1.0).astype(x.dtype), zero)
        angle = np.arctan2(ry, rx)
        u = np.where(cap, rx, angle * self.radius)
        v = np.where(cap, ry, z - self.z0)
        return (nx, ny, nz), (u, v)


@dataclass
class Sphere(Primitive):
    """A sphere of ``radius`` around ``center``."""

    center: tuple[float, float, float]
    radius: float

    def __post_init__(self):
        self.center = tuple(float(v) for v in self.center)
        self.radius = float(self.radius)

    def bounds(self):
        c, r = np.array(self.center), self.radius
        return c - r, c + r

    def bounding_sphere(self):
        return self.center, self.radius

    def interval(self, o, d):
        """Entry and exit parameters of rays ``o + t d`` (see :meth:`Box.interval`)."""
        ox, oy, oz = o
        dx, dy, dz = d
        cx, cy, cz = self.center
        rx, ry, rz = ox - cx, oy - cy, oz - cz
        a = dx * dx + dy * dy + dz * dz
        b = rx * dx + ry * dy + rz * dz
        c = rx * rx + ry * ry + rz * rz - self.radius * self.radius
        sq = np.sqrt(b * b - a * c)
        return (-b - sq) / a, (-b + sq) / a

    def surface(self, x, y, z):
        """Normals and texture coordinates (longitude, latitude arc lengths) at surface points."""
        cx, cy, cz = self.center
        inv = 1.0 / self.radius
        nx, ny, nz = (x - cx) * inv, (y - cy) * inv, (z - cz) * inv
        u = np.arctan2(ny, nx) * self.radius
        v = np.arcsin(np.clip(nz, -1.0, 1.0)) * self.radius
        return (nx, ny, nz), (u, v)


@dataclass
class Light:
    """A point light at ``position`` with linear RGB ``color`` times ``intensity``."""

    position: tuple[float, float, float]
    color: tuple[float, float, float]
    intensity: float


@dataclass
class Scene:
    """A room: its size, the materials of its six faces, the solids inside it and its lights.

    Attributes:
        size: (W, D, H) metres; the room spans ``[0, W] x [0, D] x [0, H]``.
        floor, ceiling: materials of the floor and the ceiling.
        walls: materials of the walls ``y = 0``, ``y = D``, ``x = 0``, ``x = W``.
        primitives: the furniture and objects.
        lights: one or two point lights below the ceiling.
        ambient: linear RGB ambient light.
    """

    size: tuple[float, float, float]
    floor: Material
    ceiling: Material
    walls: tuple[Material, Material, Material, Material]
    primitives: list[Primitive] = field(default_factory=list)
    lights: list[Light] = field(default_factory=list)
    ambient: tuple[float, float, float] = (0.2, 0.2, 0.2)

    def cast(self, origin, direction) -> np.ndarray:
        """Distance parameter ``t`` of the first surface hit by each ray (the room always is hit).

        Args:
            origin: (3,) a point inside the room.
            direction: (N, 3) ray directions.

        Returns:
            (N,) ``t`` of the nearest hit along ``origin + t * direction``.
        """
        d = np.asarray(direction, dtype=np.float64).reshape(-1, 3)
        o = tuple(float(v) for v in origin)
        t, _ = room_hits(self.size, o, (d[:, 0], d[:, 1], d[:, 2]))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for prim in self.primitives:
                tn, tf = prim.interval(o, (d[:, 0], d[:, 1], d[:, 2]))
                hit = (tn < tf) & (tn > 0) & (tn < t)
                t = np.where(hit, tn, t)
        return t


def room_hits(size, o, d):
    """Where rays from a point inside the room leave it.

    Args:
        size: (W, D, H) of the room.
        o: (ox, oy, oz) floats, a point inside the room.
        d: (dx, dy, dz) arrays of directions.

    Returns:
        (t, face): the exit parameter and the face id per ray, ``0`` floor, ``1`` ceiling,
        ``2`` wall ``y = 0``, ``3`` wall ``y = D``, ``4`` wall ``x = 0``, ``5`` wall ``x = W``.
    """
    W, D, H = size
    dx, dy, dz = d
    ox, oy, oz = o
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(dx > 0, (W - ox) / dx, -ox / dx)
        ty = np.where(dy > 0, (D - oy) / dy, -oy / dy)
        tz = np.where(dz > 0, (H - oz) / dz, -oz / dz)
    tx = np.where(tx >= 0, tx, np.inf).astype(dx.dtype, copy=False)
    ty = np.where(ty >= 0, ty, np.inf).astype(dx.dtype, copy=False)
    tz = np.where(tz >= 0, tz, np.inf).astype(dx.dtype, copy=False)
    face = np.where(dz > 0, 1, 0).astype(np.int16)
    t = tz
    use_y = ty < t
    face = np.where(use_y, np.where(dy > 0, 3, 2).astype(np.int16), face)
    t = np.minimum(t, ty)
    use_x = tx < t
    face = np.where(use_x, np.where(dx > 0, 5, 4).astype(np.int16), face)
    t = np.minimum(t, tx)
    return t, face
