"""Attention maps: the formula by hand, the captured maps against independent hooks, the CLI's files and errors."""

from typing import NamedTuple

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from seldepth.cli import main
from seldepth.models import create_model
from seldepth.models.loading import load_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.report.attention import attention_map, capture_attention

pytestmark = pytest.mark.usefixtures("one_thread")

INPUT_SIZE = (64, 96)


@pytest.fixture
def model_file(tmp_path):
    return save_model_file(create_model("meter_xxs"), tmp_path / "meter_xxs.safetensors", Preprocessing(input_size=INPUT_SIZE))


@pytest.fixture
def image_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "room.png"
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(path)
    return path


def _outputs_of(model, paths, x):
    """The outputs of the modules at ``paths`` in one forward of ``x``, by our own hooks."""
    modules = dict(model.named_modules())
    seen = {}
    handles = [modules[p].register_forward_hook(lambda m, a, out, p=p: seen.__setitem__(p, out)) for p in paths]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_attention_map_by_hand():
    t = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]],
                       [[-3.0, 4.0], [-0.5, -7.0]]]])  # (1, 2, 2, 2)
    assert torch.equal(attention_map(t), torch.tensor([[[4.0, 6.0], [1.0, 7.0]]]))


@pytest.mark.parametrize("shape", [(2, 2, 2), (1, 2, 2, 2, 1)])
def test_attention_map_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match=r"expected a \(B, C, h, w\) activation, got shape"):
        attention_map(torch.zeros(shape))


def test_captured_maps_equal_sum_of_abs_of_module_outputs():
    model = create_model("meter_xxs")
    model.preprocessing = Preprocessing(input_size=INPUT_SIZE)
    model.train()
    image = torch.rand(3, 50, 70)
    result = capture_attention(model, image, "enc_2,decoder.up3")
    assert model.training  # mode restored
    model.eval()
    x = Preprocessing(input_size=INPUT_SIZE)(image[None])
    outputs = _outputs_of(model, ["encoder.blocks.1", "decoder.up3"], x)
    assert list(result.maps) == ["enc_2", "decoder.up3"]
    torch.testing.assert_close(result.maps["enc_2"], outputs["encoder.blocks.1"][0].abs().sum(0))
    torch.testing.assert_close(result.maps["decoder.up3"], outputs["decoder.up3"][0].abs().sum(0))
    # METER pads 96 -> 128 inside forward: the overlay uses only the part of the grid over the image
    assert result.input_size == INPUT_SIZE and result.padded_size == (64, 128)
    h, w = result.maps["enc_2"].shape
    assert result.covering_image("enc_2").shape == (h, w * 96 // 128)


class _Pair(NamedTuple):
    first: torch.Tensor
    second: torch.Tensor


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return _Pair(self.conv(x), -x)


def test_tuple_output_uses_first_tensor():
    model = nn.Sequential(_TwoHeads())
    model.selectivity_layers = {"pair": "0"}
    model.preprocessing = Preprocessing(input_size=None)
    image = torch.rand(3, 8, 10)
    result = capture_attention(model, image, ["pair"])
    x = Preprocessing(input_size=None)(image[None])
    with torch.no_grad():
        expected = model[0].conv(x).abs().sum(1)[0]
    torch.testing.assert_close(result.maps["pair"], expected)


def test_cli_writes_overlays_sheet_and_npz(model_file, image_file, tmp_path, capsys):
    out = tmp_path / "out"
    layers = ["enc_2", "enc_5", "dec_3"]
    assert main(["attention", "--model", str(model_file), "--image", str(image_file), "--layers", ",".join(layers),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = [out / f"room_{n}.png" for n in layers] + [out / "room_sheet.png", out / "room.npz"]
    assert printed == [f"wrote {p}" for p in expected]
    assert sorted(out.iterdir()) == sorted(expected)  # no temporary files left
    for name in layers:
        assert Image.open(out / f"room_{name}.png").size == (60, 40)  # the image's own size
    model = load_model(model_file)
    x = Preprocessing(input_size=INPUT_SIZE)(torch.rand(1, 3, *INPUT_SIZE))
    outputs = _outputs_of(model, [model.selectivity_layers[n] for n in layers], x)
    with np.load(out / "room.npz") as npz:
        assert sorted(npz.files) == sorted(layers)
        for name in layers:
            assert npz[name].shape == tuple(outputs[model.selectivity_layers[name]].shape[-2:])
            assert npz[name].dtype == np.float32 and (npz[name] >= 0).all()


def test_cli_unknown_layer_names_it_and_lists_available(model_file, image_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["attention", "--model", str(model_file), "--image", str(image_file), "--layers", "enc_2,enc_99",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'enc_99'" in err and "available: enc_0, enc_1" in err and "dec_3" in err
    assert not out.exists()


@pytest.mark.parametrize("missing", ["image", "model"])
def test_cli_missing_file_is_named(model_file, image_file, tmp_path, capsys, missing):
    gone = tmp_path / f"no_such_{missing}"
    args = {"model": str(model_file), "image": str(image_file), missing: str(gone)}
    assert main(["attention", "--model", args["model"], "--image", args["image"], "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"--{missing}" in err and str(gone) in err


def test_cli_onnx_model_has_no_layers(image_file, tmp_path, capsys):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read")
    assert main(["attention", "--model", str(onnx), "--image", str(image_file), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "ONNX" in err and str(onnx) in err
