"""The Metric3D-style annotation file: ``test_annotations.json`` listing RGB, depth, scale and intrinsics.

Format::

    {"files": [{"rgb": "data/kitti_demo/rgb/0000000050.png",
                "depth": "data/kitti_demo/depth/0000000050.png",
                "depth_scale": 256.0, "cam_in": [fx, fy, cx, cy]}, ...]}

Paths are written relative to the root of the project that made the file, so each one is
looked up relative to the JSON's folder, then with its leading folders dropped one by one
(``data/kitti_demo/rgb/x.png`` -> ``kitti_demo/rgb/x.png`` -> ``rgb/x.png``). Depth PNGs hold
``metres * depth_scale`` (NYU 1000, KITTI 256); 0 is invalid.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePosixPath

from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.images import read_depth_png, read_rgb
from seldepth.data.sample import intrinsics_matrix, make_sample
from seldepth.data.skipping import check_on_error, leave_out

ANNOTATION_NAMES = ("test_annotations.json", "train_annotations.json", "val_annotations.json", "annotations.json")


def _find_annotations(folder: Path, split: str) -> Path:
    names = [f"{split}_annotations.json", "annotations.json"]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise DatasetError(f"{folder}: no annotation file for split {split!r}; looked for {', '.join(names)}")


class AnnotatedPairs(Dataset):
    """RGB/depth pairs listed in a Metric3D-style ``*_annotations.json``.

    Args:
        path: the JSON file, or its folder (``{split}_annotations.json`` or ``annotations.json``).
        split: picks the JSON in a folder.
        on_error: ``stop`` raises on a listed file that is missing or a malformed entry;
            ``skip`` leaves the entry out and records the message in ``skipped``.

    Raises:
        DatasetError: naming the JSON (and entry) for malformed content or missing files.
    """

    layout = "annotation JSON (Metric3D *_annotations.json: rgb, depth, depth_scale, cam_in)"

    def __init__(self, path: str | os.PathLike, split: str = "test", on_error: str = "stop"):
        check_on_error(on_error, "on_error")
        path = Path(path)
        self.json_path = path if path.is_file() else _find_annotations(path, split)
        self.root = self.json_path.parent
        self.skipped: list[str] = []
        try:
            entries = json.loads(self.json_path.read_text(encoding="utf-8-sig"))["files"]
            if not isinstance(entries, list):
                raise TypeError("'files' is not a list")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{self.json_path}: expected {{\"files\": [...]}} ({type(exc).__name__}: {exc})") from None
        self.entries = []
        for i, entry in enumerate(entries):
            try:
                self.entries.append(self._parse(i, entry))
            except DatasetError as exc:
                leave_out(str(exc), on_error, self.skipped)
        if not self.entries:
            raise DatasetError(f"{self.json_path}: lists no usable pairs")

    def _resolve(self, rel: str, where: str) -> Path:
        parts = PurePosixPath(rel.lstrip("/")).parts
        for start in range(len(parts)):
            candidate = self.root.joinpath(*parts[start:])
            if candidate.is_file():
                return candidate
        raise DatasetError(f"{where}: file {rel!r} not found under {self.root} (nor with its leading folders dropped)")

    def _parse(self, i: int, entry) -> dict:
        where = f"{self.json_path}, entry {i}"
        try:
            fx, fy, cx, cy = (float(v) for v in entry["cam_in"])
            scale = float(entry["depth_scale"])
            rgb, depth = str(entry["rgb"]), str(entry["depth"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{where}: expected rgb, depth, depth_scale and cam_in [fx, fy, cx, cy] "
                               f"({type(exc).__name__}: {exc})") from None
        if not (math.isfinite(scale) and scale > 0):
            raise DatasetError(f"{where}: depth_scale must be a positive number, got {scale}")
        return {"rgb": self._resolve(rgb, where), "depth": self._resolve(depth, where), "scale": scale,
                "cam_in": (fx, fy, cx, cy)}

    @classmethod
    def probe(cls, path: Path) -> bool:
        if path.is_file():
            return path.name.endswith("annotations.json")
        return path.is_dir() and any((path / n).is_file() for n in ANNOTATION_NAMES)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        e = self.entries[index]
        image = read_rgb(e["rgb"])
        depth = read_depth_png(e["depth"], scale_16bit=e["scale"])
        return make_sample(image, depth, intrinsics_matrix(*e["cam_in"]),
                           {"rgb": str(e["rgb"]), "depth": str(e["depth"]), "index": index})
