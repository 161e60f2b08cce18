"""NYU Depth v2 in the DenseDepth ``nyu_data.zip`` layout (and seldepth's synthetic sets, written the same way).

Layout: a CSV with one ``rgb,depth`` pair of paths per line, and the PNGs. Depth PNGs are
16-bit millimetres (the test set) or 8-bit ``value / 255 * 10`` metres (DenseDepth's training
set). Read from the extracted folder, from the zip itself, or from a CSV path. Paths in the CSV
are resolved against the data set root, the CSV's folder, and the folder named like the CSV
(``nyu2_test/`` beside ``nyu2_test.csv``).

seldepth's synthetic data sets add, per frame, ``NNNNN_semantics.png`` (class ids) and
``NNNNN.json`` (``K`` intrinsics, ``pose``); both are picked up when present.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.files import FileSource
from seldepth.data.images import open_image, read_depth_png, read_rgb
from seldepth.data.sample import FrameId, intrinsics_matrix, make_sample
from seldepth.data.skipping import check_on_error, leave_out

# NYU Depth v2 Kinect colour intrinsics at 640x480 (fx, fy, cx, cy).
NYU_INTRINSICS = (518.8579, 519.4696, 325.5824, 253.7362)
NYU_SIZE = (480, 640)


def nyu_intrinsics(height: int, width: int) -> torch.Tensor:
    """NYU's intrinsics matrix (3, 3) scaled to an image of ``height`` x ``width``."""
    fx, fy, cx, cy = NYU_INTRINSICS
    sx, sy = width / NYU_SIZE[1], height / NYU_SIZE[0]
    return intrinsics_matrix(fx * sx, fy * sy, cx * sx, cy * sy)


def _find_csv(files: FileSource, split: str) -> str:
    candidates = [f"nyu2_{split}.csv", f"data/nyu2_{split}.csv", f"{split}.csv", f"data/{split}.csv"]
    for c in candidates:
        if files.exists(c):
            return c
    raise DatasetError(f"{files.root}: no CSV for split {split!r}; looked for {', '.join(candidates)}")


class NYUDenseDepth(Dataset):
    """NYU Depth v2 pairs listed in a DenseDepth-style CSV.

    Args:
        path: the extracted folder, ``nyu_data.zip``, or a CSV file.
        split: which CSV to use in a folder or zip (``test`` -> ``nyu2_test.csv`` or ``test.csv``).
        max_depth_8bit: metres that an 8-bit depth value of 255 stands for (DenseDepth: 10).
        on_error: ``stop`` raises on a listed file that does not exist; ``skip`` leaves the pair
            out and records the message in ``skipped``.

    Each item is a sample dict::

        image     (3, H, W) float RGB in [0, 1]
        depth     (1, H, W) float metres, 0 where invalid
        valid     (1, H, W) bool, depth > 0 and finite
        K         (3, 3) intrinsics (the sidecar's, else NYU's scaled to the image)
        semantics (H, W) long class ids, only when the data set has them
        meta      {"rgb": path, "depth": path, "index": i}

    Raises:
        DatasetError: naming the CSV line and file, when a listed file does not exist; naming
            the files when RGB and depth differ in size or a file is not an image.
    """

    layout = "DenseDepth (nyu2_*.csv + PNGs, folder or zip)"

    def __init__(self, path: str | os.PathLike, split: str = "test", max_depth_8bit: float = 10.0,
                 on_error: str = "stop"):
        check_on_error(on_error, "on_error")
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
        if path.suffix.lower() == ".csv" and path.is_file():
            self.files = FileSource(path.parent)
            csv_rel = path.name
        else:
            self.files = FileSource(path)
            if not self.files.is_zip and not path.is_dir():
                raise DatasetError(f"{path}: expected a folder, a zip archive or a CSV file")
            csv_rel = _find_csv(self.files, split)
        self.csv_path = self.files.describe(csv_rel)
        self.split = split
        self.max_depth_8bit = max_depth_8bit
        self.on_error = on_error
        self.skipped: list[str] = []
        self.pairs = self._read_pairs(csv_rel)
        if not self.pairs:
            raise DatasetError(f"{self.csv_path}: lists no image pairs")
        first = self.pairs[0][0]
        self.has_semantics = self.files.exists(first.replace("_colors.", "_semantics.")) and "_colors." in first

    def _read_pairs(self, csv_rel: str) -> list[tuple[str, str]]:
        text = self.files.read(csv_rel).decode("utf-8", errors="replace")
        csv_dir = PurePosixPath(csv_rel).parent
        bases = [PurePosixPath(""), csv_dir, csv_dir / PurePosixPath(csv_rel).stem]
        pairs = []
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) < 2:
                raise DatasetError(f"{self.csv_path}, line {lineno}: expected 'rgb,depth', got {','.join(row)!r}")
            resolved = []
            for entry in row[:2]:
                entry = entry.strip()
                for base in bases:
                    rel = str(base / entry) if str(base) not in ("", ".") else entry
                    if self.files.exists(rel):
                        resolved.append(rel)
                        break
                else:
                    message = (f"{self.csv_path}, line {lineno}: file {entry!r} not found "
                               f"(looked under {self.files.root} and beside the CSV)")
                    leave_out(message, self.on_error, self.skipped)
                    break
            if len(resolved) == 2:
                pairs.append((resolved[0], resolved[1]))
        return pairs

    @classmethod
    def probe(cls, path: Path) -> bool:
        """Whether ``path`` looks like this layout: a CSV, or a folder/zip with a ``nyu2_*.csv``/``train.csv``/``test.csv``."""
        if path.is_file() and path.suffix.lower() == ".csv":
            return True
        if path.is_dir():
            return any(path.glob("nyu2_*.csv")) or any(path.glob("data/nyu2_*.csv")) or any(
                (path / f).is_file() for f in ("train.csv", "test.csv", "val.csv"))
        if path.is_file() and zipfile.is_zipfile(path):
            names = zipfile.ZipFile(path).namelist()
            return any(n.endswith(".csv") for n in names)
        return False

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        rgb_rel, depth_rel = self.pairs[index]
        rgb_name, depth_name = self.files.describe(rgb_rel), self.files.describe(depth_rel)
        image = read_rgb(self.files.read(rgb_rel), rgb_name)
        depth = read_depth_png(self.files.read(depth_rel), depth_name, None, self.max_depth_8bit)
        semantics = None
        if self.has_semantics:
            sem_rel = rgb_rel.replace("_colors.", "_semantics.")
            sem = np.asarray(open_image(self.files.read(sem_rel), self.files.describe(sem_rel)))
            semantics = torch.from_numpy(sem.astype(np.int64))
        h, w = depth.shape[-2:]
        return make_sample(image, depth, self._intrinsics(rgb_rel, h, w),
                           {"rgb": rgb_name, "depth": depth_name, "index": index}, semantics)

    def sequence_frame(self, index: int):
        """Where sample ``index`` sits in its video (:class:`~seldepth.data.sample.FrameId`), from the
        JSON sidecar of seldepth's synthetic sets (``scene``, ``frame``, ``pose``).

        Raises:
            DatasetError: naming the file, when the frame has no sidecar with these keys.
        """
        rgb_rel = self.pairs[index][0]
        sidecar = rgb_rel.split("_colors.")[0] + ".json" if "_colors." in rgb_rel else None
        if sidecar is None or not self.files.exists(sidecar):
            raise DatasetError(f"{self.files.describe(rgb_rel)}: no JSON sidecar with the frame's scene, number and pose "
                               "(only seldepth's synthetic sets give NYU-layout frames a video order)")
        try:
            meta = json.loads(self.files.read(sidecar))
            pose = np.asarray(meta["pose"], dtype=np.float64)
            if pose.shape != (4, 4):
                raise ValueError(f"pose has shape {pose.shape}, expected (4, 4)")
            return FrameId(f"scene{int(meta['scene'])}", int(meta["frame"]), pose)
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{self.files.describe(sidecar)}: bad sidecar, expected 'scene', 'frame' and a 4x4 'pose' "
                               f"({exc})") from None

    def _intrinsics(self, rgb_rel: str, h: int, w: int) -> torch.Tensor:
        if "_colors." in rgb_rel:
            sidecar = rgb_rel.split("_colors.")[0] + ".json"
            if self.files.exists(sidecar):
                try:
                    meta = json.loads(self.files.read(sidecar))
                    return torch.tensor(meta["K"], dtype=torch.float32)
                except (ValueError, KeyError, TypeError) as exc:
                    raise DatasetError(f"{self.files.describe(sidecar)}: bad sidecar, expected a 'K' 3x3 list ({exc})") from None
        return nyu_intrinsics(h, w)

