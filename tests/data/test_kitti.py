"""KITTI raw readers: calibration, Velodyne projection, file lists, folders, GT kinds, KB crop, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.kitti import KITTIRaw, parse_list_line
from seldepth.data.kitti_calib import (
    camera_intrinsics,
    project_velodyne,
    read_calib_file,
    read_velodyne,
    velo_to_image,
)

DRIVE = "2011_09_26_drive_0002_sync"
H, W = 30, 40  # the tiny drive's images


@pytest.fixture
def raw(shared) -> Path:
    return shared / "data" / "kitti_sample" / "raw_sequence"


def _npz_depth(raw: Path, frame: int) -> np.ndarray:
    path = raw / "2011_09_26/2011_09_26_drive_0023_sync/proj_depth/velodyne/image_02" / f"{frame:010d}.npz"
    return np.load(path)["velodyne_depth"]


# ---------------------------------------------------------------- the shared raw sequence


def test_reads_shared_sequence_from_packnet_list(raw, one_thread):
    ds = KITTIRaw(raw / "kitti_tiny.txt")
    assert len(ds) == 5  # frames 1..5, left images
    s = ds[0]
    assert s["image"].shape == (3, 375, 1242) and s["image"].dtype == torch.float32
    assert s["depth"].shape == (1, 375, 1242)
    assert s["meta"]["frame"] == "0000000001" and s["meta"]["drive"] == "2011_09_26_drive_0023_sync"
    assert "image_02" in s["meta"]["rgb"] and s["meta"]["depth_kind"] == "npz"
    expected = _npz_depth(raw, 1)
    ys, xs = np.nonzero(expected)
    for y, x in list(zip(ys, xs))[::4000] + [(117, 1017), (127, 1137)]:
        assert s["depth"][0, y, x].item() == expected[y, x]
    assert s["depth"][0, 0, 0].item() == 0 and not s["valid"][0, 0, 0]
    assert int(s["valid"].sum()) == int((expected > 0).sum())
    K = torch.tensor([[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]])
    torch.testing.assert_close(s["K"], K)


def test_reads_shared_sequence_from_folder(raw, one_thread):
    for path in (raw, raw / "2011_09_26", raw / "2011_09_26" / "2011_09_26_drive_0023_sync"):
        ds = KITTIRaw(path)
        assert len(ds) == 7
        assert [Path(it.rgb).name for it in ds.items] == [f"{i:010d}.png" for i in range(7)]
    s = ds[3]
    assert s["meta"]["index"] == 3 and s["meta"]["frame"] == "0000000003"
    np.testing.assert_array_equal(s["depth"][0].numpy(), _npz_depth(raw, 3))
    assert s["image"].shape == (3, 375, 1242)


def test_shared_calibration(raw):
    calib = read_calib_file(raw / "2011_09_26" / "calib_cam_to_cam.txt")
    assert "calib_time" not in calib  # a date, not numbers
    assert calib["P_rect_02"].shape == (12,)
    assert calib["P_rect_02"][3] == pytest.approx(44.85728)
    K = camera_intrinsics(raw / "2011_09_26", camera=2)
    torch.testing.assert_close(K, torch.tensor([[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]]))


def test_velodyne_chain_matches_a_per_point_reference(raw):
    """P_rect_02 @ R_rect_00 @ [R|T], computed point by point in plain Python from the files' numbers."""
    date = raw / "2011_09_26"
    cam = {l.split(":")[0]: l.split(":")[1].split() for l in (date / "calib_cam_to_cam.txt").read_text().splitlines()}
    velo = {l.split(":")[0]: l.split(":")[1].split() for l in (date / "calib_velo_to_cam.txt").read_text().splitlines()}
    P = [[float(v) for v in cam["P_rect_02"][4 * i: 4 * i + 4]] for i in range(3)]
    Rr = [[float(v) for v in cam["R_rect_00"][3 * i: 3 * i + 3]] for i in range(3)]
    R = [[float(v) for v in velo["R"][3 * i: 3 * i + 3]] for i in range(3)]
    T = [float(v) for v in velo["T"]]
    rng = np.random.default_rng(0)
    points = np.stack([rng.uniform(5, 40, 6), rng.uniform(-5, 5, 6), rng.uniform(-1.5, 1, 6),
                       np.zeros(6)], 1).astype(np.float32)
    depth = project_velodyne(points, date, 2, (375, 1242))
    for x, y, z, _ in points.astype(np.float64):
        c = [sum(R[i][j] * p for j, p in enumerate((x, y, z))) + T[i] for i in range(3)]
        r = [sum(Rr[i][j] * c[j] for j in range(3)) for i in range(3)]
        u, v, w = (sum(P[i][j] * q for j, q in enumerate(r + [1.0])) for i in range(3))
        col, row = round(u / w) - 1, round(v / w) - 1
        assert 0 <= row < 375 and 0 <= col < 1242
        assert depth[row, col] == pytest.approx(w, rel=1e-6)
    assert int((depth > 0).sum()) == 6
    np.testing.assert_allclose(velo_to_image(date, 2)[:, 3], np.array(P)[:, :3] @ np.array(Rr) @ T + np.array(P)[:, 3])


# ---------------------------------------------------------------- a tiny hand-made drive

VELO_TO_CAM = "calib_time: 15-Mar-2012 11:37:16\nR: 0 -1 0 0 0 -1 1 0 0\nT: 0 0 0\ndelta_f: 0 0\n"
CAM_TO_CAM = ("calib_time: 09-Jan-2012 13:57:47\nR_rect_00: 1 0 0 0 1 0 0 0 1\n"
              "P_rect_00: 100 0 20 0 0 100 10 0 0 0 1 0\nP_rect_02: 100 0 20 0 0 100 10 0 0 0 1 0\n"
              "P_rect_03: 100 0 21 -50 0 100 10 0 0 0 1 0\n")


def _write_drive(root: Path, frames=(69,), camera=2, calib=True) -> Path:
    date = root / "2011_09_26"
    drive = date / DRIVE
    (drive / f"image_0{camera}" / "data").mkdir(parents=True, exist_ok=True)
    for f in frames:
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(drive / f"image_0{camera}/data/{f:010d}.png")
    if calib:
        (date / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
        (date / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    return drive


def _write_bin(drive: Path, frame: int, points) -> Path:
    path = drive / "velodyne_points" / "data" / f"{frame:010d}.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(points, np.float32).tofile(path)
    return path


# Velodyne (x fwd, y left, z up) -> camera (x = -y, y = -z, z = x); u = (100 xc + 20 zc) / zc, v = (100 yc + 10 zc) / zc.
HAND_POINTS = [
    (10, 0, 0, 0.5),       # u=20, v=10 -> col 19, row 9, 10 m
    (10, -1, 0.5, 0.5),    # u=30, v=5 -> col 29, row 4, 10 m
    (20, -2, 0, 0.5),      # u=30, v=10 -> col 29, row 9, 20 m  } one pixel:
    (5, -0.5, 0, 0.5),     # u=30, v=10 -> col 29, row 9, 5 m   } the nearest (5 m)
    (8, -0.8, 0, 0.5),     # u=30, v=10 -> col 29, row 9, 8 m   } wins
    (10, -2, 0, 0.5),      # u=40 -> col 39 (last column), row 9, 10 m
    (10, 1.94, 0, 0.5),    # u=0.6 -> round 1 -> col 0, row 9, 10 m
    (-10, -1, -0.5, 0.5),  # behind (x < 0): would be u=10, v=5 -> col 9, row 4 at -10 m; dropped
    (10, -3, 0, 0.5),      # u=50 -> col 49 >= W; dropped
    (10, 0, 1.2, 0.5),     # v=-2 -> row -3; dropped
]
HAND_EXPECTED = {(9, 19): 10.0, (4, 29): 10.0, (9, 29): 5.0, (9, 39): 10.0, (9, 0): 10.0}


def test_projection_by_hand(tmp_path):
    drive = _write_drive(tmp_path)
    points = read_velodyne(_write_bin(drive, 69, HAND_POINTS))
    assert points.shape == (10, 4) and points.dtype == np.float32
    depth = project_velodyne(points, drive.parent, 2, (H, W))
    assert depth.shape == (H, W) and depth.dtype == np.float32
    got = {(int(r), int(c)): float(depth[r, c]) for r, c in zip(*np.nonzero(depth))}
    assert got == pytest.approx(HAND_EXPECTED)
    assert depth[4, 9] == 0  # the point behind the camera
    # the nearest wins whatever the order of the points
    depth_rev = project_velodyne(points[::-1].copy(), drive.parent, 2, (H, W))
    np.testing.assert_array_equal(depth, depth_rev)


def test_velodyne_ground_truth_through_the_dataset(tmp_path, one_thread):
    drive = _write_drive(tmp_path)
    _write_bin(drive, 69, HAND_POINTS)
    for ds in (KITTIRaw(tmp_path, depth="velodyne"), KITTIRaw(tmp_path)):  # auto: only the scan exists
        s = ds[0]
        assert s["meta"]["depth_kind"] == "velodyne" and s["meta"]["depth"].endswith("0000000069.bin")
        got = {(int(r), int(c)): float(s["depth"][0, r, c]) for r, c in zip(*np.nonzero(s["depth"][0].numpy()))}
        assert got == pytest.approx(HAND_EXPECTED)
        torch.testing.assert_close(s["K"], torch.tensor([[100.0, 0, 20], [0, 100, 10], [0, 0, 1]]))


def test_auto_prefers_annotated_then_npz_then_velodyne(tmp_path, one_thread):
    drive = _write_drive(tmp_path)
    _write_bin(drive, 69, HAND_POINTS)
    npz = drive / "proj_depth/velodyne/image_02/0000000069.npz"
    npz.parent.mkdir(parents=True)
    np.savez(npz, velodyne_depth=np.full((H, W), 7.0, np.float32))
    s = KITTIRaw(tmp_path)[0]
    assert s["meta"]["depth_kind"] == "npz" and float(s["depth"].max()) == 7.0
    gt = drive / "proj_depth/groundtruth/image_02/0000000069.png"
    gt.parent.mkdir(parents=True)
    Image.fromarray(np.full((H, W), 768, np.uint16)).save(gt)
    s = KITTIRaw(tmp_path)[0]
    assert s["meta"]["depth_kind"] == "annotated" and float(s["depth"].max()) == 3.0
    assert KITTIRaw(tmp_path, depth="velodyne")[0]["meta"]["depth_kind"] == "velodyne"
    assert KITTIRaw(tmp_path, depth="npz")[0]["meta"]["depth_kind"] == "npz"


# ---------------------------------------------------------------- file lists and annotated GT


def _bts_tree(tmp_path, calib=False, size=(H, W)):
    """Raw data under raw/, annotated GT under gt/train/ (data_depth_annotated), a BTS list with a None row."""
    h, w = size
    drive = tmp_path / "raw" / "2011_09_26" / DRIVE
    (drive / "image_02" / "data").mkdir(parents=True)
    for f in (69, 70):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(drive / f"image_02/data/{f:010d}.png")
    if calib:
        (drive.parent / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    gt = np.zeros((h, w), np.uint16)
    gt[h - 5, w - 30] = 2560   # 10 m
    gt[h - 1, w // 2] = 1000   # 3.90625 m
    gt_file = tmp_path / "gt" / "train" / DRIVE / "proj_depth/groundtruth/image_02/0000000069.png"
    gt_file.parent.mkdir(parents=True)
    Image.fromarray(gt).save(gt_file)
    lines = [f"2011_09_26/{DRIVE}/image_02/data/0000000069.png {DRIVE}/proj_depth/groundtruth/image_02/0000000069.png 721.5377",
             f"2011_09_26/{DRIVE}/image_02/data/0000000070.png None 721.5377"]
    listing = tmp_path / "eigen_test_files_with_gt.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing, gt


def test_bts_list_with_annotated_png(tmp_path, one_thread):
    listing, _ = _bts_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"eigen_test_files_with_gt.txt, line 2: no ground truth.*None"):
        KITTIRaw(listing, root=tmp_path / "raw", gt_root=tmp_path / "gt")
    ds = KITTIRaw(listing, root=tmp_path / "raw", gt_root=tmp_path / "gt", on_error="skip")
    assert len(ds) == 1 and len(ds.skipped) == 1 and "line 2" in ds.skipped[0]
    s = ds[0]
    assert s["meta"]["depth_kind"] == "annotated"
    assert s["depth"][0, H - 5, W - 30].item() == 10.0
    assert s["depth"][0, H - 1, W // 2].item() == pytest.approx(1000 / 256)
    assert int(s["valid"].sum()) == 2 and not s["valid"][0, 0, 0]
    # no calibration, no cam.txt: the list's focal with the principal point at the centre
    torch.testing.assert_close(s["K"], torch.tensor([[721.5377, 0, (W - 1) / 2], [0, 721.5377, (H - 1) / 2], [0, 0, 1]]))
    # without gt_root the listed GT is not found; auto does not fall back to anything else
    with pytest.raises(DatasetError, match="line 1: no ground truth"):
        KITTIRaw(listing, root=tmp_path / "raw")


def test_calibration_beats_focal(tmp_path, one_thread):
    listing, _ = _bts_tree(tmp_path, calib=True)
    s = KITTIRaw(listing, root=tmp_path / "raw", gt_root=tmp_path / "gt", on_error="skip")[0]
    torch.testing.assert_close(s["K"], torch.tensor([[100.0, 0, 20], [0, 100, 10], [0, 0, 1]]))


def test_cam_txt_beside_the_image_folder(tmp_path, one_thread):
    listing, _ = _bts_tree(tmp_path)
    np.savetxt(tmp_path / "raw/2011_09_26" / DRIVE / "image_02/cam.txt", [[50, 0, 19], [0, 51, 14], [0, 0, 1]])
    s = KITTIRaw(listing, root=tmp_path / "raw", gt_root=tmp_path / "gt", on_error="skip")[0]
    torch.testing.assert_close(s["K"], torch.tensor([[50.0, 0, 19], [0, 51, 14], [0, 0, 1]]))


def test_monodepth_list_and_gt_inside_the_drive(tmp_path, one_thread):
    drive = _write_drive(tmp_path / "raw", frames=(69,), camera=2)
    _write_drive(tmp_path / "raw", frames=(69,), camera=3)
    for cam, value in ((2, 512), (3, 1024)):
        gt = drive / f"proj_depth/groundtruth/image_0{cam}/0000000069.png"
        gt.parent.mkdir(parents=True)
        Image.fromarray(np.full((H, W), value, np.uint16)).save(gt)
    listing = tmp_path / "raw" / "eigen_test.txt"
    listing.write_text(f"2011_09_26/{DRIVE} 69 l\n2011_09_26/{DRIVE} 0000000069 r\n")
    ds = KITTIRaw(listing)
    assert len(ds) == 2
    left, right = ds[0], ds[1]
    assert left["meta"]["rgb"].endswith("image_02/data/0000000069.png") and left["meta"]["camera"] == 2
    assert right["meta"]["rgb"].endswith("image_03/data/0000000069.png") and right["meta"]["camera"] == 3
    assert float(left["depth"][0, 0, 0]) == 2.0 and float(right["depth"][0, 0, 0]) == 4.0
    assert left["K"][0, 2].item() == 20.0 and right["K"][0, 2].item() == 21.0  # P_rect_02 / P_rect_03
    # a folder holding no drive but lists: the one of the split is read
    lists_only = tmp_path / "splits"
    lists_only.mkdir()
    (lists_only / "eigen_test_files.txt").write_text(listing.read_text())
    (lists_only / "eigen_train_files.txt").write_text("garbage\n")
    assert len(KITTIRaw(lists_only, split="test", root=tmp_path / "raw")) == 2


def test_kb_crop(tmp_path, one_thread):
    listing, _ = _bts_tree(tmp_path, size=(375, 1242))
    ds = KITTIRaw(listing, root=tmp_path / "raw", gt_root=tmp_path / "gt", on_error="skip", crop="kb")
    full = KITTIRaw(listing, root=tmp_path / "raw", gt_root=tmp_path / "gt", on_error="skip")[0]
    s = ds[0]
    top, left = 375 - 352, (1242 - 1216) // 2  # 23, 13
    assert s["image"].shape == (3, 352, 1216) and s["depth"].shape == (1, 352, 1216)
    assert s["valid"].shape == (1, 352, 1216)
    assert s["depth"][0, 370 - top, 1212 - left].item() == 10.0  # gt[h - 5, w - 30]
    assert s["depth"][0, 374 - top, 621 - left].item() == pytest.approx(1000 / 256)
    assert s["K"][0, 2].item() == pytest.approx(full["K"][0, 2].item() - left)
    assert s["K"][1, 2].item() == pytest.approx(full["K"][1, 2].item() - top)
    assert s["K"][0, 0].item() == pytest.approx(721.5377)


# ---------------------------------------------------------------- formats, probe and errors


def test_list_line_formats():
    bts = parse_list_line(f"2011_09_26/{DRIVE}/image_02/data/0000000069.png {DRIVE}/proj_depth/groundtruth/image_02/0000000069.png 721.5377")
    assert bts.rgb == (f"2011_09_26/{DRIVE}/image_02/data/0000000069.png",) and bts.focal == 721.5377
    assert bts.gt.startswith(DRIVE)
    assert parse_list_line(f"2011_09_26/{DRIVE}/image_02/data/0000000069.png None 721.5377").gt is None
    mono = parse_list_line(f"2011_09_26/{DRIVE} 69 r")
    assert mono.rgb[0] == f"2011_09_26/{DRIVE}/image_03/data/0000000069.png"
    pair = parse_list_line(f"a/{DRIVE}/image_02/data/0000000001.png a/{DRIVE}/image_03/data/0000000001.png")
    assert pair.rgb == (f"a/{DRIVE}/image_02/data/0000000001.png",) and not pair.has_gt_column
    assert parse_list_line("foo bar") is None and parse_list_line("a.png b.png c.png") is None


def test_bad_list_line_names_file_and_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"2011_09_26/{DRIVE} 69 l\nthis is not a kitti line\n")
    with pytest.raises(DatasetError, match=r"list.txt, line 2: 'this is not a kitti line'"):
        KITTIRaw(listing)


def test_path_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        KITTIRaw(tmp_path / "nothing")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DatasetError, match="expected a .txt file list"):
        KITTIRaw(tmp_path / "x.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither KITTI raw drives"):
        KITTIRaw(tmp_path / "empty")
    _write_drive(tmp_path / "noframes", frames=())
    with pytest.raises(DatasetError, match="no frames found"):
        KITTIRaw(tmp_path / "noframes")


def test_missing_gt_in_a_folder_stop_or_skip(tmp_path):
    drive = _write_drive(tmp_path, frames=(0, 1))
    _write_bin(drive, 1, HAND_POINTS)
    with pytest.raises(DatasetError, match=r"frame 0000000000: no ground truth"):
        KITTIRaw(tmp_path)
    ds = KITTIRaw(tmp_path, on_error="skip")
    assert len(ds) == 1 and ds.items[0].frame == "0000000001" and "0000000000" in ds.skipped[0]


def test_probe(raw, shared, tmp_path):
    assert KITTIRaw.probe(raw / "kitti_tiny.txt")
    assert KITTIRaw.probe(raw) and KITTIRaw.probe(raw / "2011_09_26")
    assert KITTIRaw.probe(raw / "2011_09_26" / "2011_09_26_drive_0023_sync")
    nyu = shared / "data" / "nyu_test_sample"
    assert not KITTIRaw.probe(nyu) and not KITTIRaw.probe(nyu / "nyu2_test.csv")
    (tmp_path / "notes.txt").write_text("hello world\n")
    (tmp_path / "images.txt").write_text("photo.png\n")  # a plain image list is not claimed
    assert not KITTIRaw.probe(tmp_path / "notes.txt") and not KITTIRaw.probe(tmp_path / "images.txt")
    assert not KITTIRaw.probe(tmp_path)
    (tmp_path / "eigen_test.txt").write_text(f"2011_09_26/{DRIVE} 69 l\n")
    assert KITTIRaw.probe(tmp_path / "eigen_test.txt") and KITTIRaw.probe(tmp_path)


def test_corrupt_bin_is_named(tmp_path):
    drive = _write_drive(tmp_path)
    scan = _write_bin(drive, 69, HAND_POINTS)
    scan.write_bytes(scan.read_bytes()[:-3])
    with pytest.raises(DatasetError, match=r"0000000069.bin: not a Velodyne scan.*multiple of 16"):
        read_velodyne(scan)
    with pytest.raises(DatasetError, match=r"0000000069.bin: not a Velodyne scan"):
        KITTIRaw(tmp_path)[0]
    with pytest.raises(DatasetError, match=r"missing.bin: Velodyne scan not found"):
        read_velodyne(tmp_path / "missing.bin")


@pytest.mark.parametrize("content", ["garbage", "truncated", "wrong_key"])
def test_corrupt_npz_is_named(tmp_path, content):
    drive = _write_drive(tmp_path)
    npz = drive / "proj_depth/velodyne/image_02/0000000069.npz"
    npz.parent.mkdir(parents=True)
    if content == "wrong_key":
        np.savez(npz, depth=np.ones((H, W), np.float32))
    else:
        np.savez(npz, velodyne_depth=np.ones((H, W), np.float32))
        data = npz.read_bytes()
        npz.write_bytes(b"\x00garbage bytes, not numpy" if content == "garbage" else data[: len(data) // 2])
    ds = KITTIRaw(tmp_path)
    assert ds.items[0].depth_kind == "npz"
    with pytest.raises(DatasetError, match=r"0000000069.npz: "):
        ds[0]


def test_corrupt_annotated_png_is_named(tmp_path):
    drive = _write_drive(tmp_path)
    gt = drive / "proj_depth/groundtruth/image_02/0000000069.png"
    gt.parent.mkdir(parents=True)
    gt.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"groundtruth/image_02/0000000069.png: not a readable image"):
        KITTIRaw(tmp_path)[0]
    Image.fromarray(np.full((H, W), 9, np.uint8)).save(gt)  # 8-bit: not KITTI's uint16 / 256
    with pytest.raises(DatasetError, match=r"0000000069.png: a KITTI depth map must be a single-channel 16-bit PNG"):
        KITTIRaw(tmp_path)[0]


def test_calibration_errors_name_file_and_key(tmp_path):
    date = tmp_path / "2011_09_26"
    date.mkdir()
    (date / "calib_cam_to_cam.txt").write_text("calib_time: 09-Jan-2012 13:57:47\nP_rect_02: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    with pytest.raises(DatasetError, match=r"calib_cam_to_cam.txt: no 'P_rect_03'"):
        camera_intrinsics(date, camera=3)
    with pytest.raises(DatasetError, match=r"calib_velo_to_cam.txt: calibration file not found"):
        velo_to_image(date, 2)
    (date / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(DatasetError, match=r"calib_velo_to_cam.txt: no 'T'"):
        velo_to_image(date, 2)
