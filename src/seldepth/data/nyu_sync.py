"""NYU Depth v2 in the BTS layout: a file list of ``rgb_path depth_path focal`` lines over the "sync" set.

Layout (BTS, also AdaBins, NeWCRFs, Metric3D)::

    /kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579    (train list)
    bathroom/rgb_00045.jpg bathroom/sync_depth_00045.png 518.8579                (test list)

Paths are relative to a data root (a leading ``/`` too); the focal length is in pixels of the
stored image. Depth PNGs are 16-bit millimetres, 0 in the holes of the raw Kinect depth.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.files import read_text_file
from seldepth.data.images import read_depth_png, read_rgb
from seldepth.data.nyu_densedepth import NYU_INTRINSICS, NYU_SIZE
from seldepth.data.sample import intrinsics_matrix, make_sample
from seldepth.data.skipping import check_on_error, leave_out


def _parse_focal(text: str) -> float | None:
    try:
        focal = float(text)
    except ValueError:
        return None
    return focal if math.isfinite(focal) and focal > 0 else None


def find_list(folder: Path, split: str) -> Path:
    """The file list of ``split`` in ``folder`` (or one folder below): ``*{split}*.txt``.

    When several match, the one with ``files_with_gt`` in its name wins (BTS:
    ``nyudepthv2_test_files_with_gt.txt``).

    Raises:
        DatasetError: listing the patterns looked for, or the candidates when ambiguous.
    """
    patterns = [f"*{split}*.txt", f"*/*{split}*.txt"]
    for pattern in patterns:
        found = sorted(p for p in folder.glob(pattern) if p.is_file())
        if len(found) > 1:
            with_gt = [p for p in found if "files_with_gt" in p.name]
            found = with_gt or found
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise DatasetError(f"{folder}: several lists match split {split!r}: "
                               f"{', '.join(str(p.relative_to(folder)) for p in found)}; pass the list file itself")
    raise DatasetError(f"{folder}: no file list for split {split!r}; looked for "
                       f"{', '.join(str(folder / p) for p in patterns)} "
                       f"(BTS names: nyudepthv2_train_files_with_gt.txt, nyudepthv2_test_files_with_gt.txt)")


class NYUSync(Dataset):
    """NYU Depth v2 pairs listed in a BTS-style file list (``rgb depth focal`` per line).

    Args:
        path: the list file, or a folder holding it (then ``split`` picks ``*{split}*.txt``).
        split: which list to pick in a folder (``train``, ``test``, ...).
        root: the data root the listed paths are relative to; default the list file's folder.
            A leading ``/`` in a listed path is relative to the root as well.
        on_error: ``stop`` raises on a listed file that does not exist; ``skip`` leaves the row
            out and records the message in ``skipped``.

    Each item is a sample dict::

        image  (3, H, W) float RGB in [0, 1]
        depth  (1, H, W) float metres (PNG / 1000), 0 in holes
        valid  (1, H, W) bool, depth > 0
        K      (3, 3): fx = fy = the listed focal; cx, cy NYU's, scaled to the image size
        meta   {"rgb": path, "depth": path, "index": i, "line": line number in the list}

    Raises:
        DatasetError: at construction, naming the list file and line, for a line without three
            columns, a focal that is not a positive number, or (``stop``) a missing file.
    """

    layout = "BTS sync (file list 'rgb depth focal' + JPG / 16-bit PNG)"

    def __init__(self, path: str | os.PathLike, split: str = "test", root: str | os.PathLike | None = None,
                 on_error: str = "stop"):
        check_on_error(on_error, "on_error")
        path = Path(path)
        if path.is_dir():
            path = find_list(path, split)
        elif not path.is_file():
            raise DatasetError(f"{path}: no such file or folder (expected a BTS file list or its folder)")
        self.list_path = path
        self.root = Path(root) if root is not None else path.parent
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: data root is not a folder (given for {path})")
        self.split = split
        self.on_error = on_error
        self.skipped: list[str] = []
        self.rows = self._read_rows()
        if not self.rows:
            raise DatasetError(f"{self.list_path}: lists no image pairs" +
                               (f" ({len(self.skipped)} left out: {self.skipped[0]})" if self.skipped else ""))

    def _read_rows(self) -> list[tuple[Path, Path, float, int]]:
        text = read_text_file(self.list_path)  # UTF-8 (a byte-order mark dropped); else an error naming the file
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = line.split()
            where = f"{self.list_path}, line {lineno}"
            if len(cols) != 3:
                raise DatasetError(f"{where}: expected 3 columns 'rgb_path depth_path focal', got {len(cols)}: {line.strip()!r}")
            focal = _parse_focal(cols[2])
            if focal is None:
                raise DatasetError(f"{where}: the focal length (3rd column) must be a positive number, got {cols[2]!r}")
            files = []
            for entry in cols[:2]:
                file = self.root / entry.lstrip("/")
                if entry == "None" or not file.is_file():
                    what = "has no ground truth ('None')" if entry == "None" else f"file {entry!r} not found (looked at {file})"
                    leave_out(f"{where}: {what}", self.on_error, self.skipped)
                    break
                files.append(file)
            if len(files) == 2:
                rows.append((files[0], files[1], focal, lineno))
        return rows

    @classmethod
    def probe(cls, path: Path) -> bool:
        """Whether ``path`` looks like this layout: a ``.txt`` whose first non-empty line has 3 columns
        ending in a number, or a folder holding a ``*files_with_gt*.txt``."""
        path = Path(path)
        if path.is_dir():
            return any(path.glob("*files_with_gt*.txt"))
        if not (path.is_file() and path.suffix.lower() == ".txt"):
            return False
        try:
            with open(path, encoding="utf-8-sig", errors="replace") as f:
                for _, line in zip(range(1000), f):
                    if line.strip():
                        cols = line.split()
                        return len(cols) == 3 and _parse_focal(cols[2]) is not None
        except OSError:
            return False
        return False

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        rgb_path, depth_path, focal, lineno = self.rows[index]
        image = read_rgb(rgb_path, str(rgb_path))
        depth = read_depth_png(depth_path, str(depth_path), scale_16bit=1000.0)
        h, w = depth.shape[-2:]
        _, _, cx, cy = NYU_INTRINSICS
        K = intrinsics_matrix(focal, focal, cx * w / NYU_SIZE[1], cy * h / NYU_SIZE[0])
        return make_sample(image, depth, K, {"rgb": str(rgb_path), "depth": str(depth_path), "index": index,
                                             "line": lineno})
