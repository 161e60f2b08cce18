"""Per-image outputs of ``seldepth predict``: depth as .npy (metres) and 16-bit PNG, a colour map, a PLY.

The 16-bit PNG holds ``round(metres * png_scale)``: millimetres (1000 per metre, NYU's convention) for
indoor models, 256 per metre (KITTI's convention) for KITTI models; :func:`png_scale_of` reads a model
file's ``provenance.png_scale``. Depth beyond the PNG's range (65535 / png_scale metres) is clipped
with a :class:`DepthClippedWarning` naming the file and the number of pixels.

Every file is written to a temporary name beside its target and renamed into place, so a run
killed at any moment leaves whole files only.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from seldepth.atomic import atomic_path
from seldepth.defaults import DEFAULT_CMAP, DEFAULT_OUTPUTS, DEFAULT_PNG_COMPRESSION, IMAGE_OUTPUTS
from seldepth.prediction.colormap import colorize_depth
from seldepth.prediction.pointcloud import write_depth_ply

PNG_SCALE = 1000.0  # default 16-bit PNG scale: millimetres (NYU convention); 0 = invalid
PNG_MAX = 65535


class DepthClippedWarning(UserWarning):
    """Depth beyond what a 16-bit PNG holds at its scale was clipped to 65535 (the .npy keeps it exact)."""


def png_scale_of(model) -> float:
    """Values per metre of the 16-bit depth PNGs for ``model`` (or its metadata dict).

    The model file's ``provenance.png_scale`` (imported official models: NYU 1000, KITTI 256), else 256
    for a model whose ``provenance.dataset`` is ``kitti``, else 1000 (millimetres).
    """
    meta = model if isinstance(model, dict) else (getattr(model, "metadata", None) or {})
    provenance = meta.get("provenance") or {}
    scale = provenance.get("png_scale")
    if scale is not None:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"model metadata provenance.png_scale must be a positive number, got {provenance['png_scale']!r}")
        return scale
    return 256.0 if provenance.get("dataset") == "kitti" else PNG_SCALE


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` atomically (the name is kept as given)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)
    return Path(path)


def save_png(path: str | os.PathLike, image: Image.Image | np.ndarray, compression: int = DEFAULT_PNG_COMPRESSION) -> Path:
    """Save a PIL image or a uint8 / uint16 array as PNG (zlib level ``compression``, 0..9), atomically."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        image.save(f, format="PNG", compress_level=compression)
    return Path(path)


def depth_to_png16(depth: np.ndarray, png_scale: float = PNG_SCALE, name: str | None = None) -> np.ndarray:
    """(H, W) metres -> (H, W) uint16: round(depth * png_scale); 0 where not finite or <= 0.

    Values above 65535 (depth beyond 65535 / png_scale metres: 65.535 m in millimetres) are clipped to
    65535 with a :class:`DepthClippedWarning` giving their count and ``name`` (the file written).
    """
    png_scale = float(png_scale)
    if not (math.isfinite(png_scale) and png_scale > 0):
        raise ValueError(f"png_scale must be a positive number of PNG values per metre, got {png_scale!r}")
    d = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(d) & (d > 0)
    values = np.rint(np.where(valid, d, 0.0) * png_scale)
    clipped = int(np.count_nonzero(values > PNG_MAX))
    if clipped:
        warnings.warn(f"{name or 'depth PNG'}: {clipped} of {d.size} pixels are deeper than {PNG_MAX / png_scale:g} m, "
                      f"the most a 16-bit PNG holds at {png_scale:g} per metre, and were clipped to {PNG_MAX} "
                      f"(the .npy keeps the exact depth; a smaller png_scale, e.g. 256 as KITTI, holds more)",
                      DepthClippedWarning, stacklevel=2)
    return np.clip(values, 0, PNG_MAX).astype(np.uint16)


def parse_range(value) -> tuple[float, float] | None:
    """A colour range ``(min, max)`` in metres from ``"MIN,MAX"`` or a pair; ``None`` stays ``None``.

    Raises:
        ValueError: not two finite numbers with min < max.
    """
    if value is None:
        return None
    try:
        parts = [float(x) for x in value.split(",")] if isinstance(value, str) else [float(x) for x in value]
    except (TypeError, ValueError):
        raise ValueError(f"--range expects MIN,MAX in metres, e.g. 0.5,10; got {value!r}") from None
    if len(parts) != 2 or not all(math.isfinite(x) for x in parts) or parts[0] >= parts[1]:
        raise ValueError(f"--range expects MIN,MAX in metres with MIN < MAX, e.g. 0.5,10; got {value!r}")
    return parts[0], parts[1]


def parse_outputs(value, key: str = "outputs") -> tuple[str, ...]:
    """What to write per image, from ``"npy,png16,color"`` or a sequence of names (order kept, repeats dropped).

    Names: ``npy`` (float32 metres), ``png16`` (16-bit PNG), ``color`` (colour-mapped depth), ``side`` (the RGB
    image and the colour-mapped depth side by side), ``ply`` (point cloud). ``None``: :data:`DEFAULT_OUTPUTS`.

    Raises:
        ValueError: naming ``key``, for an unknown name or none at all.
    """
    if value is None:
        return DEFAULT_OUTPUTS
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in IMAGE_OUTPUTS]
    if unknown or not names:
        raise ValueError(f"{key}: {'unknown output ' + ', '.join(map(repr, unknown)) if unknown else 'no output named'}; "
                         f"choose from {','.join(IMAGE_OUTPUTS)} (comma-separated), e.g. npy,png16,color")
    return tuple(dict.fromkeys(names))


def write_image_outputs(out_dir: str | os.PathLike, name: str, depth: np.ndarray, rgb: np.ndarray | None = None,
                        depth_range: tuple[float, float] | None = None, intrinsics=None,
                        png_scale: float = PNG_SCALE, outputs=None, cmap: str = DEFAULT_CMAP,
                        png_compression: int = DEFAULT_PNG_COMPRESSION) -> list[Path]:
    """Write one image's outputs: ``NAME_depth.npy``, ``NAME_depth.png``, ``NAME_color.png``, ``NAME_side.png``,
    ``NAME.ply``, as ``outputs`` says.

    Args:
        out_dir: output folder; ``name`` may contain sub-folders (``sub/img``).
        depth: (H, W) metres (non-finite or <= 0 = invalid).
        rgb: (H, W, 3) uint8 image (needed for ``side`` and ``ply``: the picture and the points' colours).
        depth_range: fixed colour range (min, max) in metres; default each image's 2nd-98th percentile.
        intrinsics: an :class:`~seldepth.prediction.pointcloud.Intrinsics` (needed for ``ply``). For backward
            compatibility, with ``outputs`` None, giving ``intrinsics`` adds ``ply`` to the default outputs.
        png_scale: values per metre in ``NAME_depth.png`` (1000: millimetres; 256: KITTI's convention;
            a model's: :func:`png_scale_of`). Depth beyond 65535 / png_scale metres is clipped with a
            :class:`DepthClippedWarning`.
        outputs: names of :func:`parse_outputs` (default ``npy``, ``png16``, ``color``).
        cmap: matplotlib colour map of ``color`` and ``side``; near is its low end, far its high end.
        png_compression: zlib level (0..9) of the PNGs.

    Returns:
        The paths written, in the order of ``outputs``.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"expected a (H, W) depth map in metres, got shape {depth.shape}")
    wanted = parse_outputs(outputs)
    if outputs is None and intrinsics is not None:
        wanted = (*wanted, "ply")
    if "ply" in wanted and intrinsics is None:
        raise ValueError("outputs: ply needs camera intrinsics")
    if ("ply" in wanted or "side" in wanted) and rgb is None:
        raise ValueError(f"outputs: {' and '.join(w for w in ('side', 'ply') if w in wanted)} need the image's colours (rgb)")
    base = Path(out_dir) / name
    vmin, vmax = depth_range if depth_range is not None else (None, None)
    # every picture is made before the first file is written: an error leaves none of this image's files
    pictures: dict[str, object] = {}
    if "png16" in wanted:
        pictures["png16"] = depth_to_png16(depth, png_scale, str(base.with_name(base.name + "_depth.png")))
    if "color" in wanted or "side" in wanted:
        color = np.asarray(colorize_depth(depth, vmin, vmax, cmap=cmap))
        if "color" in wanted:
            pictures["color"] = color
        if "side" in wanted:
            if rgb.shape[:2] != color.shape[:2]:
                raise ValueError(f"rgb: expected a {color.shape[:2]} image beside the depth, got {rgb.shape[:2]}")
            pictures["side"] = np.concatenate([np.asarray(rgb, dtype=np.uint8), color], axis=1)
    paths = []
    for what in wanted:
        if what == "npy":
            paths.append(save_npy(base.with_name(base.name + "_depth.npy"), depth))
        elif what == "png16":
            paths.append(save_png(base.with_name(base.name + "_depth.png"), pictures["png16"], png_compression))
        elif what in ("color", "side"):
            paths.append(save_png(base.with_name(f"{base.name}_{what}.png"), pictures[what], png_compression))
        else:
            paths.append(write_depth_ply(base.with_name(base.name + ".ply"), depth, rgb, intrinsics))
    return paths


class NpyStackWriter:
    """Frames (H, W) appended one at a time into one (T, H, W) float32 ``.npy``, without holding them in memory.

    Frames go to a raw temporary file; :meth:`close` writes the ``.npy`` (header with the final T,
    then the data) atomically and removes the raw file. :meth:`abort` removes everything.
    """

    def __init__(self, path: str | os.PathLike, height: int, width: int):
        self.path = Path(path)
        self.shape = (height, width)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.raw_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.raw")
        self.raw = open(self.raw_path, "wb")  # noqa: SIM115 (open until close() or abort())
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        frame = np.ascontiguousarray(frame, dtype="<f4")
        if frame.shape != self.shape:
            raise ValueError(f"expected a {self.shape} frame, got {frame.shape}")
        self.raw.write(frame.tobytes())
        self.frames += 1

    def close(self) -> Path:
        self.raw.close()
        try:
            with atomic_path(self.path) as tmp, open(tmp, "wb") as out, open(self.raw_path, "rb") as raw:
                np.lib.format.write_array_header_1_0(
                    out, {"descr": "<f4", "fortran_order": False, "shape": (self.frames, *self.shape)})
                while chunk := raw.read(1 << 24):
                    out.write(chunk)
        finally:
            self.raw_path.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        self.raw.close()
        self.raw_path.unlink(missing_ok=True)
