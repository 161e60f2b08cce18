"""NYU Depth v2 in the sparse-to-dense / FastDepth HDF5 layout: one ``.h5`` file per frame.

Layout::

    nyudepthv2/train/SCENE/00001.h5      rgb (3, H, W) uint8, depth (H, W) float32 metres
    nyudepthv2/val/official/00001.h5     (the 654 Eigen test images)

The ``val`` folder of this layout holds the official test images, so ``split="test"`` is
accepted as an alias of ``val`` (a real ``test`` folder wins when there is one).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.nyu_densedepth import nyu_intrinsics
from seldepth.data.sample import make_sample
from seldepth.data.skipping import check_on_error, leave_out

SPLITS = ("train", "val", "test", "all")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_SIDE = 16384  # larger images are taken for a corrupted header, not allocated

# What h5py and numpy raise on damaged files (DatasetError, a ValueError, is re-raised first).
_READ_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError, AttributeError,
                OverflowError, MemoryError, SystemError, EOFError)


def _dataset(f: h5py.File, key: str, name: str) -> h5py.Dataset:
    if key not in f:
        raise DatasetError(f"{name}: no {key!r} dataset (has: {', '.join(sorted(f.keys())) or 'nothing'})")
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise DatasetError(f"{name}: {key!r} is not a dataset")
    return obj


def read_h5_pair(source: bytes | str | os.PathLike, name: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Read one sparse-to-dense ``.h5`` frame.

    Args:
        source: the file's path or its bytes.
        name: the name to put in errors (default the path, or ``<bytes>``).

    Returns:
        ``(image, depth)``: image (3, H, W) float RGB in [0, 1], depth (1, H, W) float metres as stored.

    Raises:
        DatasetError: naming the file (and key), for a missing, truncated or corrupted file, a
            missing ``rgb`` / ``depth`` dataset, or wrong shapes or types. No other error.
    """
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    name = name or ("<bytes>" if is_bytes else str(source))
    try:
        with h5py.File(io.BytesIO(bytes(source)) if is_bytes else source, "r") as f:
            rgb, depth = _dataset(f, "rgb", name), _dataset(f, "depth", name)
            if rgb.ndim != 3 or rgb.shape[0] != 3:
                raise DatasetError(f"{name}: 'rgb' has shape {rgb.shape}, expected (3, H, W)")
            h, w = rgb.shape[1:]
            if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
                raise DatasetError(f"{name}: 'rgb' has an implausible shape {rgb.shape}")
            if depth.shape not in ((h, w), (1, h, w)):
                raise DatasetError(f"{name}: 'depth' has shape {depth.shape}, expected {(h, w)} like 'rgb' {rgb.shape}")
            if rgb.dtype != np.uint8:
                raise DatasetError(f"{name}: 'rgb' is {rgb.dtype}, expected uint8")
            if depth.dtype.kind != "f":
                raise DatasetError(f"{name}: 'depth' is {depth.dtype}, expected float metres")
            try:
                rgb_arr = np.asarray(rgb[()], dtype=np.uint8)
            except _READ_ERRORS as exc:
                raise DatasetError(f"{name}: 'rgb' cannot be read ({exc})") from None
            try:
                depth_arr = np.asarray(depth[()], dtype=np.float32).reshape(1, h, w)
            except _READ_ERRORS as exc:
                raise DatasetError(f"{name}: 'depth' cannot be read ({exc})") from None
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{name}: file not found") from None
    except _READ_ERRORS as exc:
        raise DatasetError(f"{name}: not a readable HDF5 file ({type(exc).__name__}: {exc})") from None
    image = torch.from_numpy(rgb_arr).float().div_(255.0)
    return image, torch.from_numpy(depth_arr)


def _looks_like_hdf5(file: Path) -> bool:
    """Cheap check: the HDF5 signature at offset 0 (else h5py's own test, which allows a user block)."""
    try:
        with open(file, "rb") as f:
            if f.read(8) == HDF5_SIGNATURE:
                return True
        return bool(h5py.is_hdf5(file))
    except (OSError, ValueError):
        return False


def _split_folder(path: Path, split: str) -> Path:
    """The folder of ``split`` under ``path`` when it has ``train`` / ``val`` subfolders, else ``path``."""
    if split not in SPLITS:
        raise DatasetError(f"{path}: unknown split {split!r}; expected one of {', '.join(SPLITS)} "
                           f"('test' is an alias of 'val')")
    base = path
    if not any((base / s).is_dir() for s in ("train", "val")) and (base / "nyudepthv2").is_dir():
        base = base / "nyudepthv2"
    subs = {s: base / s for s in ("train", "val", "test") if (base / s).is_dir()}
    if "train" not in subs and "val" not in subs:
        return path
    if split == "all":
        return base
    folder = subs.get(split) or (subs.get("val") if split == "test" else None)
    if folder is None:
        wanted = "test/ or val/" if split == "test" else f"{split}/"
        raise DatasetError(f"{base}: no {wanted} folder for split {split!r} (has: {', '.join(sorted(subs))}/)")
    return folder


class NYUH5(Dataset):
    """NYU Depth v2 frames stored one per ``.h5`` file (sparse-to-dense, FastDepth).

    Args:
        path: one ``.h5`` file, or a folder searched recursively for ``*.h5``.
        split: when the folder (or its ``nyudepthv2/``) has ``train`` / ``val`` subfolders, which
            one: ``train``, ``val``, ``test`` (= ``val``, unless a ``test`` folder exists) or ``all``.
            Ignored for a single file or a folder without such subfolders.
        on_error: ``stop`` raises on a file that is not HDF5 (checked cheaply at construction);
            ``skip`` leaves it out and records the message in ``skipped``. Damage found when a
            frame is read is a DatasetError naming the file.

    Each item is a sample dict::

        image  (3, H, W) float RGB in [0, 1]
        depth  (1, H, W) float metres as stored, 0 where invalid
        valid  (1, H, W) bool, depth > 0
        K      (3, 3) NYU's intrinsics scaled to the image size
        meta   {"rgb": file, "depth": file, "index": i}

    Raises:
        DatasetError: for an unknown split, a missing split folder, or no ``.h5`` file.
    """

    layout = "sparse-to-dense / FastDepth HDF5 (rgb + depth per .h5 file)"

    def __init__(self, path: str | os.PathLike, split: str = "test", on_error: str = "stop"):
        check_on_error(on_error, "on_error")
        path = Path(path)
        self.split = split
        self.on_error = on_error
        self.skipped: list[str] = []
        if path.is_file():
            self.folder, candidates = path.parent, [path]
        elif path.is_dir():
            self.folder = _split_folder(path, split)
            candidates = sorted(p for p in self.folder.rglob("*.h5") if p.is_file())
        else:
            raise DatasetError(f"{path}: no such file or folder (expected a .h5 file or a folder of them)")
        if not candidates:
            raise DatasetError(f"{self.folder}: no .h5 files found (searched recursively)")
        self.files: list[Path] = []
        for file in candidates:
            if _looks_like_hdf5(file):
                self.files.append(file)
                continue
            leave_out(f"{file}: not an HDF5 file", on_error, self.skipped)
        if not self.files:
            raise DatasetError(f"{self.folder}: no readable .h5 file ({len(self.skipped)} left out)")

    @classmethod
    def probe(cls, path: Path) -> bool:
        """Whether ``path`` looks like this layout: a ``.h5`` file, or a folder with ``*.h5`` at depth <= 3
        (in it, or in its ``nyudepthv2/``, which the constructor also looks into)."""
        path = Path(path)
        if path.is_file():
            return path.suffix.lower() == ".h5"
        return any(folder.is_dir() and any(any(folder.glob(p)) for p in ("*.h5", "*/*.h5", "*/*/*.h5"))
                   for folder in (path, path / "nyudepthv2"))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        file = self.files[index]
        image, depth = read_h5_pair(file, str(file))
        h, w = depth.shape[-2:]
        return make_sample(image, depth, nyu_intrinsics(h, w), {"rgb": str(file), "depth": str(file), "index": index},
                           rgb_name=f"{file}:rgb", depth_name=f"{file}:depth")
