"""Any folder of image/depth pairs, matched by name.

A file is a depth map when its name (or, failing that, its folder's name) has a depth word
(``depth``, ``gt``, ``groundtruth``); otherwise an image file is an RGB image. Pairs are
matched on the relative path with the role words (``rgb``, ``image``, ``color``, ``depth``,
``sync``, ...) removed, so ``rgb/rgb_00000.jpg`` pairs with ``depth/sync_depth_00000.png``,
``00000_colors.png`` with ``00000_depth.png``, and ``rgb.png`` with ``depth.png``.

Depth files: 16-bit PNG holding ``metres * scale`` (the ``scale`` option, required: 1000 for
millimetres, 256 for KITTI), or ``.npy`` float metres. Intrinsics: a 3x3 ``intrinsics.npy``,
``intrinsics.txt``, ``K.txt`` or ``cam.txt`` in the folder, else the ``fx, fy, cx, cy``
options, else the caller's default (``default_K``), else ``fx = fy = W`` (about 53 degrees of
horizontal field of view) at the image centre.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.files import load_npy
from seldepth.data.images import read_depth_png, read_rgb
from seldepth.data.sample import intrinsics_matrix, make_sample, read_intrinsics_file
from seldepth.data.skipping import check_on_error, leave_out

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
DEPTH_WORDS = {"depth", "depths", "gt", "groundtruth"}
ROLE_WORDS = DEPTH_WORDS | {"rgb", "image", "images", "img", "imgs", "color", "colors", "colour", "colours", "sync"}
INTRINSICS_FILES = ("intrinsics.npy", "intrinsics.txt", "K.txt", "cam.txt")


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^0-9a-zA-Z]+", text.lower()) if w]


def _role(rel: Path) -> str | None:
    """``depth``, ``rgb`` or None (not a data file)."""
    suffix = rel.suffix.lower()
    if suffix == ".npy":
        return "depth" if rel.name not in INTRINSICS_FILES else None
    if suffix not in IMAGE_SUFFIXES:
        return None
    name_words = set(_words(rel.stem))
    if name_words & DEPTH_WORDS:
        return "depth"
    if name_words & (ROLE_WORDS - DEPTH_WORDS):
        return "rgb"
    return "depth" if any(set(_words(p)) & DEPTH_WORDS for p in rel.parent.parts) else "rgb"


def _key(rel: Path) -> tuple[str, ...]:
    words = [w for part in (*rel.parent.parts, rel.stem) for w in _words(part) if w not in ROLE_WORDS]
    return tuple(words)


class FolderPairs(Dataset):
    """Image/depth pairs in any folder, matched by name (see the module docstring).

    Args:
        path: the folder (searched recursively).
        scale: depth PNG value per metre (required when there are PNG depth maps).
        fx, fy, cx, cy: intrinsics in pixels when the folder has no intrinsics file.
        default_K: ``f(H, W) -> K`` used when neither a file nor fx.. are given (the NYU default for ``nyu:``).
        split: accepted for a uniform interface; a folder named ``split`` under ``path`` is used when present.
        on_error: ``stop`` raises on an image without depth; ``skip`` leaves it out, recording it in ``skipped``.
    """

    layout = "folder of image/depth pairs matched by name"

    def __init__(self, path: str | os.PathLike, scale: float | None = None, fx: float | None = None,
                 fy: float | None = None, cx: float | None = None, cy: float | None = None,
                 default_K: Callable[[int, int], torch.Tensor] | None = None, split: str = "test",
                 on_error: str = "stop"):
        check_on_error(on_error, "on_error")
        root = Path(path)
        if not root.is_dir():
            raise DatasetError(f"{root}: not a folder")
        if (root / split).is_dir():
            root = root / split
        self.root = root
        self.scale = None if scale is None else float(scale)
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise DatasetError(f"scale: must be a positive number (depth PNG value per metre), got {scale}")
        self.skipped: list[str] = []
        images: dict[tuple, Path] = {}
        depths: dict[tuple, Path] = {}
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = file.relative_to(root)
            role = _role(rel)
            if role is None:
                continue
            table = depths if role == "depth" else images
            key = _key(rel)
            if key in table:
                raise DatasetError(f"{file} and {table[key]} both match the name key {'_'.join(key) or '(empty)'!r} "
                                   f"as {role}; rename one so that pairs are unambiguous")
            table[key] = file
        self.pairs: list[tuple[Path, Path]] = []
        for key, image in images.items():
            if key in depths:
                self.pairs.append((image, depths[key]))
                continue
            leave_out(f"{image}: no depth map matches it by name (key {'_'.join(key) or '(empty)'!r})",
                      on_error, self.skipped)
        if not self.pairs:
            raise DatasetError(f"{root}: found no image/depth pairs ({len(images)} images, {len(depths)} depth maps)")
        if self.scale is None and any(d.suffix.lower() != ".npy" for _, d in self.pairs):
            raise DatasetError(f"{root}: scale: the depth PNGs need a depth scale (value per metre), e.g. "
                               f"folder:{root}?scale=1000 for millimetres or ?scale=256 for KITTI")
        self.K_file = next((root / n for n in INTRINSICS_FILES if (root / n).is_file()), None)
        self.fixed_K = read_intrinsics_file(self.K_file) if self.K_file is not None else None
        self.focal = (fx, fy, cx, cy)
        if self.fixed_K is None and any(v is not None for v in self.focal) and any(v is None for v in self.focal):
            raise DatasetError("fx, fy, cx, cy: give all four intrinsics or none")
        self.default_K = default_K

    @classmethod
    def probe(cls, path: Path, max_entries: int = 2000) -> bool:
        """A folder with both images and depth maps at its top level or one folder down (a bounded look)."""
        if not path.is_dir():
            return False
        roles: set[str] = set()
        seen = 0
        for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
            for file in folder.iterdir():
                seen += 1
                if seen > max_entries:
                    return False
                if file.is_file():
                    role = _role(file.relative_to(path))
                    if role:
                        roles.add(role)
                if len(roles) == 2:
                    return True
        return False

    def __len__(self) -> int:
        return len(self.pairs)

    def _intrinsics(self, h: int, w: int) -> torch.Tensor:
        if self.fixed_K is not None:
            return self.fixed_K
        if self.focal[0] is not None:
            return intrinsics_matrix(*(float(v) for v in self.focal))
        if self.default_K is not None:
            return self.default_K(h, w)
        return intrinsics_matrix(w, w, (w - 1) / 2, (h - 1) / 2)

    def __getitem__(self, index: int) -> dict:
        rgb, depth_file = self.pairs[index]
        image = read_rgb(rgb)
        if depth_file.suffix.lower() == ".npy":
            depth = read_depth_npy(depth_file)
        else:
            depth = read_depth_png(depth_file, scale_16bit=self.scale)
        return make_sample(image, depth, self._intrinsics(*depth.shape[-2:]),
                           {"rgb": str(rgb), "depth": str(depth_file), "index": index})


def read_depth_npy(path: Path) -> torch.Tensor:
    """A float ``.npy`` depth map in metres as (1, H, W)."""
    arr = load_npy(path, str(path))  # its declared size checked before its data is read
    while arr.ndim > 2 and arr.shape[0] == 1:  # (1, H, W): never a 1-pixel-high or -wide map's own axes
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 1:  # (H, W, 1)
        arr = arr[..., 0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DatasetError(f"{path}: expected a 2-D numeric depth map, got shape {arr.shape} dtype {arr.dtype}")
    return torch.from_numpy(arr.astype(np.float32))[None]
