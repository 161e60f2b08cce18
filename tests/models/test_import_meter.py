import pickle

import numpy as np
import pytest
import torch

from seldepth import load_model
from seldepth.cli import main
from seldepth.models.import_meter import import_meter
from seldepth.models.model_file import read_metadata


@pytest.mark.parametrize("dataset", ["nyu", "kitti"])
def test_import_reproduces_golden_outputs_in_metres(shared, tmp_path, dataset):
    out = tmp_path / f"{dataset}.safetensors"
    rc = main(["import-meter", str(shared / "weights/meter" / f"build_model_best_{dataset}_xxs"),
               "--variant", "xxs", "--dataset", dataset, "--out", str(out)])
    assert rc == 0
    golden = np.load(shared / "weights/meter/golden_xxs.npz")
    model = load_model(out)
    with torch.no_grad():
        pred = model(torch.from_numpy(golden[f"{dataset}_input"])).numpy()
    unit = {"nyu": 0.01, "kitti": 0.1}[dataset]  # official outputs: NYU centimetres, KITTI decimetres (measured)
    expected_m = golden[f"{dataset}_output"] * unit
    assert pred.shape == expected_m.shape
    assert np.abs(pred - expected_m).max() <= 1e-5 * unit / 0.01


def test_model_file_metadata(shared, meter_nyu_file):
    meta = read_metadata(meter_nyu_file)
    assert meta["architecture"] == "meter_xxs"
    assert meta["output_unit"] == "m"
    assert meta["preprocessing"]["input_size"] == [192, 256]
    assert meta["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert meta["preprocessing"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert meta["provenance"]["sha256"].startswith("327cddf3")
    assert meta["provenance"]["sha256"].endswith("bb53")
    assert meta["config"]["channels"][-1] == 160


def test_preprocessing_matches_golden_inputs(shared, meter_nyu_file):
    # The last two golden inputs are the first two NYU sample images, preprocessed officially.
    from seldepth.data.images import read_rgb

    golden = np.load(shared / "weights/meter/golden_xxs.npz")["nyu_input"]
    model = load_model(meter_nyu_file)
    for i, name in enumerate(["00000", "00001"]):
        rgb = read_rgb(shared / "data/nyu_test_sample/nyu2_test" / f"{name}_colors.png")
        x = model.preprocessing(rgb[None])[0].numpy()
        assert np.abs(x - golden[2 + i]).max() < 1e-5


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_import_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"encoder.conv1.0.depthwise.weight": _Evil()}, f)
    with pytest.raises(ValueError, match="not a plain-tensor checkpoint"):
        import_meter(path, "xxs", "nyu")


def test_import_lists_missing_unexpected_and_misshaped_keys(shared, tmp_path):
    state = torch.load(shared / "weights/meter/build_model_best_nyu_xxs", weights_only=True, map_location="cpu")
    del state["decoder.conv2d_out.weight"]
    state["decoder.extra.weight"] = torch.zeros(1)
    state["decoder.conv2d_in.weight"] = torch.zeros(32, 160, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        import_meter(path, "xxs", "nyu")
    msg = str(info.value)
    assert "missing keys (1): decoder.output.weight" in msg
    assert "unexpected keys (1): decoder.extra.weight" in msg
    assert "decoder.input.weight: file (32, 160, 1, 1) vs model (64, 160, 1, 1)" in msg


def test_wrong_variant_is_rejected_with_shapes(shared):
    with pytest.raises(ValueError, match="wrong shapes"):
        import_meter(shared / "weights/meter/build_model_best_nyu_xxs", "xs", "nyu")


def test_load_model_rejects_non_model_files(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_bytes(b"hello")
    with pytest.raises(ValueError, match="notes.safetensors"):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors")


def test_official_kitti_checkpoint_predicts_metric_depth(shared, tmp_path, capsys):
    """The measured KITTI preprocessing (no normalisation, plain bilinear 192x640) and unit (dm) give metric depth."""
    import json

    from seldepth.data.spec import open_dataset
    from seldepth.inference import predict_depth
    from seldepth.evaluation.protocol import crop_mask

    out = tmp_path / "kitti.safetensors"
    assert main(["import-meter", str(shared / "weights/meter/build_model_best_kitti_xxs"), "--dataset", "kitti",
                 "--out", str(out)]) == 0
    meta = read_metadata(out)
    assert meta["preprocessing"] == {"input_size": [192, 640], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                                     "resize": "bilinear"}
    assert "decimetres" in meta["provenance"]["unit_conversion"] and "characterisation" in meta["provenance"]
    model = load_model(out).eval()
    data = f"kitti:{shared / 'data/kitti_sample/annotated'}"
    for sample in open_dataset(data):
        pred = predict_depth(model, sample["image"][None])[0]
        mask = sample["valid"] & (sample["depth"] < 80) & crop_mask("garg", *sample["depth"].shape[-2:])
        ratio = sample["depth"][mask].median() / pred[mask].median()
        assert 0.95 < ratio.item() < 1.05  # medians agree without any scaling
    assert main(["eval", "--model", str(out), "--data", data, "--protocol", "kitti", "--json", str(tmp_path / "r.json")]) == 0
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert metrics["abs_rel"] < 0.1 and metrics["delta1"] > 0.9
