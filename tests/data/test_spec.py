"""Data spec strings: layout detection on every shared fixture, options, errors, and --on-error."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from seldepth.cli import main
from seldepth.data.errors import DatasetError
from seldepth.data.skipping import SkipBadSamples, skipped_of
from seldepth.data.spec import describe_dataset, open_dataset, parse_spec


@pytest.mark.parametrize("kind, rel, layout, n", [
    ("nyu", "nyu_test_sample", "DenseDepth", 10),
    ("nyu", "nyu_sync_sample/metric3d", "annotation JSON", 3),
    ("nyu", "nyu_sync_sample/unidepth", "folder of image/depth pairs", 1),
    ("kitti", "kitti_sample/annotated", "annotation JSON", 3),
    ("kitti", "kitti_sample/raw_sequence", "KITTI raw", 6),
    ("kitti", "kitti_sample/raw_sequence/kitti_tiny.txt", "KITTI raw", 5),
])
def test_layout_detected_for_every_shared_fixture(shared, kind, rel, layout, n):
    ds = open_dataset(f"{kind}:{shared / 'data' / rel}")
    assert layout in ds.layout and layout in describe_dataset(ds)
    assert len(ds) >= n if rel.endswith("raw_sequence") else len(ds) == n
    s = ds[0]
    assert s["depth"].shape[-2:] == s["image"].shape[-2:] and s["valid"].any()


def test_unidepth_sample_uses_its_intrinsics_file_and_millimetres(shared):
    root = shared / "data/nyu_sync_sample/unidepth"
    s = open_dataset(f"nyu:{root}")[0]
    raw = np.asarray(Image.open(root / "depth.png")).astype(np.float64)
    assert s["depth"][0, 240, 320].item() == pytest.approx(raw[240, 320] / 1000)
    assert torch.allclose(s["K"], torch.from_numpy(np.load(root / "intrinsics.npy")).float())


def test_parse_spec_options():
    spec = parse_spec("kitti:/data/eigen_test.txt?gt_root=/data/gt&crop=kb&scale=256&x=0.5")
    assert spec.kind == "kitti" and spec.path == "/data/eigen_test.txt"
    assert spec.options == {"gt_root": "/data/gt", "crop": "kb", "scale": 256, "x": 0.5}
    with pytest.raises(DatasetError, match="option 'oops' is not NAME=VALUE"):
        parse_spec("nyu:/x?oops")


def test_folder_spec_scale_option(shared):
    root = shared / "data/kitti_sample/annotated"
    s = open_dataset(f"folder:{root}?scale=256")[0]
    raw = np.asarray(Image.open(root / "depth/0000000005.png")).astype(np.float64)
    y, x = np.argwhere(raw > 0)[100]
    assert s["depth"][0, y, x].item() == pytest.approx(raw[y, x] / 256)
    with pytest.raises(DatasetError, match=r"\?scale=1000"):
        open_dataset(f"folder:{root}")


def test_unknown_option_and_no_layout_errors(shared, tmp_path):
    with pytest.raises(DatasetError, match=r"option 'crop' is not known to the DenseDepth .* it accepts split"):
        open_dataset(f"nyu:{shared / 'data/nyu_test_sample'}?crop=kb")
    (tmp_path / "notes.md").write_text("nothing here")
    with pytest.raises(DatasetError, match=r"matches no nyu layout; looked for: NYU Depth v2 labeled .mat.*DenseDepth.*"
                                           r"annotation JSON.*BTS.*folder of image/depth pairs"):
        open_dataset(f"nyu:{tmp_path}")
    with pytest.raises(ValueError, match="--on-error"):
        open_dataset(f"nyu:{shared / 'data/nyu_test_sample'}", on_error="ignore")


def _broken_copy(nyu_sample, tmp_path):
    """The NYU sample with a truncated image (00008) and an all-invalid depth map (00013)."""
    root = tmp_path / "nyu"
    shutil.copytree(nyu_sample, root)
    png = (root / "nyu2_test/00008_colors.png").read_bytes()
    (root / "nyu2_test/00008_colors.png").write_bytes(png[: len(png) // 3])
    Image.fromarray(np.zeros((480, 640), np.uint16)).save(root / "nyu2_test/00013_depth.png")
    return root


def test_eval_stops_on_a_bad_file_or_skips_and_counts(nyu_sample, meter_nyu_file, tmp_path, capsys):
    root = _broken_copy(nyu_sample, tmp_path)
    rc = main(["eval", "--model", str(meter_nyu_file), "--data", f"nyu:{root}"])
    assert rc == 2
    assert "00008_colors.png: not a readable image" in capsys.readouterr().err
    rc = main(["eval", "--model", str(meter_nyu_file), "--data", f"nyu:{root}", "--on-error", "skip",
               "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "layout: DenseDepth" in out
    assert "images: 8" in out
    assert "skipped 2 bad samples (--on-error skip)" in out
    assert "00008_colors.png" in out and "00013_depth.png: the depth map has no valid pixel" in out


def test_skipped_samples_are_counted_through_loader_workers(nyu_sample, tmp_path):
    from seldepth.experiments.demo import ConstantDepth
    from seldepth.evaluation import evaluate
    from seldepth.evaluation.protocol import get_protocol

    ds = open_dataset(f"nyu:{_broken_copy(nyu_sample, tmp_path)}", on_error="skip")
    assert isinstance(ds, SkipBadSamples)
    result = evaluate(ConstantDepth(2.0).eval(), ds, get_protocol("nyu"), batch_size=3, num_workers=1, progress=False)
    assert result["num_images"] == 8
    assert len(skipped_of(ds)) == 2  # recorded in this process although the samples failed in a worker


def test_written_layouts_detected_through_specs(shared, tmp_path):
    """.mat v7.3, .h5 tree, BTS NYU list and a KITTI BTS list with options, each opened from its spec string."""
    import io

    import h5py
    import scipy.io

    # labeled .mat (MATLAB axes as h5py shows them) + splits.mat beside it
    depths = np.stack([np.full((8, 6), 1.0 + n, np.float32) for n in range(3)])
    with h5py.File(tmp_path / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", data=np.zeros((3, 3, 8, 6), np.uint8))
        f.create_dataset("depths", data=depths)
    scipy.io.savemat(tmp_path / "splits.mat", {"testNdxs": np.array([[3]]), "trainNdxs": np.array([[1], [2]])})
    ds = open_dataset(f"nyu:{tmp_path / 'nyu_depth_v2_labeled.mat'}")
    assert "labeled .mat" in ds.layout and len(ds) == 1 and ds[0]["depth"][0, 5, 7].item() == 3.0
    assert len(open_dataset(f"nyu:{tmp_path / 'nyu_depth_v2_labeled.mat'}", split="train")) == 2

    # sparse-to-dense .h5 tree
    h5_root = tmp_path / "nyudepthv2"
    (h5_root / "val/official").mkdir(parents=True)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("rgb", data=np.zeros((3, 4, 5), np.uint8))
        f.create_dataset("depth", data=np.full((4, 5), 2.25, np.float32))
    (h5_root / "val/official/00001.h5").write_bytes(buffer.getvalue())
    ds = open_dataset(f"nyu:{h5_root}")
    assert ".h5" in ds.layout and ds[0]["depth"][0, 3, 4].item() == 2.25

    # BTS sync list over the shared sample, with the data root as an option
    sync = shared / "data/nyu_sync_sample/metric3d"
    listing = tmp_path / "nyudepthv2_test_files_with_gt.txt"
    listing.write_text("rgb/rgb_00050.jpg depth/sync_depth_00050.png 518.8579\n")
    ds = open_dataset(f"nyu:{listing}?root={sync}")
    raw = np.asarray(Image.open(sync / "depth/sync_depth_00050.png")).astype(np.float64)
    assert "BTS" in ds.layout and ds[0]["depth"][0, 200, 300].item() == pytest.approx(raw[200, 300] / 1000)

    # KITTI BTS list: raw frames under root=, annotated GT under gt_root=, KB crop
    drive = "2011_09_26_drive_0001_sync"
    (tmp_path / "raw/2011_09_26" / drive / "image_02/data").mkdir(parents=True)
    Image.fromarray(np.zeros((375, 1242, 3), np.uint8)).save(tmp_path / "raw/2011_09_26" / drive / "image_02/data/0000000005.png")
    gt = np.zeros((375, 1242), np.uint16)
    gt[370, 600] = 2560
    (tmp_path / "gt" / drive / "proj_depth/groundtruth/image_02").mkdir(parents=True)
    Image.fromarray(gt).save(tmp_path / "gt" / drive / "proj_depth/groundtruth/image_02/0000000005.png")
    kitti_list = tmp_path / "eigen_test.txt"
    kitti_list.write_text(f"2011_09_26/{drive}/image_02/data/0000000005.png {drive}/proj_depth/groundtruth/image_02/0000000005.png 721.5377\n")
    ds = open_dataset(f"kitti:{kitti_list}?root={tmp_path / 'raw'}&gt_root={tmp_path / 'gt'}&crop=kb")
    s = ds[0]
    assert "KITTI raw" in ds.layout and s["depth"].shape == (1, 352, 1216)
    assert s["depth"][0, 370 - 23, 600 - 13].item() == 10.0  # KB crop: top 375-352, left (1242-1216)//2


def test_synthetic_default_with_a_seed_is_its_own_cached_set(tmp_path, monkeypatch):
    from seldepth.data.spec import resolve_spec

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path))
    assert resolve_spec("synthetic:default:6:1") == tmp_path / "synthetic-256x192-n6-seed1"
    assert resolve_spec("synthetic:default:6") == tmp_path / "synthetic-256x192-n6-seed0"
    seed0 = open_dataset("synthetic:default:6", "train")
    seed1 = open_dataset("synthetic:default:6:1", "train")
    assert (tmp_path / "synthetic-256x192-n6-seed1" / "dataset.json").is_file()
    assert not torch.equal(seed0[0]["depth"], seed1[0]["depth"])  # other scenes
    # T frames per scene: its own cached set (sequences); T = 1 is the plain set
    assert resolve_spec("synthetic:default:6:1:3") == tmp_path / "synthetic-256x192-n6-seed1-t3"
    assert resolve_spec("synthetic:default:6:1:1") == tmp_path / "synthetic-256x192-n6-seed1"
    for bad in ("synthetic:default:x", "synthetic:default:6:1:2:3", "synthetic:default:0", "synthetic:default:6:-1",
                "synthetic:default:6:1:0"):
        with pytest.raises(DatasetError, match=r"synthetic:default\[:N\[:SEED\[:T\]\]\]"):
            resolve_spec(bad, key="data.path")
