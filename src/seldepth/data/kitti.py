"""KITTI raw drives, read from a file list (BTS, Monodepth or PackNet style) or from a folder.

Layout of the raw data (``ROOT``)::

    ROOT/2011_09_26/calib_cam_to_cam.txt, calib_velo_to_cam.txt
    ROOT/2011_09_26/2011_09_26_drive_0023_sync/image_02/data/0000000000.png   (image_03: right camera)
    ROOT/2011_09_26/2011_09_26_drive_0023_sync/image_02/cam.txt               (optional, PackNet: 3x3 K)
    ROOT/2011_09_26/2011_09_26_drive_0023_sync/velodyne_points/data/0000000000.bin
    ROOT/2011_09_26/2011_09_26_drive_0023_sync/proj_depth/velodyne/image_02/0000000000.npz  (PackNet)
    ROOT/2011_09_26/2011_09_26_drive_0023_sync/proj_depth/groundtruth/image_02/0000000000.png (annotated)
    GT_ROOT/{train,val}/2011_09_26_drive_0023_sync/proj_depth/groundtruth/image_02/0000000000.png
                                                  (data_depth_annotated; also without train/ val/)

File lists (one frame a line; blank lines and ``#`` comments are skipped; paths are relative to
``root``, default the list's folder, unless absolute):

- BTS / Eigen: ``rgb_path gt_path focal``; ``gt_path`` is relative to ``gt_root`` (or its
  ``train/``, ``val/``), else to ``root`` or the date folder, and may be ``None``.
- Monodepth: ``DATE/DRIVE FRAME SIDE`` with SIDE ``l`` (image_02) or ``r`` (image_03); the image is
  ``DATE/DRIVE/image_0X/data/FRAME(10 digits).png`` (or ``.jpg``).
- PackNet / Monodepth v1: ``left_path right_path`` (the left image is used), or a single image path.
  Two image paths of which the second is not in an ``image_0X/data/`` folder are read as ``rgb gt``.

An image listed as ``.jpg`` but stored as ``.png`` (or the reverse) is found.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.files import load_npz_member, read_bytes, read_text_file
from seldepth.data.images import open_image, read_rgb
from seldepth.data.kitti_calib import (
    CAM_TO_CAM,
    VELO_TO_CAM,
    camera_intrinsics,
    project_points,
    read_velodyne,
    velo_to_image,
)
from seldepth.data.sample import FrameId, intrinsics_matrix, make_sample, read_intrinsics_file
from seldepth.data.skipping import check_on_error, leave_out
from seldepth.data.transforms import crop as crop_sample

IMAGE_EXTS = (".png", ".jpg", ".jpeg")
DEPTH_MODES = ("auto", "annotated", "npz", "velodyne")
KB_CROP = (352, 1216)  # (H, W) of the bottom-centre KB crop
KITTI_DEPTH_SCALE = 256.0  # annotated PNGs hold metres * 256

_DATE = re.compile(r"^\d{4}_\d{2}_\d{2}$")
_CAMERA_DIR = re.compile(r"^image_0([0-3])$")
_RAW_IMAGE = re.compile(r"(^|/)image_0[0-3]/data/[^/]+$")


def kb_crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the KB crop: the bottom-centre 352x1216 of an image.

    Raises:
        DatasetError: when the image is smaller than 352x1216.
    """
    ch, cw = KB_CROP
    if height < ch or width < cw:
        raise DatasetError(f"the KB crop needs an image of at least {ch}x{cw}, got {height}x{width}")
    return height - ch, (width - cw) // 2, ch, cw


def read_annotated_depth(path: str | os.PathLike, name: str | None = None) -> torch.Tensor:
    """Read a KITTI depth PNG (uint16, metres * 256, 0 invalid) as (1, H, W) float metres.

    Raises:
        DatasetError: naming the file, when it is missing, not an image, or not single-channel 16-bit.
    """
    name = name or str(path)
    img = open_image(path, name)
    arr = np.asarray(img)
    if arr.ndim != 2 or arr.dtype not in (np.uint16, np.int32, np.uint32, np.int16):
        raise DatasetError(f"{name}: a KITTI depth map must be a single-channel 16-bit PNG, "
                           f"got mode {img.mode} ({arr.dtype}, shape {arr.shape})")
    return torch.from_numpy(arr.astype(np.float32) / KITTI_DEPTH_SCALE)[None]


def read_projected_npz(path: str | os.PathLike, name: str | None = None, key: str = "velodyne_depth") -> torch.Tensor:
    """Read PackNet's projected Velodyne depth (``.npz`` with ``velodyne_depth``, float metres) as (1, H, W).

    Raises:
        DatasetError: naming the file, when it is missing, not a readable npz, lacks ``key``,
            or does not hold a 2-D map.
    """
    name = name or str(path)
    data = read_bytes(path, name, ".npz depth file")
    if data[:6] == b"\x93NUMPY":
        raise DatasetError(f"{name}: expected an .npz archive, got a single array")
    arr = load_npz_member(data, key, name)  # the member's declared size is checked before it is decompressed
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DatasetError(f"{name}: {key!r} must be a 2-D numeric map, got {arr.dtype} {arr.shape}")
    return torch.from_numpy(arr.astype(np.float32))[None]


def _is_image(token: str) -> bool:
    return token.lower().endswith(IMAGE_EXTS)


def _is_float(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class _Row:
    """One parsed list line: image path candidates, the GT path (if the list has a GT column), the focal."""

    rgb: tuple[str, ...]
    gt: str | None = None
    has_gt_column: bool = False
    focal: float | None = None


def parse_list_line(line: str) -> _Row | None:
    """Parse one list line in any supported format; None when it is none of them."""
    tokens = line.split()
    if len(tokens) == 3 and tokens[2] in ("l", "r") and tokens[1].isdigit():
        cam = 2 if tokens[2] == "l" else 3
        stem = f"{tokens[0].rstrip('/')}/image_0{cam}/data/{int(tokens[1]):010d}"
        return _Row(tuple(stem + ext for ext in (".png", ".jpg")))
    if len(tokens) == 3 and _is_image(tokens[0]) and _is_float(tokens[2]):
        gt = None if tokens[1] == "None" else tokens[1]
        return _Row((tokens[0],), gt, True, float(tokens[2]))
    if len(tokens) == 2 and _is_image(tokens[0]) and (_is_image(tokens[1]) or tokens[1] == "None"):
        if _RAW_IMAGE.search(tokens[1].replace("\\", "/")):
            return _Row((tokens[0],))
        return _Row((tokens[0],), None if tokens[1] == "None" else tokens[1], True)
    if len(tokens) == 1 and _is_image(tokens[0]):
        return _Row((tokens[0],))
    return None


def _looks_like_kitti_list(line: str | None) -> bool:
    """A first list line in a KITTI format: Monodepth or BTS (with a focal), or images in ``image_0X/data/``."""
    if line is None:
        return False
    row = parse_list_line(line)
    if row is None:
        return False
    return row.focal is not None or any(_RAW_IMAGE.search(c.replace("\\", "/")) for c in row.rgb)


def _first_line(path: Path) -> str | None:
    try:
        with open(path, "r", encoding="utf-8-sig", errors="replace") as f:
            for _ in range(50):
                line = f.readline()
                if not line:
                    return None
                if line.strip() and not line.lstrip().startswith("#"):
                    return line
    except OSError:
        return None
    return None


def _is_drive_dir(path: Path) -> bool:
    return path.name.endswith("_sync") or any(p.is_dir() for p in path.glob("image_0[0-3]/data"))


def _date_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and _DATE.match(p.name))


def _drive_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and p.name.endswith("_sync"))


def _with_image_exts(rel: str) -> list[str]:
    stem, ext = os.path.splitext(rel)
    return [rel] + [stem + e for e in (".png", ".jpg") if e != ext.lower()]


@dataclass
class _Item:
    rgb: Path
    depth_kind: str
    depth_path: Path
    camera: int | None
    drive: str | None
    frame: str | None
    K: torch.Tensor | None
    focal: float | None


def _read_poses(path: Path) -> np.ndarray:
    """(N, 4, 4) camera-to-world poses from a text file of 12 numbers (3x4 row-major) per line."""
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DatasetError(f"{path}: expected 12 numbers (a 3x4 pose) per line ({exc})") from None
    if rows.shape[1] != 12:
        raise DatasetError(f"{path}: expected 12 numbers (a 3x4 pose) per line, got {rows.shape[1]}")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :4] = rows.reshape(-1, 3, 4)
    return poses


class KITTIRaw(Dataset):
    """Frames of KITTI raw drives with ground-truth depth, from a file list or a folder.

    Args:
        path: a file list (``.txt``, see the module docstring for the formats); a raw data root
            (holding ``20??_??_??`` date folders), a date folder or a drive folder (all frames of
            ``image_0{camera}``, sorted by drive then frame); or a folder that holds no drive but
            file lists, of which the one named ``*{split}*.txt`` is read.
        split: picks the list in a folder of lists; otherwise only recorded (uniform interface).
        depth: the ground truth. ``annotated``: the data_depth_annotated PNGs (uint16 / 256);
            ``npz``: PackNet's ``DRIVE/proj_depth/velodyne/image_0X/N.npz``; ``velodyne``: the
            raw scan ``DRIVE/velodyne_points/data/N.bin`` projected with the date folder's
            calibration (:mod:`seldepth.data.kitti_calib`); ``auto``: per frame, the first of
            these that exists. A list with a GT column (BTS) decides the GT under ``auto``: its
            file is read as annotated, and a ``None`` (or a listed file not found) leaves the
            frame without GT, never silently falling back to Velodyne.
        gt_root: the folder of the annotated GT (data_depth_annotated, with or without its
            ``train/`` and ``val/``); annotated GT is also looked for inside the drive folder.
        root: the raw data root that list paths are relative to (default: the list's folder).
        crop: None, or ``"kb"``: the bottom-centre 352x1216 crop of image, depth and valid, with
            K's principal point shifted by the crop's offsets.
        on_error: for a frame whose image, GT or intrinsics cannot be found: ``stop`` raises at
            construction naming the list line (or frame); ``skip`` leaves it out and appends the
            message to ``skipped``.
        camera: the camera of a folder (2: left colour, 3: right colour). Lists name their camera.

    Intrinsics K, in order: the left 3x3 of ``P_rect_0X`` in the date folder's
    ``calib_cam_to_cam.txt``; else ``image_0X/cam.txt`` beside the image folder (a 3x3 text
    matrix); else the list's focal length with the principal point at the image centre
    ``((W - 1) / 2, (H - 1) / 2)``.

    Each item is a sample dict::

        image  (3, H, W) float RGB in [0, 1]
        depth  (1, H, W) float metres, 0 where invalid (never resized)
        valid  (1, H, W) bool, depth > 0
        K      (3, 3) intrinsics
        meta   {"rgb", "depth": paths, "index": i, "drive": DRIVE or None, "frame": "0000000069" or None,
                "camera": 2 or 3 or None, "depth_kind": "annotated" | "npz" | "velodyne"}

    Raises:
        DatasetError: before any work, for a list line of no known format (naming the file and
            line), a path that is neither a list nor a folder of drives or lists, no frames, a
            frame without image, GT or intrinsics (``on_error="stop"``), a broken calibration or
            ``cam.txt``; when reading, for an unreadable image, PNG, npz or bin (naming the file).
    """

    layout = "KITTI raw drives (file list or folder)"

    def __init__(self, path: str | os.PathLike, split: str = "test", depth: str = "auto",
                 gt_root: str | os.PathLike | None = None, root: str | os.PathLike | None = None,
                 crop: str | None = None, on_error: str = "stop", camera: int = 2):
        if depth not in DEPTH_MODES:
            raise ValueError(f"depth must be one of {', '.join(DEPTH_MODES)}, got {depth!r}")
        if crop not in (None, "kb"):
            raise ValueError(f"crop must be None or 'kb', got {crop!r}")
        check_on_error(on_error, "on_error")
        if camera not in (0, 1, 2, 3):
            raise ValueError(f"camera must be 0, 1, 2 or 3, got {camera!r}")
        path = Path(path)
        if not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
        self.path = path
        self.split = split
        self.depth = depth
        self.gt_root = Path(gt_root) if gt_root is not None else None
        self.crop = crop
        self.on_error = on_error
        self.skipped: list[str] = []
        self._calib_K: dict[tuple[Path, int], torch.Tensor | None] = {}
        self._cam_txt: dict[Path, torch.Tensor | None] = {}
        self._poses: dict[Path, np.ndarray | None] = {}
        self._projections: dict[tuple[Path, int], np.ndarray] = {}
        self.list_path: Path | None = None

        if path.is_file():
            if path.suffix.lower() != ".txt":
                raise DatasetError(f"{path}: expected a .txt file list or a folder of KITTI raw drives")
            self._from_list(path, Path(root) if root is not None else path.parent)
        elif path.is_dir():
            drives = self._find_drives(path)
            if drives:
                self.root = Path(root) if root is not None else path
                self._from_drives(drives, camera)
            else:
                self._from_list(self._find_list(path, split), Path(root) if root is not None else path)
        else:
            raise DatasetError(f"{path}: expected a .txt file list or a folder of KITTI raw drives")
        if not self.items:
            where = self.list_path or path
            raise DatasetError(f"{where}: no frames found" + (f" ({len(self.skipped)} skipped)" if self.skipped else ""))

    # ----- construction

    @staticmethod
    def _find_drives(path: Path) -> list[Path]:
        if _is_drive_dir(path):
            return [path]
        drives = _drive_dirs(path)
        for date in _date_dirs(path):
            drives += _drive_dirs(date)
        return drives

    @staticmethod
    def _find_list(folder: Path, split: str) -> Path:
        lists = sorted(p for p in folder.glob(f"*{split}*.txt") if p.is_file())
        lists = [p for p in lists if (line := _first_line(p)) is not None and parse_list_line(line) is not None]
        if len(lists) == 1:
            return lists[0]
        if not lists:
            raise DatasetError(f"{folder}: neither KITTI raw drives (20??_??_??/*_sync) nor a file list "
                               f"*{split}*.txt in a known format")
        raise DatasetError(f"{folder}: several lists for split {split!r}: {', '.join(p.name for p in lists)}; "
                           "pass one of them")

    def _from_list(self, list_path: Path, root: Path) -> None:
        self.list_path = list_path
        self.root = root
        text = read_text_file(list_path)  # UTF-8 (a byte-order mark dropped); else an error naming the file
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            row = parse_list_line(line)
            if row is None:
                raise DatasetError(f"{list_path}, line {lineno}: {line.strip()!r} is none of the KITTI list formats "
                                   "('rgb gt focal', 'DATE/DRIVE FRAME l|r', 'left right', 'rgb')")
            rows.append((lineno, row))
        self.items: list[_Item] = []
        for lineno, row in rows:
            where = f"{list_path}, line {lineno}"
            candidates = [c for rel in row.rgb for c in _with_image_exts(rel)]
            rgb = next((p for p in (self._under(root, c) for c in dict.fromkeys(candidates)) if p.is_file()), None)
            if rgb is None:
                leave_out(f"{where}: image {row.rgb[0]!r} not found under {root}", self.on_error, self.skipped)
                continue
            self._add(rgb, row, where)

    def _from_drives(self, drives: list[Path], camera: int) -> None:
        self.items = []
        for drive in drives:
            frames = sorted(p for p in (drive / f"image_0{camera}" / "data").glob("*") if _is_image(p.name))
            for rgb in frames:
                self._add(rgb, _Row((str(rgb),)), f"{drive.name}/image_0{camera} frame {rgb.stem}")

    @staticmethod
    def _under(base: Path, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else base / p

    def _add(self, rgb: Path, row: _Row, where: str) -> None:
        camera_match = _CAMERA_DIR.match(rgb.parent.parent.name) if rgb.parent.name == "data" else None
        camera = int(camera_match.group(1)) if camera_match else None
        drive_dir = rgb.parents[2] if camera_match and len(rgb.parents) > 2 else None
        frame = rgb.stem if camera_match else None
        found = self._find_depth(rgb, row, drive_dir, camera, frame)
        if isinstance(found, str):
            leave_out(f"{where}: no ground truth ({self.depth}) for {rgb}: {found}", self.on_error, self.skipped)
            return
        kind, depth_path = found
        K = self._intrinsics(rgb, drive_dir, camera)
        if K is None and row.focal is None:
            leave_out(f"{where}: no intrinsics for {rgb}: no {CAM_TO_CAM} in "
                      f"{drive_dir.parent if drive_dir else rgb.parent}, no cam.txt beside the image folder, "
                      "and no focal length in the list", self.on_error, self.skipped)
            return
        self.items.append(_Item(rgb, kind, depth_path, camera, drive_dir.name if drive_dir else None, frame, K,
                                row.focal))

    def _annotated_candidates(self, row: _Row, drive_dir: Path | None, camera: int | None,
                              frame: str | None) -> list[Path]:
        bases = []
        if self.gt_root is not None:
            bases += [self.gt_root, self.gt_root / "train", self.gt_root / "val"]
        if row.has_gt_column:
            if row.gt is None:
                return []
            bases += [self.root] + ([drive_dir.parent] if drive_dir is not None else [])
            rel = row.gt
        else:
            if drive_dir is None:
                return []
            bases += [drive_dir.parent]
            rel = f"{drive_dir.name}/proj_depth/groundtruth/image_0{camera}/{frame}.png"
        return list(dict.fromkeys(self._under(b, rel) for b in bases))

    def _find_depth(self, rgb: Path, row: _Row, drive_dir: Path | None, camera: int | None,
                    frame: str | None) -> tuple[str, Path] | str:
        """(kind, path) of the frame's GT, or a message saying what was looked for."""
        looked: list[str] = []
        listed_gt = row.has_gt_column and self.depth == "auto"
        if self.depth in ("auto", "annotated"):
            candidates = self._annotated_candidates(row, drive_dir, camera, frame)
            for c in candidates:
                if c.is_file():
                    return "annotated", c
            if row.has_gt_column and row.gt is None:
                looked.append("the list gives None as its annotated GT")
            elif candidates:
                looked.append("annotated " + ", ".join(map(str, candidates)))
            else:
                looked.append("annotated GT (the image is not in a DRIVE/image_0X/data/ folder)")
        if self.depth in ("auto", "npz") and not listed_gt:
            if drive_dir is not None:
                npz = drive_dir / "proj_depth" / "velodyne" / f"image_0{camera}" / f"{frame}.npz"
                if npz.is_file():
                    return "npz", npz
                looked.append(f"npz {npz}")
            else:
                looked.append("npz (the image is not in a DRIVE/image_0X/data/ folder)")
        if self.depth in ("auto", "velodyne") and not listed_gt:
            if drive_dir is not None:
                scan = drive_dir / "velodyne_points" / "data" / f"{frame}.bin"
                calib = [drive_dir.parent / CAM_TO_CAM, drive_dir.parent / VELO_TO_CAM]
                if scan.is_file() and all(c.is_file() for c in calib):
                    return "velodyne", scan
                looked.append(f"velodyne {scan}" if not scan.is_file() else
                              f"calibration {' and '.join(str(c) for c in calib if not c.is_file())} for {scan}")
            else:
                looked.append("velodyne (the image is not in a DRIVE/image_0X/data/ folder)")
        return "looked for " + "; ".join(looked)

    def _intrinsics(self, rgb: Path, drive_dir: Path | None, camera: int | None) -> torch.Tensor | None:
        if drive_dir is not None and camera is not None:
            key = (drive_dir.parent, camera)
            if key not in self._calib_K:
                calib = drive_dir.parent / CAM_TO_CAM
                self._calib_K[key] = camera_intrinsics(drive_dir.parent, camera) if calib.is_file() else None
            if self._calib_K[key] is not None:
                return self._calib_K[key]
        cam_txt = rgb.parent.parent / "cam.txt"
        if cam_txt not in self._cam_txt:
            self._cam_txt[cam_txt] = read_intrinsics_file(cam_txt) if cam_txt.is_file() else None
        return self._cam_txt[cam_txt]

    # ----- Dataset

    @classmethod
    def probe(cls, path: Path) -> bool:
        """Whether ``path`` looks like this layout (cheap: no file beyond a list's first line is read).

        True for a ``.txt`` whose first line is a KITTI list line (BTS ``rgb gt focal``, Monodepth
        ``DATE/DRIVE FRAME l|r``, or image paths in an ``image_0X/data/`` folder); a folder named
        like a date (``20??_??_??``) or a drive (``*_sync``); a folder holding such folders; or a
        folder holding such a ``.txt`` list.
        """
        path = Path(path)
        if path.is_file():
            return path.suffix.lower() == ".txt" and _looks_like_kitti_list(_first_line(path))
        if not path.is_dir():
            return False
        if _DATE.match(path.name) or path.name.endswith("_sync"):
            return True
        try:
            children = list(path.iterdir())
        except OSError:
            return False
        if any(c.is_dir() and (_DATE.match(c.name) or c.name.endswith("_sync")) for c in children):
            return True
        return any(c.suffix.lower() == ".txt" and c.is_file() and _looks_like_kitti_list(_first_line(c))
                   for c in children[:200])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        image = read_rgb(item.rgb, str(item.rgb))
        h, w = image.shape[-2:]
        depth = self._read_depth(item, (h, w))
        K = item.K if item.K is not None else intrinsics_matrix(item.focal, item.focal, (w - 1) / 2, (h - 1) / 2)
        meta = {"rgb": str(item.rgb), "depth": str(item.depth_path), "index": index, "drive": item.drive,
                "frame": item.frame, "camera": item.camera, "depth_kind": item.depth_kind}
        sample = make_sample(image, depth, K.clone(), meta)
        if self.crop == "kb":
            try:
                box = kb_crop_box(h, w)
            except DatasetError as exc:
                raise DatasetError(f"{item.rgb}: {exc}") from None
            sample = crop_sample(sample, *box)
        return sample

    def sequence_frame(self, index: int):
        """Where sample ``index`` sits in its drive (:class:`~seldepth.data.sample.FrameId`): the drive and
        camera, the frame number, and the camera-to-world pose from ``image_0X/poses.txt`` (one 3x4 row-major
        pose per frame, PackNet's layout) when the drive has one.

        Raises:
            DatasetError: naming the image, when it is not in a ``DRIVE/image_0X/data/`` folder.
        """
        item = self.items[index]
        if item.drive is None or item.frame is None or not item.frame.isdigit():
            raise DatasetError(f"{item.rgb}: not a frame of a KITTI raw drive (DRIVE/image_0X/data/NNNNNNNNNN.png), "
                               "so it has no video order")
        number = int(item.frame)
        poses_txt = item.rgb.parent.parent / "poses.txt"
        if poses_txt not in self._poses:
            self._poses[poses_txt] = _read_poses(poses_txt) if poses_txt.is_file() else None
        poses = self._poses[poses_txt]
        pose = poses[number] if poses is not None and number < len(poses) else None
        return FrameId(f"{item.drive}/image_0{item.camera}", number, pose)

    def _read_depth(self, item: _Item, size: tuple[int, int]) -> torch.Tensor:
        if item.depth_kind == "annotated":
            return read_annotated_depth(item.depth_path)
        if item.depth_kind == "npz":
            return read_projected_npz(item.depth_path)
        date_dir = item.depth_path.parents[3]
        key = (date_dir, item.camera)
        if key not in self._projections:
            self._projections[key] = velo_to_image(date_dir, item.camera)
        points = read_velodyne(item.depth_path)
        return torch.from_numpy(project_points(points, self._projections[key], size))[None]

