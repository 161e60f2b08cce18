"""NYU Depth v2 in the official ``nyu_depth_v2_labeled.mat`` layout (1449 images, Eigen 795/654 split).

Layout: one MATLAB v7.3 file (an HDF5 file, read with h5py) and the split indices in
``splits.mat`` (MATLAB v5, read with scipy: ``trainNdxs`` 795 and ``testNdxs`` 654 1-based
column vectors). MATLAB stores arrays column-major, so h5py shows their axes reversed::

    images     (N, 3, W, H) uint8      -> image (3, H, W)
    depths     (N, W, H)    float m    -> depth (H, W)   (in-painted, dense)
    rawDepths  (N, W, H)    float m    -> depth (H, W)   (raw Kinect, 0 in holes)
    labels     (N, W, H)    uint16     -> semantics (H, W), 894 raw class ids, 0 = unlabelled

The HDF5 file is opened lazily, once per process: the handle is dropped when the data set is
pickled (DataLoader workers) and reopened when the process id changes.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.files import read_text_file
from seldepth.data.nyu_densedepth import nyu_intrinsics
from seldepth.data.sample import make_sample
from seldepth.data.skipping import check_on_error, leave_out
from seldepth.defaults import require

SPLITS = ("train", "test", "all")
SPLIT_KEYS = {"train": "trainNdxs", "test": "testNdxs"}
DEFAULT_SPLITS_NAME = "splits.mat"

# Errors h5py raises for files and datasets it cannot read (DatasetError, a ValueError, is re-raised first).
_H5_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError)



def read_split_indices(path: str | os.PathLike, split: str) -> list[tuple[int, str]]:
    """The 1-based image indices of ``split`` in a split file, each with where it came from.

    Args:
        path: ``splits.mat`` (MATLAB v5 or v7.3, keys ``trainNdxs`` / ``testNdxs``), or a text
            file with one 1-based index per line (blank lines and ``#`` comments ignored), which
            is then the list of the requested split itself.
        split: ``train`` or ``test`` (only used to pick the key of a ``.mat`` file).

    Returns:
        ``[(index, origin), ...]`` in file order; ``origin`` names the file and key or line.

    Raises:
        DatasetError: naming the file (and key or line), when it cannot be read or parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: split file not found")
    if path.suffix.lower() == ".mat":
        key = SPLIT_KEYS.get(split)
        if key is None:
            raise DatasetError(f"{path}: a .mat split file has train and test splits only, not {split!r}")
        values = _read_mat_vector(path, key)
        if values.size == 0:
            raise DatasetError(f"{path}: key {key!r} is empty")
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise DatasetError(f"{path}: key {key!r} must hold whole numbers (1-based image indices)")
        return [(int(v), f"{path}, key {key!r}") for v in values]
    text = read_text_file(path, "split file")  # UTF-8 (a byte-order mark dropped); else an error naming the file
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            out.append((int(line), f"{path}, line {lineno}"))
        except ValueError:
            raise DatasetError(f"{path}, line {lineno}: expected one 1-based image index, got {line!r}") from None
    if not out:
        raise DatasetError(f"{path}: lists no image indices")
    return out


def _read_mat_vector(path: Path, key: str) -> np.ndarray:
    """The array ``key`` of a MATLAB file (v5 with scipy, v7.3 with h5py), flattened."""
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                if key not in f:
                    raise DatasetError(f"{path}: no key {key!r} (has: {', '.join(sorted(f.keys()))})")
                return np.asarray(f[key][()], dtype=np.float64).ravel()
        except DatasetError:
            raise
        except _H5_ERRORS as exc:
            raise DatasetError(f"{path}: key {key!r} cannot be read ({exc})") from None
    scipy_io = require("scipy.io")  # an optional part: only MATLAB v5 files need it

    try:
        mat = scipy_io.loadmat(path, variable_names=[key])
    except (ValueError, OSError, TypeError, NotImplementedError, EOFError, IndexError) as exc:
        raise DatasetError(f"{path}: not a readable MATLAB file ({exc})") from None
    if key not in mat:
        raise DatasetError(f"{path}: no key {key!r} (expected trainNdxs and testNdxs, 1-based)")
    try:
        return np.asarray(mat[key], dtype=np.float64).ravel()
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"{path}: key {key!r} is not a numeric vector ({exc})") from None


class NYULabeled(Dataset):
    """The 1449 densely labelled NYU Depth v2 images of ``nyu_depth_v2_labeled.mat``.

    Args:
        path: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3).
        split: ``test`` (Eigen, 654 images), ``train`` (795) or ``all`` (1449, no split file needed).
        splits: the split file: ``splits.mat`` (``trainNdxs`` / ``testNdxs``), or a text file of
            1-based indices, one per line, which is then the list of ``split`` itself. Default:
            ``splits.mat`` beside ``path``. Ignored for ``split="all"``.
        depth_key: ``depths`` (in-painted, dense; default) or ``rawDepths`` (raw Kinect, 0 in holes).
        semantics: also return the ``labels`` (894 raw NYU class ids, 0 = unlabelled) as ``semantics``.
        on_error: ``stop`` raises on a split index outside ``1..N``; ``skip`` leaves it out and
            records the message in ``skipped``.

    Each item is a sample dict::

        image     (3, 480, 640) float RGB in [0, 1]
        depth     (1, 480, 640) float metres as stored, 0 where invalid
        valid     (1, 480, 640) bool, depth > 0
        K         (3, 3) NYU's intrinsics (``nyu_intrinsics``)
        semantics (480, 640) long, only with ``semantics=True``
        meta      {"rgb": "FILE:images/K", "depth": "FILE:depths/K", "index": i, "mat_index": K}

    with ``K`` the 1-based MATLAB index of the image. Depth values are kept as stored: the
    official depths are in-painted and have no NaN; a NaN (in a foreign file) is reported by
    :func:`make_sample` as a DatasetError naming the image, not silently turned into a hole.

    Raises:
        DatasetError: for an unknown split, a missing split file (saying where it looked), a
            missing key or wrong shape (naming file and key), or a file that is not MATLAB v7.3.
    """

    layout = "NYU Depth v2 labeled .mat (MATLAB v7.3, 1449 images) + splits.mat"

    def __init__(self, path: str | os.PathLike, split: str = "test", splits: str | os.PathLike | None = None,
                 depth_key: str = "depths", semantics: bool = False, on_error: str = "stop"):
        check_on_error(on_error, "on_error")
        self.path = Path(path)
        self.split = split
        self.depth_key = depth_key
        self.semantics = semantics
        self.on_error = on_error
        self.skipped: list[str] = []
        self._h5: h5py.File | None = None
        self._h5_pid: int | None = None
        if split not in SPLITS:
            raise DatasetError(f"{self.path}: unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if not self.path.is_file():
            raise DatasetError(f"{self.path}: no such file (expected nyu_depth_v2_labeled.mat)")
        self.num_images, self.size = self._check_file()
        if split == "all":
            self.splits_path = None
            listed = [(k, f"{self.path}") for k in range(1, self.num_images + 1)]
        else:
            self.splits_path = self._find_splits(splits)
            listed = read_split_indices(self.splits_path, split)
        self.indices: list[int] = []
        for k, origin in listed:
            if 1 <= k <= self.num_images:
                self.indices.append(k)
                continue
            leave_out(f"{origin}: image index {k} is outside 1..{self.num_images} of {self.path}", on_error, self.skipped)
        if not self.indices:
            raise DatasetError(f"{self.splits_path}: no valid image index for split {split!r}")

    def _find_splits(self, splits: str | os.PathLike | None) -> Path:
        if splits is not None:
            splits = Path(splits)
            if not splits.is_file():
                raise DatasetError(f"split file {splits} not found (given as splits=)")
            return splits
        candidate = self.path.parent / DEFAULT_SPLITS_NAME
        if candidate.is_file():
            return candidate
        raise DatasetError(f"{self.path}: no split file for split {self.split!r}; looked for {candidate}. "
                           f"Pass splits=PATH (splits.mat, or a text file of 1-based indices), or split='all'")

    def _check_file(self) -> tuple[int, tuple[int, int]]:
        """Check keys, shapes and types; return (N, (H, W))."""
        keys = ["images", self.depth_key] + (["labels"] if self.semantics else [])
        try:
            with h5py.File(self.path, "r") as f:
                for key in keys:
                    if key not in f or not isinstance(f[key], h5py.Dataset):
                        raise DatasetError(f"{self.path}: no {key!r} array (has: {', '.join(sorted(f.keys()))})")
                images = f["images"]
                if images.ndim != 4 or images.shape[1] != 3:
                    raise DatasetError(f"{self.path}: key 'images' has shape {images.shape}; expected "
                                       f"(N, 3, W, H) as h5py shows MATLAB's H x W x 3 x N")
                if images.dtype != np.uint8:
                    raise DatasetError(f"{self.path}: key 'images' is {images.dtype}, expected uint8")
                n, _, w, h = images.shape
                for key in keys[1:]:
                    arr = f[key]
                    if arr.shape != (n, w, h):
                        raise DatasetError(f"{self.path}: key {key!r} has shape {arr.shape}; expected "
                                           f"{(n, w, h)} (N, W, H) to match 'images' {images.shape}")
                    if arr.dtype.kind not in "fiu":
                        raise DatasetError(f"{self.path}: key {key!r} has non-numeric type {arr.dtype}")
                return n, (h, w)
        except DatasetError:
            raise
        except _H5_ERRORS as exc:
            raise DatasetError(f"{self.path}: not a readable MATLAB v7.3 (HDF5) file ({exc}); "
                               f"expected the official nyu_depth_v2_labeled.mat") from None

    def _file(self) -> h5py.File:
        if self._h5 is None or self._h5_pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except _H5_ERRORS as exc:
                raise DatasetError(f"{self.path}: cannot be opened ({exc})") from None
            self._h5_pid = os.getpid()
        return self._h5

    def close(self) -> None:
        """Close the HDF5 file of this process (it is reopened on the next read)."""
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5.close()
        self._h5 = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        state["_h5_pid"] = None
        return state

    @classmethod
    def probe(cls, path: Path) -> bool:
        """Whether ``path`` looks like this layout: a ``.mat`` file (not opened)."""
        path = Path(path)
        return path.is_file() and path.suffix.lower() == ".mat"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict:
        k = self.indices[index]
        rgb_name, depth_name = f"{self.path}:images/{k}", f"{self.path}:{self.depth_key}/{k}"
        f = self._file()
        try:
            rgb = np.asarray(f["images"][k - 1])  # (3, W, H)
        except _H5_ERRORS as exc:
            raise DatasetError(f"{rgb_name}: cannot be read ({exc})") from None
        try:
            raw = np.asarray(f[self.depth_key][k - 1], dtype=np.float32)  # (W, H)
        except _H5_ERRORS as exc:
            raise DatasetError(f"{depth_name}: cannot be read ({exc})") from None
        semantics = None
        if self.semantics:
            try:
                labels = np.asarray(f["labels"][k - 1], dtype=np.int64)  # (W, H)
            except _H5_ERRORS as exc:
                raise DatasetError(f"{self.path}:labels/{k}: cannot be read ({exc})") from None
            semantics = torch.from_numpy(np.ascontiguousarray(labels.T))
        image = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 2, 1))).float().div_(255.0)
        depth = torch.from_numpy(np.ascontiguousarray(raw.T))[None]
        h, w = depth.shape[-2:]
        return make_sample(image, depth, nyu_intrinsics(h, w),
                           {"rgb": rgb_name, "depth": depth_name, "index": index, "mat_index": k}, semantics)
