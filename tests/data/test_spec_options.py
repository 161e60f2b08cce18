"""Data spec options checked without reading data (``check_spec``): unknown names, values of the wrong type, an
option given twice; list files with a byte-order mark or not in UTF-8: errors naming the option or the file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.data.kitti import KITTIRaw
from seldepth.data.nyu_sync import NYUSync
from seldepth.data.spec import check_spec, open_dataset, parse_spec
from seldepth.data.subsets import read_selection
from seldepth.prediction.inputs import expand_inputs


@pytest.mark.parametrize("query, message", [
    ("scale=abc", r"option 'scale' expects a finite number, got 'abc'"),
    ("scale=nan", r"option 'scale' expects a finite number, got 'nan'"),
    ("scale=-5", r"option 'scale' must be a positive number, got '-5'"),
    ("fx=x1", r"option 'fx' expects a finite number, got 'x1'"),
    ("scale=1000&scale=256", r"option 'scale' is given twice \('1000' and '256'\)"),
    ("sacle=1000", r"option 'sacle' is not known to the folder of image/depth pairs matched by name reader"),
])
def test_bad_options_are_caught_without_reading_data(pair_folder, query, message):
    spec = f"folder:{pair_folder}?{query}"
    with pytest.raises(DatasetError, match=rf"^data.path: data spec .*{message}"):
        check_spec(spec, key="data.path")
    if "twice" not in query:
        with pytest.raises(DatasetError, match=message):
            open_dataset(spec)


def test_good_options_are_converted_once(pair_folder):
    resolved = check_spec(f"folder:{pair_folder}?scale=1000&fx=5&fy=5&cx=3&cy=2")
    assert resolved.parsed.raw == {"scale": "1000", "fx": "5", "fy": "5", "cx": "3", "cy": "2"}
    sample = open_dataset(f"folder:{pair_folder}?scale=1000")[0]
    assert float(sample["depth"].max()) == pytest.approx(2.0)


def test_default_synthetic_spec_is_checked_without_generating(tmp_path, monkeypatch):
    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    check_spec("synthetic:default:12?max_depth_8bit=10")
    with pytest.raises(DatasetError, match="option 'max_depth_8bit' expects a finite number, got 'ten'"):
        check_spec("synthetic:default:12?max_depth_8bit=ten")
    with pytest.raises(DatasetError, match="option 'scale' is not known"):
        check_spec("synthetic:default:12?scale=1000")
    assert not (tmp_path / "cache").exists()  # nothing generated


def test_duplicate_option_in_parse_spec():
    with pytest.raises(DatasetError, match=r"option 'crop' is given twice"):
        parse_spec("kitti:/x.txt?crop=kb&crop=eigen")


def _nyu_sync_files(root, text_bytes: bytes):
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "rgb_00000.jpg")
    Image.fromarray(np.full((6, 8), 1500, np.uint16)).save(root / "sync_depth_00000.png")
    path = root / "list.txt"
    path.write_bytes(text_bytes)
    return path


def test_list_file_with_a_byte_order_mark(tmp_path):
    path = _nyu_sync_files(tmp_path, "\ufeffrgb_00000.jpg sync_depth_00000.png 518.8579\n".encode("utf-8"))
    ds = NYUSync(path)
    assert len(ds) == 1 and float(ds[0]["depth"].max()) == pytest.approx(1.5)
    assert len(open_dataset(f"nyu:{path}")) == 1  # the probe sees through the mark too


def test_list_file_not_in_utf8_names_the_file(tmp_path):
    path = _nyu_sync_files(tmp_path, "rgb_00000.jpg sync_depth_00000.png 518.8579\n# café\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=rf"{path}: the list file is not UTF-8 text \(byte 0xe9 at line 2\)"):
        NYUSync(path)
    kitti = tmp_path / "eigen_test_files.txt"
    kitti.write_bytes("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\n# é\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=rf"{kitti}: the list file is not UTF-8 text"):
        KITTIRaw(kitti)


def test_prediction_list_and_selection_files(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    listed = tmp_path / "inputs.txt"
    listed.write_bytes("\ufeffa.png\n".encode("utf-8"))
    items, _ = expand_inputs([listed])
    assert [it.path for it in items] == [tmp_path / "a.png"]  # the mark is not part of the first path
    listed.write_bytes("a.png\n# \xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"{listed}: the list file is not UTF-8 text"):
        expand_inputs([listed])
    chosen = tmp_path / "chosen.txt"
    chosen.write_bytes("\ufeff3\ta.png\n".encode("utf-8"))
    assert read_selection(chosen) == [3]
    chosen.write_bytes(b"3\t\xe9.png\n")
    with pytest.raises(ValueError, match=rf"data.train_subset: {chosen}: the selection file is not UTF-8 text"):
        read_selection(chosen)
