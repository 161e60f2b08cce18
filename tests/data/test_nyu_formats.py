"""The other NYU Depth v2 layouts: the official labeled .mat, BTS sync lists, sparse-to-dense .h5 files."""

import io
import pickle
import random

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.nyu_densedepth import nyu_intrinsics
from seldepth.data.nyu_h5 import NYUH5, read_h5_pair
from seldepth.data.nyu_labeled import NYULabeled
from seldepth.data.nyu_sync import NYUSync

# --- the official labeled .mat -------------------------------------------------------------------

N, H, W = 5, 6, 8


def _rgb_value(n, c, row, col):
    return n * 40 + c * 7 + col * 3 + row  # differs from its transpose wherever row != col


def _depth_value(n, row, col):
    return 1.0 + n + 0.1 * row + 0.01 * col


def _write_labeled(path, keys=("images", "depths", "labels")):
    """A tiny nyu_depth_v2_labeled.mat, with MATLAB's axes as h5py shows them: (N, C, W, H), (N, W, H)."""
    n, c, w, h = np.meshgrid(np.arange(N), np.arange(3), np.arange(W), np.arange(H), indexing="ij")
    arrays = {"images": _rgb_value(n, c, h, w).astype(np.uint8),
              "depths": _depth_value(n[:, 0], h[:, 0], w[:, 0]).astype(np.float32),
              "labels": (n[:, 0] * 100 + w[:, 0] * 10 + h[:, 0]).astype(np.uint16)}
    with h5py.File(path, "w") as f:
        for key in keys:
            f.create_dataset(key, data=arrays[key])
    return path


@pytest.fixture
def labeled(tmp_path):
    mat = _write_labeled(tmp_path / "nyu_depth_v2_labeled.mat")
    scipy.io.savemat(tmp_path / "splits.mat", {"testNdxs": np.array([[2], [4], [5]], np.float64),
                                               "trainNdxs": np.array([[1], [3]], np.float64)})
    return mat


def test_labeled_test_split_values_and_order(labeled):
    ds = NYULabeled(labeled)
    assert NYULabeled.probe(labeled) and not NYULabeled.probe(labeled.parent)
    assert len(ds) == 3 and len(NYULabeled(labeled, split="train")) == 2 and len(NYULabeled(labeled, split="all")) == 5
    s = ds[0]
    assert s["meta"]["mat_index"] == 2 and s["meta"]["index"] == 0  # testNdxs(1) = 2, 1-based
    assert s["image"].shape == (3, H, W) and s["depth"].shape == (1, H, W)
    for row, col in [(0, 0), (1, 6), (5, 2), (4, 7)]:
        assert s["depth"][0, row, col].item() == pytest.approx(_depth_value(1, row, col), abs=1e-6)
        for c in range(3):
            assert s["image"][c, row, col].item() == pytest.approx(_rgb_value(1, c, row, col) / 255.0)
    assert s["valid"].all()
    torch.testing.assert_close(s["K"], nyu_intrinsics(H, W))
    last = ds[2]
    assert last["meta"]["mat_index"] == 5
    assert last["depth"][0, 3, 5].item() == pytest.approx(_depth_value(4, 3, 5), abs=1e-6)


def test_labeled_semantics_and_pickling(labeled):
    ds = NYULabeled(labeled, split="train", semantics=True)
    first = ds[1]  # opens the file in this process
    assert first["meta"]["mat_index"] == 3
    assert first["semantics"].shape == (H, W) and first["semantics"][4, 7].item() == 2 * 100 + 7 * 10 + 4
    again = pickle.loads(pickle.dumps(ds))
    assert again._h5 is None
    torch.testing.assert_close(again[1]["depth"], first["depth"])
    ds.close()


def test_labeled_text_index_file(labeled, tmp_path):
    (tmp_path / "mine.txt").write_text("# my split\n5\n\n1\n")
    ds = NYULabeled(labeled, split="test", splits=tmp_path / "mine.txt")
    assert [ds[i]["meta"]["mat_index"] for i in range(len(ds))] == [5, 1]
    assert ds[1]["depth"][0, 2, 3].item() == pytest.approx(_depth_value(0, 2, 3), abs=1e-6)

    (tmp_path / "outside.txt").write_text("2\n9\n")
    with pytest.raises(DatasetError, match=r"outside.txt, line 2.*9"):
        NYULabeled(labeled, splits=tmp_path / "outside.txt")
    skipping = NYULabeled(labeled, splits=tmp_path / "outside.txt", on_error="skip")
    assert len(skipping) == 1 and "line 2" in skipping.skipped[0]

    (tmp_path / "bad.txt").write_text("2\nthree\n")
    with pytest.raises(DatasetError, match=r"bad.txt, line 2"):
        NYULabeled(labeled, splits=tmp_path / "bad.txt")


def test_labeled_errors(labeled, tmp_path):
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        NYULabeled(labeled, split="val")
    (tmp_path / "splits.mat").unlink()
    with pytest.raises(DatasetError, match="splits.mat"):
        NYULabeled(labeled)  # says where it looked
    assert len(NYULabeled(labeled, split="all")) == N  # no split file needed

    no_depth = _write_labeled(tmp_path / "no_depth.mat", keys=("images",))
    with pytest.raises(DatasetError, match=r"no_depth.mat.*'depths'"):
        NYULabeled(no_depth, split="all")
    no_labels = _write_labeled(tmp_path / "no_labels.mat", keys=("images", "depths"))
    with pytest.raises(DatasetError, match=r"no_labels.mat.*'labels'"):
        NYULabeled(no_labels, split="all", semantics=True)
    scipy.io.savemat(tmp_path / "wrong_keys.mat", {"testIdx": np.array([[1]])})
    with pytest.raises(DatasetError, match=r"wrong_keys.mat.*'testNdxs'"):
        NYULabeled(labeled, splits=tmp_path / "wrong_keys.mat")

    with h5py.File(tmp_path / "flat.mat", "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3, 8, 6), np.uint8))
        f.create_dataset("depths", data=np.ones((2, 6, 8), np.float32))  # (N, H, W): not MATLAB's order
    with pytest.raises(DatasetError, match=r"'depths' has shape"):
        NYULabeled(tmp_path / "flat.mat", split="all")

    scipy.io.savemat(tmp_path / "v5.mat", {"depths": np.ones((2, 2))})
    with pytest.raises(DatasetError, match=r"v5.mat: not a readable MATLAB v7.3"):
        NYULabeled(tmp_path / "v5.mat", split="all")


# --- the BTS sync layout ------------------------------------------------------------------------

FOCAL = 518.8579


@pytest.fixture(scope="module")
def sync_root(shared):
    return shared / "data" / "nyu_sync_sample" / "metric3d"


def _line(i, focal=FOCAL, slash=""):
    return f"{slash}rgb/rgb_{i:05d}.jpg {slash}depth/sync_depth_{i:05d}.png {focal}"


def test_sync_list_values_holes_and_focal(sync_root, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([_line(0), _line(50, slash="/"), _line(100)]) + "\n")
    assert NYUSync.probe(listing)
    ds = NYUSync(listing, root=sync_root)
    assert len(ds) == 3
    s = ds[1]
    raw = np.asarray(Image.open(sync_root / "depth" / "sync_depth_00050.png"))
    assert raw.dtype == np.uint16
    depth = s["depth"][0].numpy()
    for row, col in [(240, 320), (100, 500), (400, 60)]:
        assert depth[row, col] == pytest.approx(raw[row, col] / 1000.0)
    holes = raw == 0
    assert holes.any() and (~holes).any()
    assert not s["valid"][0].numpy()[holes].any() and s["valid"][0].numpy()[~holes].all()
    assert (depth[holes] == 0).all()
    assert s["image"].shape == (3, 480, 640)
    assert s["K"][0, 0].item() == pytest.approx(FOCAL) and s["K"][1, 1].item() == pytest.approx(FOCAL)
    torch.testing.assert_close(s["K"][:2, 2], nyu_intrinsics(480, 640)[:2, 2])
    assert s["meta"]["rgb"].endswith("rgb_00050.jpg") and s["meta"]["line"] == 2


def test_sync_bad_lines_name_the_line(sync_root, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{_line(0)}\nrgb/rgb_00050.jpg depth/sync_depth_00050.png\n")
    with pytest.raises(DatasetError, match=r"list.txt, line 2: expected 3 columns"):
        NYUSync(listing, root=sync_root)
    listing.write_text(f"{_line(0)}\n\n{_line(50, focal='f=518')}\n")
    with pytest.raises(DatasetError, match=r"list.txt, line 3: the focal"):
        NYUSync(listing, root=sync_root)
    assert not NYUSync.probe(tmp_path / "nothing.txt")
    (tmp_path / "two.txt").write_text("a.jpg b.png\n")
    assert not NYUSync.probe(tmp_path / "two.txt")


def test_sync_missing_file_stop_or_skip(sync_root, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{_line(0)}\n{_line(7)}\n{_line(100)}\n")
    with pytest.raises(DatasetError, match=r"line 2: file 'rgb/rgb_00007.jpg' not found"):
        NYUSync(listing, root=sync_root)
    ds = NYUSync(listing, root=sync_root, on_error="skip")
    assert len(ds) == 2 and len(ds.skipped) == 1 and "line 2" in ds.skipped[0]
    assert ds[1]["meta"]["rgb"].endswith("rgb_00100.jpg")


def test_sync_folder_split_and_default_root(sync_root, tmp_path):
    (tmp_path / "rgb").symlink_to(sync_root / "rgb")
    (tmp_path / "depth").symlink_to(sync_root / "depth")
    (tmp_path / "nyudepthv2_train_files_with_gt.txt").write_text(f"{_line(0, slash='/')}\n{_line(50, slash='/')}\n")
    (tmp_path / "nyudepthv2_test_files_with_gt.txt").write_text(f"{_line(100)}\n")
    assert NYUSync.probe(tmp_path)
    train = NYUSync(tmp_path, split="train")  # root: the list's folder
    assert len(train) == 2 and train.list_path.name == "nyudepthv2_train_files_with_gt.txt"
    test = NYUSync(tmp_path)
    assert len(test) == 1 and test[0]["meta"]["rgb"].endswith("rgb_00100.jpg")
    with pytest.raises(DatasetError, match=r"\*val\*\.txt"):
        NYUSync(tmp_path, split="val")


# --- the sparse-to-dense .h5 layout -------------------------------------------------------------

HH, WW = 4, 5


def _h5_bytes(frame_id, keys=("rgb", "depth")):
    c, r, q = np.meshgrid(np.arange(3), np.arange(HH), np.arange(WW), indexing="ij")
    arrays = {"rgb": (c * 50 + r * 10 + q + frame_id).astype(np.uint8),
              "depth": (1.0 + r[0] + 0.1 * q[0] + frame_id).astype(np.float32)}
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for key in keys:
            f.create_dataset(key, data=arrays[key])
    return buffer.getvalue()


@pytest.fixture
def h5_tree(tmp_path):
    root = tmp_path / "nyudepthv2"
    frames = {"train/sceneA/00001.h5": 1, "train/sceneA/00002.h5": 2, "train/sceneB/00001.h5": 3,
              "val/official/00001.h5": 4}
    for rel, frame_id in frames.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_h5_bytes(frame_id))
    return root


def test_h5_values_and_splits(h5_tree):
    assert NYUH5.probe(h5_tree) and NYUH5.probe(h5_tree.parent) and NYUH5.probe(h5_tree / "val/official/00001.h5")
    test = NYUH5(h5_tree)  # split "test" is the val folder
    assert len(test) == 1 and len(NYUH5(h5_tree, split="val")) == 1
    assert len(NYUH5(h5_tree, split="train")) == 3 and len(NYUH5(h5_tree, split="all")) == 4
    assert len(NYUH5(h5_tree.parent, split="train")) == 3  # finds nyudepthv2/ below
    s = test[0]
    assert s["image"].shape == (3, HH, WW) and s["depth"].shape == (1, HH, WW)
    for row, col in [(0, 4), (3, 1), (2, 2)]:
        assert s["depth"][0, row, col].item() == pytest.approx(1.0 + row + 0.1 * col + 4, abs=1e-6)
        for c in range(3):
            assert s["image"][c, row, col].item() == pytest.approx((c * 50 + row * 10 + col + 4) / 255.0)
    torch.testing.assert_close(s["K"], nyu_intrinsics(HH, WW))
    train = NYUH5(h5_tree, split="train")
    assert [p.parent.name + "/" + p.name for p in train.files] == ["sceneA/00001.h5", "sceneA/00002.h5", "sceneB/00001.h5"]
    assert train[2]["depth"][0, 1, 1].item() == pytest.approx(1.0 + 1 + 0.1 + 3, abs=1e-6)
    single = NYUH5(h5_tree / "train/sceneA/00002.h5")
    assert len(single) == 1 and single[0]["depth"][0, 0, 0].item() == pytest.approx(3.0)


def test_h5_split_and_file_errors(h5_tree, tmp_path):
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        NYUH5(h5_tree, split="dev")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not NYUH5.probe(empty)
    with pytest.raises(DatasetError, match="no .h5 files"):
        NYUH5(empty)
    bad = h5_tree / "val/official/00002.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(DatasetError, match="00002.h5: not an HDF5 file"):
        NYUH5(h5_tree, split="val")
    ds = NYUH5(h5_tree, split="val", on_error="skip")
    assert len(ds) == 1 and len(ds.skipped) == 1


def test_read_h5_pair_rejects_damage_with_dataset_error(tmp_path):
    good = _h5_bytes(0)
    image, depth = read_h5_pair(good, "good.h5")
    assert image.shape == (3, HH, WW) and depth.shape == (1, HH, WW)
    with pytest.raises(DatasetError, match=r"frame.h5: no 'depth'"):
        read_h5_pair(_h5_bytes(0, keys=("rgb",)), "frame.h5")
    with pytest.raises(DatasetError, match=r"missing.h5: file not found"):
        read_h5_pair(tmp_path / "missing.h5")
    for cut in (0, 7, 100, len(good) // 2, len(good) - 1):
        with pytest.raises(DatasetError, match="truncated.h5"):
            read_h5_pair(good[:cut], "truncated.h5")
    rng = random.Random(0)
    with pytest.raises(DatasetError):
        read_h5_pair(bytes(rng.randrange(256) for _ in range(3000)), "random.h5")
    for _ in range(200):  # flipped bytes: a value may come back, but only DatasetError may be raised
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            read_h5_pair(bytes(data), "flipped.h5")
        except DatasetError as exc:
            assert "flipped.h5" in str(exc)
