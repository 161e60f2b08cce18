"""Official METER checkpoints: variant and data set read from the file, NYU intrinsics and PNG scale recorded,
and a clear error (with the import command) where a seldepth model file is expected."""

import pickle
import shutil

import pytest
import torch

from seldepth import load_model
from seldepth.models import create_model
from seldepth.models.import_meter import NYU_CAMERA, dataset_from_name, import_meter, infer_variant
from seldepth.models.model_file import read_metadata
from seldepth.prediction.outputs import png_scale_of
from seldepth.prediction.pointcloud import intrinsics_from_metadata


@pytest.fixture(scope="module")
def official(shared):
    return shared / "weights" / "meter"


def test_nyu_import_infers_variant_and_dataset_and_records_intrinsics(official, tmp_path):
    out = tmp_path / "nyu.safetensors"
    model = import_meter(official / "build_model_best_nyu_xxs", out=out)
    prov = model.metadata["provenance"]
    assert (prov["variant"], prov["variant_from"]) == ("xxs", "tensor shapes")
    assert (prov["dataset"], prov["dataset_from"]) == ("nyu", "file name")
    assert prov["png_scale"] == 1000.0
    meta = read_metadata(out)
    assert meta["architecture"] == "meter_xxs"
    assert meta["provenance"]["png_scale"] == 1000.0
    assert meta["intrinsics"] == {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362, "height": 480, "width": 640}
    loaded = load_model(out)
    assert png_scale_of(loaded) == 1000.0
    K = intrinsics_from_metadata(loaded.metadata)  # what predict's point clouds read: no camera arguments needed
    assert K.at(480, 640) == (518.8579, 519.4696, 325.5824, 253.7362)
    fx, fy, cx, cy = K.at(240, 320)
    assert (fx, fy) == pytest.approx((259.42895, 259.7348))
    assert (cx, cy) == pytest.approx(((325.5824 + 0.5) / 2 - 0.5, (253.7362 + 0.5) / 2 - 0.5))
    # The same weights as with the variant and data set given.
    explicit = import_meter(official / "build_model_best_nyu_xxs", "xxs", "nyu")
    for key, value in explicit.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_nyu_camera_matches_the_nyu_reader():
    from seldepth.data.nyu_densedepth import NYU_INTRINSICS, NYU_SIZE

    assert (NYU_CAMERA["fx"], NYU_CAMERA["fy"], NYU_CAMERA["cx"], NYU_CAMERA["cy"]) == NYU_INTRINSICS
    assert (NYU_CAMERA["height"], NYU_CAMERA["width"]) == NYU_SIZE


def test_kitti_import_records_png_scale_256_and_no_intrinsics(official, tmp_path):
    out = tmp_path / "kitti.safetensors"
    import_meter(official / "build_model_best_kitti_xxs", out=out)
    meta = read_metadata(out)
    assert meta["provenance"]["dataset"] == "kitti" and meta["provenance"]["dataset_from"] == "file name"
    assert meta["preprocessing"]["input_size"] == [192, 640]
    assert meta["provenance"]["png_scale"] == 256.0
    assert meta["provenance"]["intrinsics"] is None
    assert "give the intrinsics" in meta["provenance"]["intrinsics_note"]
    assert "intrinsics" not in meta
    model = load_model(out)
    assert intrinsics_from_metadata(model.metadata) is None
    assert png_scale_of(model) == 256.0


def test_dataset_from_the_file_name():
    assert dataset_from_name("/w/build_model_best_nyu_xxs") == "nyu"
    assert dataset_from_name("build_model_best_kitti_xxs") == "kitti"
    assert dataset_from_name("METER-KITTI.pth") == "kitti"
    assert dataset_from_name("meter_xxs.pth") is None
    assert dataset_from_name("nyu_and_kitti.pth") is None  # says both: not a clue
    assert dataset_from_name("kittinyu.pth") is None


def test_a_name_without_the_data_set_needs_dataset(official, tmp_path):
    renamed = tmp_path / "meter_weights.pth"
    shutil.copy(official / "build_model_best_kitti_xxs", renamed)
    with pytest.raises(ValueError, match=r"does not say which data set .*; give dataset: nyu or kitti$"):
        import_meter(renamed)
    model = import_meter(renamed, dataset="kitti")
    assert model.metadata["provenance"]["dataset_from"] == "given"
    assert model.preprocessing.input_size == (192, 640)


def test_a_dataset_contradicting_the_file_name_stops(official):
    with pytest.raises(ValueError, match="the file name says these are the official KITTI weights, but dataset 'nyu' "
                                         "was given; give dataset 'kitti'"):
        import_meter(official / "build_model_best_kitti_xxs", dataset="nyu")


def test_a_variant_contradicting_the_shapes_says_what_the_file_is(official):
    with pytest.raises(ValueError) as info:
        import_meter(official / "build_model_best_nyu_xxs", variant="s")
    msg = str(info.value)
    assert "these weights look like METER-xxs (every tensor shape fits meter_xxs), not variant 's'" in msg
    assert "wrong shapes" in msg


@pytest.mark.parametrize("variant", ["xxs", "xs", "s"])
def test_variant_is_inferred_from_tensor_shapes(variant):
    state = create_model(f"meter_{variant}").state_dict()
    assert infer_variant(state) == variant
    state["decoder.output.weight"] = torch.zeros(1, 7, 1, 1)
    assert infer_variant(state) is None


def test_unknown_variant_and_dataset_are_rejected(official):
    with pytest.raises(ValueError, match="unknown METER variant 'xl'"):
        import_meter(official / "build_model_best_nyu_xxs", variant="xl")
    with pytest.raises(ValueError, match="unknown dataset 'make3d'"):
        import_meter(official / "build_model_best_nyu_xxs", dataset="make3d")


@pytest.mark.parametrize("name", ["build_model_best_nyu_xxs", "official.pth"])
def test_load_model_names_an_official_checkpoint_and_the_import_command(official, tmp_path, name):
    path = tmp_path / name
    shutil.copy(official / "build_model_best_nyu_xxs", path)
    for read in (load_model, read_metadata, lambda p: load_model(p, weights=False)):
        with pytest.raises(ValueError) as info:
            read(path)
        msg = str(info.value)
        assert "an official METER checkpoint" in msg
        assert f"`seldepth import-meter {path} --out {path.stem}.safetensors`" in msg
        assert "header too large" not in msg


def test_load_model_recognises_a_wrapped_official_state_dict_and_other_checkpoints(official, tmp_path):
    state = torch.load(official / "build_model_best_nyu_xxs", weights_only=True, map_location="cpu")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "wrapped.pt")
    with pytest.raises(ValueError, match="an official METER checkpoint"):
        load_model(tmp_path / "wrapped.pt")
    torch.save({"conv.weight": torch.zeros(2, 2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: a PyTorch checkpoint, not a seldepth model file"):
        load_model(tmp_path / "other.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_load_model_never_unpickles_code(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"encoder.mv2.0.conv.0.weight": _Evil()}, f)
    with pytest.raises(ValueError, match="evil.pth: not a readable safetensors model file"):
        load_model(path)
    assert "this must never run" not in capsys.readouterr().out


def test_point_clouds_need_no_camera_arguments_with_the_imported_nyu_model(meter_nyu_file, nyu_sample, tmp_path):
    from seldepth.prediction import predict_paths

    image = nyu_sample / "nyu2_test/00000_colors.png"
    summary = predict_paths(meter_nyu_file, [image], tmp_path, ply=True, progress=False)
    ply = tmp_path / "00000_colors.ply"
    assert ply in summary.written
    header = ply.read_bytes()[:400].split(b"end_header")[0].decode()
    assert "element vertex 307200" in header  # one point per pixel of the 640x480 image
