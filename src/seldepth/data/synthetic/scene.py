"""Random indoor scenes: a box-shaped room, furniture, small objects, lights and camera paths.

Every function takes a :class:`numpy.random.Generator` and draws from it in a fixed order, so
a scene and its cameras are a pure function of the generator's seed.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

from seldepth.data.synthetic.camera import camera_pose
from seldepth.data.synthetic.geometry import (
    FURNITURE,
    OBJECT,
    WALL,
    Box,
    Cylinder,
    Light,
    Material,
    Primitive,
    Scene,
    Sphere,
)

ROOM_WIDTH = (3.0, 8.0)
ROOM_DEPTH = (3.0, 10.0)
ROOM_HEIGHT = (2.4, 3.2)
NUM_OBJECTS = (3, 15)
CAMERA_HEIGHT = (1.0, 1.8)
CAMERA_PITCH_DEG = (-20.0, 10.0)
WALL_MARGIN = 0.5     # camera distance to the walls
OBJECT_MARGIN = 0.35  # camera distance to the floor-plan rectangles of the solids
CEILING_CLEARANCE = 0.45  # no solid reaches higher than H - this (the lights hang above them)


# ----------------------------------------------------------------------------- colours, materials

def _srgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    """HSV (sRGB) -> linear RGB."""
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (r**2.2, g**2.2, b**2.2)


def _jitter(rng, color, amount=0.12):
    h, s, v = colorsys.rgb_to_hsv(*(c ** (1 / 2.2) for c in color))
    return _srgb(h + rng.uniform(-0.02, 0.02), s * rng.uniform(1 - amount, 1 + amount), v * rng.uniform(1 - amount, 1))


def _wood_colors(rng):
    h = rng.uniform(0.05, 0.11)
    s = rng.uniform(0.35, 0.7)
    v = rng.uniform(0.35, 0.8)
    return (_srgb(h, s, v), _srgb(h - 0.01, min(1.0, s + 0.15), v * rng.uniform(0.55, 0.75)))


def _floor_material(rng) -> Material:
    kind = rng.choice(["planks", "tiles", "carpet", "noise"], p=[0.4, 0.3, 0.15, 0.15])
    if kind == "planks":
        return Material("planks", _wood_colors(rng), scale=rng.uniform(0.12, 0.25))
    if kind == "tiles":
        v = rng.uniform(0.5, 0.9)
        h, s = rng.uniform(0.0, 1.0), rng.uniform(0.0, 0.25)
        colors = [_srgb(h, s, v), _srgb(h, s * 0.5, v * 0.55)]
        if rng.random() < 0.35:
            colors.append(_srgb(rng.uniform(0, 1), rng.uniform(0.0, 0.4), rng.uniform(0.15, 0.45)))
        return Material("tiles", tuple(colors), scale=rng.uniform(0.25, 0.6))
    if kind == "carpet":
        h = rng.uniform(0, 1)
        s, v = rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.6)
        return Material("carpet", (_srgb(h, s, v), _srgb(h, s, v * 0.7)), scale=rng.uniform(0.3, 0.8))
    v = rng.uniform(0.35, 0.7)
    return Material("noise", (_srgb(0.08, 0.05, v), _srgb(0.08, 0.05, v * 0.75)), scale=rng.uniform(0.3, 1.0))


def _wall_material(rng) -> Material:
    kind = rng.choice(["plain", "stripes", "noise", "tiles"], p=[0.5, 0.2, 0.2, 0.1])
    h = rng.uniform(0, 1)
    s = rng.uniform(0.0, 0.3)
    v = rng.uniform(0.65, 0.95)
    base = _srgb(h, s, v)
    if kind == "plain":
        return Material("plain", (base,))
    if kind == "stripes":
        other = _srgb(h + rng.uniform(-0.1, 0.1), min(1.0, s + rng.uniform(0.05, 0.3)), v * rng.uniform(0.75, 0.95))
        return Material("stripes", (base, other), scale=rng.uniform(0.15, 0.5))
    if kind == "noise":
        return Material("noise", (base, _srgb(h, s, v * 0.85)), scale=rng.uniform(0.4, 1.5))
    return Material("tiles", (base, _srgb(h, s * 0.3, v * 0.7)), scale=rng.uniform(0.15, 0.35))


def _ceiling_material(rng) -> Material:
    v = rng.uniform(0.8, 0.97)
    if rng.random() < 0.7:
        return Material("plain", (_srgb(rng.uniform(0, 1), rng.uniform(0, 0.06), v),))
    return Material("noise", (_srgb(0.1, 0.03, v), _srgb(0.1, 0.03, v * 0.9)), scale=rng.uniform(0.3, 1.0))


def _furniture_material(rng, soft: bool = False) -> Material:
    if soft:
        h, s, v = rng.uniform(0, 1), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.8)
        kind = "carpet" if rng.random() < 0.5 else "noise"
        return Material(kind, (_srgb(h, s, v), _srgb(h, s, v * 0.75)), scale=rng.uniform(0.2, 0.5))
    r = rng.random()
    if r < 0.5:
        return Material("wood", _wood_colors(rng), scale=rng.uniform(0.6, 1.5))
    if r < 0.85:
        v = rng.choice([rng.uniform(0.08, 0.2), rng.uniform(0.75, 0.95), rng.uniform(0.3, 0.7)])
        return Material("plain", (_srgb(rng.uniform(0, 1), rng.uniform(0, 0.5), v),))
    h, s, v = rng.uniform(0, 1), rng.uniform(0.2, 0.6), rng.uniform(0.3, 0.8)
    return Material("noise", (_srgb(h, s, v), _srgb(h, s, v * 0.7)), scale=rng.uniform(0.1, 0.4))


def _object_material(rng) -> Material:
    h, s, v = rng.uniform(0, 1), rng.uniform(0.3, 0.9), rng.uniform(0.35, 0.95)
    r = rng.random()
    if r < 0.55:
        return Material("plain", (_srgb(h, s, v),))
    if r < 0.8:
        other = _srgb(h + rng.uniform(0.2, 0.5), s, v)
        return Material("stripes", (_srgb(h, s, v), other), scale=rng.uniform(0.03, 0.1))
    return Material("noise", (_srgb(h, s, v), _srgb(h, s, v * 0.6)), scale=rng.uniform(0.03, 0.15))


# ----------------------------------------------------------------------------- furniture

class _Support:
    """A horizontal rectangle (in a rotated frame) that small objects can stand on."""

    def __init__(self, center_xy, yaw, top, half_x, half_y):
        self.center_xy, self.yaw, self.top = center_xy, yaw, top
        self.half_x, self.half_y = half_x, half_y
        self.taken: list[tuple[float, float, float]] = []  # (x, y, radius) in the support frame

    def world(self, lx, ly):
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.center_xy[0] + c * lx - s * ly, self.center_xy[1] + s * lx + c * ly


def _placed(parts, x, y, yaw):
    """Move furniture parts built around the origin (local frame) to ``(x, y)`` turned by ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    out = []
    for p in parts:
        if isinstance(p, Box):
            lx, ly, z = p.center
            out.append(Box((x + c * lx - s * ly, y + s * lx + c * ly, z), p.half, yaw + p.yaw, label=p.label,
                           material=p.material))
        elif isinstance(p, Cylinder):
            lx, ly = p.center
            out.append(Cylinder((x + c * lx - s * ly, y + s * lx + c * ly), p.radius, p.z0, p.z1, label=p.label,
                                material=p.material))
        else:  # pragma: no cover - furniture is boxes and cylinders
            raise TypeError(type(p))
    return out


def _build_furniture(kind: str, rng, max_top: float):
    """Parts of one piece of furniture in its local frame (back towards local -y, on the floor).

    Returns:
        (parts, (half_w, half_d), supports): boxes and cylinders around the origin, the half
        extents of its floor-plan rectangle, and ``(lx, ly, top, half_x, half_y)`` tops that
        small objects can stand on.
    """
    mat = _furniture_material(rng, soft=kind in ("bed", "sofa"))
    F = FURNITURE
    if kind in ("cabinet", "wardrobe"):
        lo, hi = ((0.45, 1.1) if kind == "cabinet" else (1.5, 2.2))
        h = min(rng.uniform(lo, hi), max_top)
        w = rng.uniform(0.5, 1.6) if kind == "cabinet" else rng.uniform(0.6, 1.8)
        d = rng.uniform(0.35, 0.6)
        parts = [Box((0, 0, h / 2), (w / 2, d / 2, h / 2), label=F, material=mat)]
        if kind == "wardrobe" and rng.random() < 0.6:  # doors: two slightly proud panels
            door = _furniture_material(rng)
            for sx in (-1, 1):
                parts.append(Box((sx * w / 4, d / 2, h / 2 + 0.03), (w / 4 - 0.015, 0.012, h / 2 - 0.07), label=F,
                                 material=door))
        supports = [(0.0, 0.0, h, w / 2, d / 2)] if kind == "cabinet" else []
        return parts, (w / 2, d / 2 + 0.03), supports
    if kind == "bed":
        w, d, h = rng.uniform(0.9, 1.8), rng.uniform(1.9, 2.1), rng.uniform(0.4, 0.6)
        head = rng.uniform(0.8, 1.1)
        frame = _furniture_material(rng)
        parts = [Box((0, 0.04, h / 2), (w / 2, d / 2 - 0.04, h / 2), label=F, material=mat),
                 Box((0, -d / 2 + 0.04, head / 2), (w / 2 + 0.03, 0.04, head / 2), label=F, material=frame)]
        return parts, (w / 2 + 0.03, d / 2), [(0.0, 0.2, h, w / 2 - 0.1, d / 2 - 0.4)]
    if kind == "sofa":
        w, d = rng.uniform(1.4, 2.4), rng.uniform(0.8, 1.0)
        seat, back, arm = rng.uniform(0.38, 0.46), rng.uniform(0.75, 0.95), rng.uniform(0.15, 0.22)
        parts = [Box((0, 0.1, seat / 2), (w / 2 - arm, d / 2 - 0.1, seat / 2), label=F, material=mat),
                 Box((0, -d / 2 + 0.1, back / 2), (w / 2, 0.1, back / 2), label=F, material=mat)]
        for sx in (-1, 1):
            parts.append(Box((sx * (w / 2 - arm / 2), 0.1, 0.3), (arm / 2, d / 2 - 0.1, 0.3), label=F, material=mat))
        return parts, (w / 2, d / 2), []
    if kind in ("table", "desk"):
        w, d = rng.uniform(0.8, 1.8), rng.uniform(0.5, 1.0)
        h, th = rng.uniform(0.68, 0.78), rng.uniform(0.03, 0.06)
        leg = rng.uniform(0.035, 0.06)
        legs = _furniture_material(rng) if rng.random() < 0.4 else mat
        parts = [Box((0, 0, h - th / 2), (w / 2, d / 2, th / 2), label=F, material=mat)]
        round_legs = rng.random() < 0.4
        for sx in (-1, 1):
            for sy in (-1, 1):
                lx, ly = sx * (w / 2 - leg - 0.03), sy * (d / 2 - leg - 0.03)
                if round_legs:
                    parts.append(Cylinder((lx, ly), leg, 0.0, h - th, label=F, material=legs))
                else:
                    parts.append(Box((lx, ly, (h - th) / 2), (leg, leg, (h - th) / 2), label=F, material=legs))
        return parts, (w / 2, d / 2), [(0.0, 0.0, h, w / 2, d / 2)]
    if kind == "round_table":
        r, h, th = rng.uniform(0.35, 0.65), rng.uniform(0.65, 0.76), rng.uniform(0.03, 0.05)
        parts = [Cylinder((0, 0), r, h - th, h, label=F, material=mat),
                 Cylinder((0, 0), rng.uniform(0.04, 0.07), 0.02, h - th, label=F, material=mat),
                 Cylinder((0, 0), min(r * 0.7, 0.3), 0.0, 0.025, label=F, material=mat)]
        return parts, (r, r), [(0.0, 0.0, h, r * 0.7, r * 0.7)]
    if kind == "stool":
        r, h = rng.uniform(0.16, 0.3), rng.uniform(0.4, 0.55)
        return [Cylinder((0, 0), r, 0.0, h, label=F, material=mat)], (r, r), [(0.0, 0.0, h, r * 0.7, r * 0.7)]
    raise ValueError(f"unknown furniture kind {kind!r}")  # pragma: no cover


_AGAINST_WALL = {"cabinet": 0.9, "wardrobe": 1.0, "bed": 1.0, "sofa": 0.7, "desk": 1.0, "table": 0.2,
                 "round_table": 0.0, "stool": 0.1}
_FURNITURE_KINDS = ["cabinet", "wardrobe", "bed", "sofa", "desk", "table", "round_table", "stool"]
_FURNITURE_P = [0.2, 0.1, 0.08, 0.12, 0.12, 0.18, 0.1, 0.1]


def _overlaps(rect, rects, margin):
    x0, y0, x1, y1 = rect
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin for b in rects)


def _union_footprint(parts):
    lo = np.min([p.bounds()[0] for p in parts], axis=0)
    hi = np.max([p.bounds()[1] for p in parts], axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def _place_furniture(rng, room, footprints, max_top):
    W, D, _ = room
    kind = str(rng.choice(_FURNITURE_KINDS, p=_FURNITURE_P))
    parts, (hw, hd), tops = _build_furniture(kind, rng, max_top)
    for _ in range(12):
        if rng.random() < _AGAINST_WALL[kind]:
            wall = int(rng.integers(4))
            gap = rng.uniform(0.0, 0.05)
            length = W if wall < 2 else D
            if length < 2 * hw + 0.1:
                continue
            s = rng.uniform(hw + 0.02, length - hw - 0.02)
            off = hd + gap
            x, y, yaw = [(s, off, 0.0), (s, D - off, math.pi), (off, s, -math.pi / 2), (W - off, s, math.pi / 2)][wall]
            yaw += rng.uniform(-0.03, 0.03)
        else:
            yaw = rng.uniform(-math.pi, math.pi) if rng.random() < 0.5 else rng.integers(4) * math.pi / 2
            r = math.hypot(hw, hd)
            if W < 2 * r + 0.2 or D < 2 * r + 0.2:
                continue
            x, y = rng.uniform(r + 0.1, W - r - 0.1), rng.uniform(r + 0.1, D - r - 0.1)
        placed = _placed(parts, x, y, yaw)
        rect = _union_footprint(placed)
        if rect[0] < 0.0 or rect[1] < 0.0 or rect[2] > W or rect[3] > D or _overlaps(rect, footprints, 0.1):
            continue
        supports = []
        for lx, ly, top, sx, sy in tops:
            c, s_ = math.cos(yaw), math.sin(yaw)
            supports.append(_Support((x + c * lx - s_ * ly, y + s_ * lx + c * ly), yaw, top, sx, sy))
        return placed, rect, supports
    return None


def _small_object(rng, on_floor: bool, max_height: float):
    """A small object around the origin standing on z = 0: (primitive, footprint radius, top rect or None)."""
    mat = _object_material(rng)
    r = rng.random()
    if r < 0.35:
        rad = rng.uniform(0.1, 0.3) if on_floor else rng.uniform(0.04, 0.14)
        rad = min(rad, max_height / 2)
        return Sphere((0, 0, rad), rad, label=OBJECT, material=mat), rad, None
    if r < 0.65:
        if on_floor:
            hx, hy, hz = rng.uniform(0.12, 0.3), rng.uniform(0.12, 0.3), rng.uniform(0.1, 0.3)
        else:
            hx, hy, hz = rng.uniform(0.05, 0.18), rng.uniform(0.04, 0.14), rng.uniform(0.015, 0.14)
        hz = min(hz, max_height / 2)
        yaw = rng.uniform(-math.pi, math.pi)
        box = Box((0, 0, hz), (hx, hy, hz), yaw, label=OBJECT, material=mat)
        return box, math.hypot(hx, hy), (hx, hy, yaw)
    rad = rng.uniform(0.1, 0.25) if on_floor else rng.uniform(0.03, 0.1)
    h = min(rng.uniform(0.2, 0.6) if on_floor else rng.uniform(0.06, 0.35), max_height)
    return Cylinder((0, 0), rad, 0.0, h, label=OBJECT, material=mat), rad, None


def _moved(prim: Primitive, x: float, y: float, z: float) -> Primitive:
    if isinstance(prim, Sphere):
        return Sphere((x, y, z + prim.center[2]), prim.radius, label=prim.label, material=prim.material)
    if isinstance(prim, Box):
        return Box((x, y, z + prim.center[2]), prim.half, prim.yaw, label=prim.label, material=prim.material)
    return Cylinder((x, y), prim.radius, z + prim.z0, z + prim.z1, label=prim.label, material=prim.material)


def _place_object(rng, room, footprints, supports, max_top):
    W, D, _ = room
    on_support = supports and rng.random() < 0.7
    if on_support:
        sup = supports[int(rng.integers(len(supports)))]
        prim, rad, top_rect = _small_object(rng, False, max_top - sup.top)
        if sup.half_x < rad or sup.half_y < rad:
            return None
        for _ in range(8):
            lx = rng.uniform(-sup.half_x + rad, sup.half_x - rad)
            ly = rng.uniform(-sup.half_y + rad, sup.half_y - rad)
            if any(math.hypot(lx - tx, ly - ty) < rad + tr + 0.02 for tx, ty, tr in sup.taken):
                continue
            sup.taken.append((lx, ly, rad))
            x, y = sup.world(lx, ly)
            placed = _moved(prim, x, y, sup.top)
            if top_rect is not None and isinstance(placed, Box) and min(top_rect[:2]) > 0.06 and rng.random() < 0.6:
                # Stack on this box: a smaller support aligned with it.
                supports.append(_Support((x, y), placed.yaw, placed.top, top_rect[0] * 0.8, top_rect[1] * 0.8))
            return placed, None
        return None
    prim, rad, _ = _small_object(rng, True, max_top)
    for _ in range(10):
        x, y = rng.uniform(rad + 0.05, W - rad - 0.05), rng.uniform(rad + 0.05, D - rad - 0.05)
        placed = _moved(prim, x, y, 0.0)
        rect = placed.footprint()
        if _overlaps(rect, footprints, 0.05):
            continue
        return placed, rect
    return None


# ----------------------------------------------------------------------------- wall decorations

def _wall_box(room, wall: int, s: float, z: float, half_along: float, half_up: float, proud: float, **kw) -> Box:
    """A thin box against ``wall`` (0: y=0, 1: y=D, 2: x=0, 3: x=W) centred ``s`` along it at height ``z``."""
    W, D, _ = room
    t = proud / 2
    if wall == 0:
        return Box((s, t, z), (half_along, t, half_up), **kw)
    if wall == 1:
        return Box((s, D - t, z), (half_along, t, half_up), **kw)
    if wall == 2:
        return Box((t, s, z), (t, half_along, half_up), **kw)
    return Box((W - t, s, z), (t, half_along, half_up), **kw)


def _decorate(rng, scene: Scene, footprints) -> None:
    """Add a door, skirting boards and framed pictures; they cast no shadows (flat on the walls)."""
    W, D, H = scene.size
    taken: list[tuple[int, float, float, float, float]] = []  # (wall, s0, s1, z0, z1)

    def free(wall, s0, s1, z0, z1):
        return all(not (w == wall and s0 < b1 and b0 < s1 and z0 < c1 and c0 < z1) for w, b0, b1, c0, c1 in taken)

    if rng.random() < 0.7:
        wall = int(rng.integers(4))
        length = W if wall < 2 else D
        dw, dh = rng.uniform(0.4, 0.48), rng.uniform(0.98, 1.06)
        if length > 2 * dw + 0.4:
            s = rng.uniform(dw + 0.15, length - dw - 0.15)
            c0, c1 = _wood_colors(rng) if rng.random() < 0.5 else (_srgb(rng.uniform(0, 1), rng.uniform(0, 0.3),
                                                                          rng.uniform(0.3, 0.95)),) * 2
            mat = Material("noise", (c0, _jitter(rng, c1)), scale=rng.uniform(0.2, 0.6))  # painted or stained door
            scene.primitives.append(_wall_box(scene.size, wall, s, dh, dw, dh, 0.04, label=WALL, material=mat,
                                              casts_shadow=False))
            taken.append((wall, s - dw, s + dw, 0.0, 2 * dh))
            # Keep the space in front of the door clear of furniture.
            x0, y0, x1, y1 = [(s - dw, 0.0, s + dw, 0.9), (s - dw, D - 0.9, s + dw, D),
                              (0.0, s - dw, 0.9, s + dw), (W - 0.9, s - dw, W, s + dw)][wall]
            footprints.append((x0, y0, x1, y1))
    if rng.random() < 0.6:
        hs = rng.uniform(0.03, 0.05)
        mat = Material("plain", (_srgb(0.1, rng.uniform(0, 0.1), rng.uniform(0.7, 0.95)),)) if rng.random() < 0.6 \
            else Material("wood", _wood_colors(rng), scale=1.0)
        for wall in range(4):
            length = W if wall < 2 else D
            scene.primitives.append(_wall_box(scene.size, wall, length / 2, hs, length / 2, hs, 0.015, label=WALL,
                                              material=mat, casts_shadow=False))
    for _ in range(int(rng.integers(0, 4))):
        wall = int(rng.integers(4))
        length = W if wall < 2 else D
        pw, ph = rng.uniform(0.15, 0.6), rng.uniform(0.15, 0.45)
        z = rng.uniform(1.2, min(1.9, H - 0.5 - ph))
        if length < 2 * pw + 0.4:
            continue
        s = rng.uniform(pw + 0.2, length - pw - 0.2)
        if not free(wall, s - pw - 0.1, s + pw + 0.1, z - ph, z + ph):
            continue
        taken.append((wall, s - pw, s + pw, z - ph, z + ph))
        frame = Material("plain", (_srgb(rng.uniform(0, 1), rng.uniform(0, 0.3), rng.uniform(0.05, 0.9)),))
        h_, s_, v_ = rng.uniform(0, 1), rng.uniform(0.3, 0.8), rng.uniform(0.3, 0.9)
        art = Material(str(rng.choice(["noise", "stripes", "carpet"])),
                       (_srgb(h_, s_, v_), _srgb(h_ + rng.uniform(0.1, 0.5), s_, v_ * rng.uniform(0.4, 1.0))),
                       scale=rng.uniform(0.05, 0.3))
        border = rng.uniform(0.02, 0.05)
        scene.primitives.append(_wall_box(scene.size, wall, s, z, pw, ph, 0.025, label=OBJECT, material=frame,
                                          casts_shadow=False))
        scene.primitives.append(_wall_box(scene.size, wall, s, z, pw - border, ph - border, 0.03, label=OBJECT,
                                          material=art, casts_shadow=False))


# ----------------------------------------------------------------------------- scenes

def sample_scene(rng: np.random.Generator, *, num_objects: int | None = None,
                 room_size: tuple[float, float, float] | None = None, num_lights: int | None = None,
                 decorations: bool = True) -> Scene:
    """Draw a random room with furniture, small objects and lights.

    Args:
        rng: the generator all random choices come from.
        num_objects: pieces of furniture plus small objects to try to place (default: 3 to 15);
            ``0`` gives an empty room. Pieces that find no free place are left out.
        room_size: (W, D, H) metres (default: W 3-8, D 3-10, H 2.4-3.2).
        num_lights: 1 or 2 point lights (default: either).
        decorations: add a door, skirting boards and pictures on the walls (they do not count
            in ``num_objects``; the door and skirting are class ``wall``, pictures ``object``).

    Returns:
        The :class:`~seldepth.data.synthetic.geometry.Scene`.
    """
    if room_size is None:
        room_size = (rng.uniform(*ROOM_WIDTH), rng.uniform(*ROOM_DEPTH), rng.uniform(*ROOM_HEIGHT))
    W, D, H = (float(v) for v in room_size)
    if min(W, D) < 2 * WALL_MARGIN + 0.1 or H < CAMERA_HEIGHT[0] + 0.5:
        raise ValueError(f"room_size must leave space for the camera, got {room_size}")
    n_total = int(rng.integers(NUM_OBJECTS[0], NUM_OBJECTS[1] + 1)) if num_objects is None else int(num_objects)
    if n_total < 0:
        raise ValueError(f"num_objects must be >= 0, got {num_objects}")
    walls_base = _wall_material(rng)
    walls = [walls_base] * 4
    if rng.random() < 0.3:
        walls[int(rng.integers(4))] = _wall_material(rng)
    scene = Scene((W, D, H), _floor_material(rng), _ceiling_material(rng), tuple(walls))
    footprints: list[tuple[float, float, float, float]] = []
    if decorations:
        _decorate(rng, scene, footprints)

    max_top = H - CEILING_CLEARANCE
    n_furniture = min(n_total, max(1, int(round(n_total * rng.uniform(0.45, 0.7))))) if n_total else 0
    supports: list[_Support] = []
    budget = 0.45 * W * D  # floor area that furniture may cover, leaving room for the camera
    used = 0.0
    for _ in range(n_furniture):
        got = _place_furniture(rng, (W, D, H), footprints, max_top)
        if got is None:
            continue
        parts, rect, sups = got
        area = (rect[2] - rect[0]) * (rect[3] - rect[1])
        if used + area > budget:
            continue
        used += area
        scene.primitives.extend(parts)
        footprints.append(rect)
        supports.extend(sups)
    for _ in range(n_total - n_furniture):
        got = _place_object(rng, (W, D, H), footprints, supports, max_top)
        if got is None:
            continue
        prim, rect = got
        scene.primitives.append(prim)
        if rect is not None:
            footprints.append(rect)

    n_lights = int(rng.integers(1, 3)) if num_lights is None else int(num_lights)
    if n_lights not in (1, 2):
        raise ValueError(f"num_lights must be 1 or 2, got {num_lights}")
    area_gain = math.sqrt(W * D / 20.0)
    for _ in range(n_lights):
        pos = (rng.uniform(0.2, 0.8) * W, rng.uniform(0.2, 0.8) * D, H - rng.uniform(0.15, 0.35))
        color = (1.0, rng.uniform(0.88, 1.0), rng.uniform(0.7, 0.95))
        intensity = rng.uniform(4.0, 7.0) * area_gain / (1.0 if n_lights == 1 else 1.5)
        scene.lights.append(Light(pos, color, intensity))
    a = rng.uniform(0.1, 0.22)
    scene.ambient = (a, a * rng.uniform(0.95, 1.0), a * rng.uniform(0.9, 1.0))
    return scene


# ----------------------------------------------------------------------------- cameras

def _position_ok(scene: Scene, x: float, y: float, wall_margin: float, object_margin: float) -> bool:
    W, D, _ = scene.size
    if not (wall_margin <= x <= W - wall_margin and wall_margin <= y <= D - wall_margin):
        return False
    for p in scene.primitives:
        x0, y0, x1, y1 = p.footprint()
        if x0 - object_margin < x < x1 + object_margin and y0 - object_margin < y < y1 + object_margin:
            return False
    return True


def _free_distance(scene: Scene, position, yaw: float) -> float:
    d = np.array([[math.cos(yaw), math.sin(yaw), 0.0]])
    return float(scene.cast(position, d)[0])


def sample_camera(scene: Scene, rng: np.random.Generator, *, position=None, height: float | None = None,
                  yaw: float | None = None, pitch: float | None = None) -> np.ndarray:
    """Draw a camera pose inside the room, away from the walls and the furniture.

    Args:
        scene: the room.
        rng: the generator.
        position: (x, y) or (x, y, z) metres to use instead of a random place.
        height: camera height in metres (default: 1.0 to 1.8).
        yaw, pitch: radians (default: a yaw that faces at least ~1.2 m of free space, pitch -20 to +10 degrees).

    Returns:
        (4, 4) camera-to-world pose.
    """
    W, D, H = scene.size
    h = rng.uniform(*CAMERA_HEIGHT) if height is None else float(height)
    if position is None:
        best, best_score = None, -1.0
        for _ in range(200):
            x, y = rng.uniform(WALL_MARGIN, W - WALL_MARGIN), rng.uniform(WALL_MARGIN, D - WALL_MARGIN)
            if _position_ok(scene, x, y, WALL_MARGIN, OBJECT_MARGIN):
                best = (x, y)
                break
            score = min(x, y, W - x, D - y)
            if score > best_score:
                best, best_score = (x, y), score
        x, y = best
    else:
        x, y = float(position[0]), float(position[1])
        if len(position) > 2:
            h = float(position[2])
    if yaw is None:
        # Look into the room: among a few random headings keep one with a long free view.
        cands = rng.uniform(-math.pi, math.pi, size=12)
        free = scene.cast((x, y, h), np.stack([np.cos(cands), np.sin(cands), np.zeros_like(cands)], axis=1))
        # Prefer, among the open headings, those that see more furniture and objects.
        centers = np.array([p.bounding_sphere()[0][:2] for p in scene.primitives if p.casts_shadow]).reshape(-1, 2)
        bearing = np.arctan2(centers[:, 1] - y, centers[:, 0] - x)
        off = np.abs((bearing[None, :] - cands[:, None] + math.pi) % (2 * math.pi) - math.pi)
        seen = (off < math.radians(28.0)).sum(axis=1)
        weight = np.where(free >= 0.5 * free.max(), (1.0 + seen) ** 2, 0.0)
        yaw = float(cands[rng.choice(cands.size, p=weight / weight.sum())])
    if pitch is None:
        pitch = math.radians(rng.uniform(*CAMERA_PITCH_DEG))
    return camera_pose((x, y, h), float(yaw), float(pitch))


def _pose_angles(pose: np.ndarray) -> tuple[float, float]:
    f = pose[:3, 2]
    return math.atan2(f[1], f[0]), math.asin(max(-1.0, min(1.0, f[2])))


def sample_trajectory(scene: Scene, rng: np.random.Generator, length: int, **camera) -> list[np.ndarray]:
    """Camera poses of a smooth walk: slow forward motion with a slowly turning yaw.

    The first pose is :func:`sample_camera`'s (with the same draws, so ``length=1`` gives the
    single-frame camera). The path keeps the camera away from walls and furniture; when no
    such walk is found the camera turns on the spot.

    Args:
        scene: the room.
        rng: the generator.
        length: number of poses T >= 1.
        **camera: overrides for :func:`sample_camera` (position, height, yaw, pitch).

    Returns:
        T (4, 4) camera-to-world poses.
    """
    first = sample_camera(scene, rng, **camera)
    if length == 1:
        return [first]
    yaw0, pitch0 = _pose_angles(first)
    start = first[:3, 3].copy()
    W, D, _ = scene.size
    for attempt in range(16):
        speed = rng.uniform(0.03, 0.09) * (1.0 if attempt < 12 else 0.3)
        yaw_rate = math.radians(rng.uniform(-1.5, 1.5))
        pitch_rate = math.radians(rng.uniform(-0.4, 0.4))
        bob = rng.uniform(0.0, 0.01)
        poses, pos, ok = [], start.copy(), True
        for t in range(length):
            yaw = yaw0 + yaw_rate * t
            lo, hi = (math.radians(a) for a in CAMERA_PITCH_DEG)
            pitch = max(lo, min(hi, pitch0 + pitch_rate * t))
            if t > 0:
                heading = yaw0 + yaw_rate * (t - 0.5)
                pos = pos + speed * np.array([math.cos(heading), math.sin(heading), 0.0])
            p = pos + np.array([0.0, 0.0, bob * math.sin(0.7 * t)])
            if t > 0 and not (_position_ok(scene, p[0], p[1], 0.4, 0.25) and _free_distance(scene, p, yaw) > 0.6):
                ok = False
                break
            poses.append(camera_pose(p, yaw, pitch))
        if ok:
            return poses
    # Fallback: turn on the spot.
    yaw_rate = math.radians(rng.uniform(1.0, 2.0)) * (1 if rng.random() < 0.5 else -1)
    return [camera_pose(start, yaw0 + yaw_rate * t, pitch0) for t in range(length)]
