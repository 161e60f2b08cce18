"""Metric3D annotation JSON and folder-of-pairs readers, on the shared samples and on written files."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from seldepth.data.annotations import AnnotatedPairs
from seldepth.data.errors import DatasetError
from seldepth.data.folder import FolderPairs


def _png16(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint16)).save(path)


def _rgb(path, h, w, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


def test_kitti_annotated_values_and_intrinsics(shared):
    root = shared / "data/kitti_sample/annotated"
    ds = AnnotatedPairs(root)
    entries = json.loads((root / "test_annotations.json").read_text())["files"]
    assert len(ds) == len(entries) == 3
    for i, entry in enumerate(entries):
        s = ds[i]
        raw = np.asarray(Image.open(root / "depth" / entry["depth"].split("/")[-1])).astype(np.float64)
        ys, xs = np.nonzero(raw)
        for y, x in list(zip(ys, xs))[::5000]:
            assert s["depth"][0, y, x].item() == pytest.approx(raw[y, x] / 256.0)
        assert not s["valid"][0, 0, 0]  # the sky row has no LiDAR return
        fx, fy, cx, cy = entry["cam_in"]
        assert s["K"][0, 0] == pytest.approx(fx) and s["K"][1, 2] == pytest.approx(cy) and s["K"][0, 2] == pytest.approx(cx)
        assert s["image"].shape == (3, 375, 1242)
        assert s["meta"]["rgb"].endswith(entry["rgb"].split("/")[-1])


def test_nyu_metric3d_sample_is_millimetres(shared):
    root = shared / "data/nyu_sync_sample/metric3d"
    s = AnnotatedPairs(root)[0]
    raw = np.asarray(Image.open(root / "depth/sync_depth_00000.png")).astype(np.float64)
    y, x = np.argwhere(raw > 0)[1234]
    assert s["depth"][0, y, x].item() == pytest.approx(raw[y, x] / 1000.0)
    assert s["valid"].float().mean().item() == pytest.approx((raw > 0).mean())
    assert s["K"][0, 0].item() == pytest.approx(518.8579)


def test_annotation_missing_file_stop_and_skip(shared, tmp_path):
    root = tmp_path / "ann"
    shutil.copytree(shared / "data/kitti_sample/annotated", root)
    (root / "depth/0000000100.png").unlink()
    with pytest.raises(DatasetError, match=r"test_annotations.json, entry 1: file 'data/kitti_demo/depth/0000000100.png' not found"):
        AnnotatedPairs(root)
    ds = AnnotatedPairs(root, on_error="skip")
    assert len(ds) == 2 and len(ds.skipped) == 1 and "0000000100.png" in ds.skipped[0]


def test_annotation_malformed_entry(tmp_path):
    (tmp_path / "test_annotations.json").write_text(json.dumps({"files": [{"rgb": "a.png", "depth": "b.png"}]}))
    with pytest.raises(DatasetError, match="entry 0: expected rgb, depth, depth_scale and cam_in"):
        AnnotatedPairs(tmp_path)
    (tmp_path / "test_annotations.json").write_text("[1, 2")
    with pytest.raises(DatasetError, match="test_annotations.json"):
        AnnotatedPairs(tmp_path)


def test_folder_pairs_by_name_with_scale_and_intrinsics(tmp_path):
    # rgb/rgb_000N.jpg <-> depth/sync_depth_000N.png; the depth scale is the folder's option.
    for n in range(3):
        _rgb(tmp_path / "rgb" / f"rgb_{n:04d}.png", 4, 5, value=10 * n)
        d = np.zeros((4, 5))
        d[1, 2] = 1500 + n
        _png16(tmp_path / "depth" / f"sync_depth_{n:04d}.png", d)
    np.savetxt(tmp_path / "K.txt", np.array([[400.0, 0, 2.0], [0, 410.0, 1.5], [0, 0, 1]]))
    ds = FolderPairs(tmp_path, scale=1000)
    assert len(ds) == 3
    for n in range(3):
        s = ds[n]
        assert s["meta"]["rgb"].endswith(f"rgb_{n:04d}.png") and s["meta"]["depth"].endswith(f"sync_depth_{n:04d}.png")
        assert s["depth"][0, 1, 2].item() == pytest.approx((1500 + n) / 1000)
        assert int(s["valid"].sum()) == 1
        assert s["image"][0, 0, 0].item() == pytest.approx(10 * n / 255)
    assert ds[0]["K"][1, 1].item() == pytest.approx(410.0)
    with pytest.raises(DatasetError, match=r"scale: the depth PNGs need a depth scale"):
        FolderPairs(tmp_path)


def test_folder_pairs_npy_depth_suffix_names_and_default_intrinsics(tmp_path):
    _rgb(tmp_path / "0001_color.png", 3, 4)
    np.save(tmp_path / "0001_depth.npy", np.full((3, 4), 2.5, np.float32))
    s = FolderPairs(tmp_path)[0]  # .npy depth is metres: no scale needed
    assert s["depth"][0, 2, 3].item() == pytest.approx(2.5)
    assert s["K"][0, 0].item() == pytest.approx(4.0) and s["K"][0, 2].item() == pytest.approx(1.5)
    s = FolderPairs(tmp_path, fx=100, fy=101, cx=1, cy=2)[0]
    assert s["K"][1, 1].item() == pytest.approx(101.0)
    with pytest.raises(DatasetError, match="give all four"):
        FolderPairs(tmp_path, fx=100)


def test_folder_unmatched_and_ambiguous(tmp_path):
    _rgb(tmp_path / "a_rgb.png", 3, 4)
    _png16(tmp_path / "a_depth.png", np.ones((3, 4)))
    _rgb(tmp_path / "b_rgb.png", 3, 4)
    with pytest.raises(DatasetError, match=r"b_rgb.png: no depth map matches it by name"):
        FolderPairs(tmp_path, scale=1000)
    ds = FolderPairs(tmp_path, scale=1000, on_error="skip")
    assert len(ds) == 1 and "b_rgb.png" in ds.skipped[0]
    _rgb(tmp_path / "image" / "a.png", 3, 4)
    with pytest.raises(DatasetError, match="both match the name key 'a'"):
        FolderPairs(tmp_path, scale=1000)


def test_folder_probe_is_bounded(tmp_path):
    assert not FolderPairs.probe(tmp_path)
    _rgb(tmp_path / "x" / "img.png", 2, 2)
    assert not FolderPairs.probe(tmp_path)
    _png16(tmp_path / "x" / "depth.png", np.ones((2, 2)))
    assert FolderPairs.probe(tmp_path)
    assert not FolderPairs.probe(tmp_path / "x" / "img.png")
