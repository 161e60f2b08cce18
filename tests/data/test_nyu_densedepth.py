import shutil
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.nyu_densedepth import NYUDenseDepth, nyu_intrinsics
from seldepth.data.spec import open_dataset


def test_reads_the_shared_sample(nyu_sample):
    ds = NYUDenseDepth(nyu_sample)
    assert len(ds) == 10
    s = ds[0]
    assert s["image"].shape == (3, 480, 640) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    raw = np.asarray(Image.open(nyu_sample / "nyu2_test/00000_depth.png"))
    assert s["depth"].shape == (1, 480, 640)
    assert s["depth"][0, 240, 320].item() == pytest.approx(raw[240, 320] / 1000.0)
    assert s["valid"].all()  # the test set is dense
    torch.testing.assert_close(s["K"], nyu_intrinsics(480, 640))
    assert s["meta"]["rgb"].endswith("00000_colors.png")


def test_reads_from_zip_like_nyu_data_zip(nyu_sample, tmp_path):
    archive = tmp_path / "nyu_data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        lines = []
        for rgb, depth in (l.split(",") for l in (nyu_sample / "nyu2_test.csv").read_text().split()):
            z.write(nyu_sample / "nyu2_test" / rgb, f"data/nyu2_test/{rgb}")
            z.write(nyu_sample / "nyu2_test" / depth, f"data/nyu2_test/{depth}")
            lines.append(f"data/nyu2_test/{rgb},data/nyu2_test/{depth}")
        z.writestr("data/nyu2_test.csv", "\n".join(lines))
    from_zip = NYUDenseDepth(archive, split="test")
    from_dir = NYUDenseDepth(nyu_sample)
    assert len(from_zip) == 10
    torch.testing.assert_close(from_zip[3]["depth"], from_dir[3]["depth"])
    torch.testing.assert_close(from_zip[3]["image"], from_dir[3]["image"])


def test_8bit_training_depth_is_scaled_to_10_m(tmp_path):
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "a_colors.png")
    Image.fromarray(np.full((4, 6), 51, np.uint8)).save(tmp_path / "a_depth.png")
    (tmp_path / "nyu2_train.csv").write_text("a_colors.png,a_depth.png\n")
    d = NYUDenseDepth(tmp_path, split="train")[0]["depth"]
    assert torch.allclose(d, torch.full_like(d, 2.0))


def _copy_sample(nyu_sample, tmp_path):
    root = tmp_path / "nyu"
    shutil.copytree(nyu_sample, root)
    return root


def test_missing_file_named_with_csv_line(nyu_sample, tmp_path):
    root = _copy_sample(nyu_sample, tmp_path)
    (root / "nyu2_test" / "00008_depth.png").unlink()
    with pytest.raises(DatasetError, match=r"line 3: file '00008_depth.png' not found"):
        NYUDenseDepth(root)


def test_size_mismatch_names_both_files(nyu_sample, tmp_path):
    root = _copy_sample(nyu_sample, tmp_path)
    Image.open(root / "nyu2_test/00000_depth.png").resize((320, 240)).save(root / "nyu2_test/00000_depth.png")
    with pytest.raises(DatasetError, match=r"00000_colors.png is \(480, 640\) but depth .*00000_depth.png is \(240, 320\)"):
        NYUDenseDepth(root)[0]


def test_not_an_image_is_named(nyu_sample, tmp_path):
    root = _copy_sample(nyu_sample, tmp_path)
    (root / "nyu2_test/00001_colors.png").write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match=r"00001_colors.png: not a readable image"):
        NYUDenseDepth(root)[1]


def test_missing_csv_lists_what_was_looked_for(tmp_path):
    with pytest.raises(DatasetError, match="nyu2_test.csv"):
        NYUDenseDepth(tmp_path)


def test_bad_data_spec():
    with pytest.raises(DatasetError, match="KIND:PATH"):
        open_dataset("kittii:/tmp")
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset("nyu:/no/such/folder")
