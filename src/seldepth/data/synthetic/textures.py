"""Procedural textures evaluated at surface coordinates, vectorised over hit points.

Each texture maps surface coordinates ``(u, v)`` in metres (arrays of any one shape) to a linear
RGB albedo of shape ``u.shape + (3,)``. The patterns depend only on the coordinates and on a
fixed lattice of random values, so the same point always gets the same colour: a texture
sticks to its surface when the camera moves.
"""

from __future__ import annotations

import numpy as np

from seldepth.data.synthetic.geometry import Material

_TABLE_SIZE = 256
# A fixed lattice for value noise, the same in every process and run.
_LATTICE = np.random.default_rng(20240611).random((_TABLE_SIZE, _TABLE_SIZE), dtype=np.float32)
_MASK = _TABLE_SIZE - 1
DEFAULT_MATERIAL = Material("plain", ((0.6, 0.6, 0.6),))


def value_noise(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] with one lattice cell per unit of ``u`` and ``v``."""
    fu, fv = np.floor(u), np.floor(v)
    su, sv = u - fu, v - fv
    su = su * su * (3.0 - 2.0 * su)
    sv = sv * sv * (3.0 - 2.0 * sv)
    i0 = fu.astype(np.int64) & _MASK
    j0 = fv.astype(np.int64) & _MASK
    i1, j1 = (i0 + 1) & _MASK, (j0 + 1) & _MASK
    a, b = _LATTICE[i0, j0], _LATTICE[i1, j0]
    c, d = _LATTICE[i0, j1], _LATTICE[i1, j1]
    top = a + (b - a) * su
    bottom = c + (d - c) * su
    return top + (bottom - top) * sv


def fbm(u: np.ndarray, v: np.ndarray, octaves: int = 3) -> np.ndarray:
    """Fractal sum of ``octaves`` of value noise, normalised to [0, 1]."""
    total = value_noise(u, v)
    amp, norm = 1.0, 1.0
    for k in range(1, octaves):
        amp *= 0.5
        scale = float(2**k)
        # Shift each octave so that lattice points do not line up.
        total = total + amp * value_noise(u * scale + 17.3 * k, v * scale - 31.7 * k)
        norm += amp
    return total * (1.0 / norm)


def cell_hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """A value in [0, 1) per integer cell ``(i, j)``."""
    return _LATTICE[i.astype(np.int64) & _MASK, (j.astype(np.int64) * 7 + 3) & _MASK]


def _mix(c0, c1, w):
    c0 = np.asarray(c0, dtype=np.float32)
    c1 = np.asarray(c1, dtype=np.float32)
    return c0 + (c1 - c0) * w[..., None]


def _color(material: Material, k: int) -> tuple[float, float, float]:
    return material.colors[min(k, len(material.colors) - 1)]


def line_coverage(frac: np.ndarray, cell: float, width: float, pixel: np.ndarray | float) -> np.ndarray:
    """Fraction of a pixel covered by lines on the boundaries of a periodic cell (a box filter).

    Args:
        frac: position within the cell in [0, 1), (N,).
        cell: cell size in metres.
        width: line width in metres (centred on the cell boundary).
        pixel: pixel footprint on the surface in metres, (N,) or a float.

    Returns:
        (N,) coverage in [0, 1]: 1 or 0 for pixels much smaller than the line, fading for far ones.
    """
    x = np.minimum(frac, 1.0 - frac) * cell
    hp = 0.5 * pixel
    half = 0.5 * width
    return np.clip(np.minimum(x + hp, half) - np.maximum(x - hp, -half), 0.0, None) / pixel


def albedo(material: Material, u: np.ndarray, v: np.ndarray, footprint: np.ndarray | None = None) -> np.ndarray:
    """Linear RGB albedo of ``material`` at surface coordinates.

    Args:
        material: the texture and its colours; ``None`` is plain light grey.
        u, v: surface coordinates in metres, same shape (N,).
        footprint: (N,) size of the pixel on the surface in metres; thin lines (grout, seams,
            stripe edges) are box-filtered over it so that they do not break up far away.

    Returns:
        (N, 3) float32 albedo in [0, 1].
    """
    if material is None:
        material = DEFAULT_MATERIAL
    kind, s = material.kind, float(material.scale)
    u = u.astype(np.float32, copy=False)
    v = v.astype(np.float32, copy=False)
    fp = np.float32(1e-4) if footprint is None else np.maximum(footprint.astype(np.float32, copy=False), 1e-4)
    c0, c1 = _color(material, 0), _color(material, 1)
    if kind == "plain":
        shade = 0.95 + 0.1 * value_noise(u * 3.0, v * 3.0)
        out = np.asarray(c0, np.float32) * shade[..., None]
    elif kind == "noise":
        out = _mix(c0, c1, fbm(u * (1.0 / s), v * (1.0 / s), 3))
    elif kind == "carpet":
        w = 0.55 * fbm(u * (1.0 / s), v * (1.0 / s), 2) + 0.45 * value_noise(u * 60.0, v * 60.0)
        out = _mix(c0, c1, w)
    elif kind == "wood":
        out = _mix(c0, c1, _grain(u, v, s))
    elif kind == "planks":
        out = _planks(material, u, v, s, fp)
    elif kind == "tiles":
        out = _tiles(material, u, v, s, fp)
    elif kind == "stripes":
        phase = u * (1.0 / s)
        frac = phase - np.floor(phase)
        band = line_coverage(frac, s, 0.56 * s, np.maximum(fp, 0.02 * s))  # stripes of colour 1 on colour 0
        out = _mix(c0, c1, band)
        out *= (0.96 + 0.08 * value_noise(u * 4.0, v * 4.0))[..., None]
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected plain, noise, carpet, wood, planks, tiles "
                         "or stripes")
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def _grain(u, v, s):
    """Wood grain running along ``u``: weight in [0, 1] of the darker colour."""
    warp = value_noise(u * (0.8 / s), v * (5.0 / s))
    rings = v * (14.0 / s) + 4.0 * warp
    g = 0.5 + 0.5 * np.sin(rings)
    fibre = value_noise(u * 3.0, v * 90.0)
    return np.clip(0.65 * g * g + 0.35 * fibre, 0.0, 1.0)


def _planks(material, u, v, width, fp):
    """Floor boards ``width`` wide along ``u``, 1.2 m long, staggered, each with its own tint."""
    length = 1.2
    row = np.floor(v * (1.0 / width))
    shift = cell_hash(row, row * 3.0 + 1.0) * length
    us = u + shift
    col = np.floor(us * (1.0 / length))
    tint = 0.8 + 0.35 * cell_hash(row * 5.0 + 11.0, col)
    w = _grain(us + col * 3.7, v + row * 0.37, 1.0)
    out = _mix(_color(material, 0), _color(material, 1), w) * tint[..., None]
    fv = v * (1.0 / width) - row
    fu = us * (1.0 / length) - col
    seam = 1.0 - (1.0 - line_coverage(fv, width, 0.005, fp)) * (1.0 - line_coverage(fu, length, 0.004, fp))
    out *= (1.0 - 0.55 * seam)[..., None]
    return out


def _tiles(material, u, v, size, fp):
    """Square tiles of ``size`` metres with grout lines; a checkerboard when three colours are given."""
    iu, iv = np.floor(u * (1.0 / size)), np.floor(v * (1.0 / size))
    fu, fv = u * (1.0 / size) - iu, v * (1.0 / size) - iv
    grout = 1.0 - (1.0 - line_coverage(fu, size, 0.012, fp)) * (1.0 - line_coverage(fv, size, 0.012, fp))
    tint = 0.9 + 0.15 * cell_hash(iu, iv) + 0.05 * value_noise(u * 8.0, v * 8.0)
    base = np.empty(u.shape + (3,), np.float32)
    base[:] = np.asarray(_color(material, 0), np.float32)
    if len(material.colors) >= 3:
        checker = ((iu + iv) % 2) == 1
        base[checker] = np.asarray(material.colors[2], np.float32)
    out = base * tint[..., None]
    return out + (np.asarray(_color(material, 1), np.float32) - out) * grout[..., None]
