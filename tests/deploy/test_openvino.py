"""OpenVINO IR export (f32, bf16, NNCF int8 with the output stage in FP32), the OpenVINO model wrapper and the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from seldepth.cli import main
from seldepth.data.spec import open_dataset
from seldepth.defaults import MissingExtraError
from seldepth.deploy.onnx_export import ExportError, check_export_args, export_onnx
from seldepth.deploy.openvino_export import export_openvino
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol
from seldepth.models.loading import load_model
from seldepth.models.model_file import read_model_file
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.models.openvino_model import OpenVinoDepthModel, OpenVinoError

ov = pytest.importorskip("openvino")


@pytest.fixture(scope="module")
def meter(meter_nyu_file):
    return load_model(meter_nyu_file)


@pytest.fixture(scope="module")
def nyu(nyu_sample):
    return open_dataset(f"nyu:{nyu_sample}", "test")


@pytest.fixture(scope="module")
def exports(meter, meter_nyu_file, nyu, tmp_path_factory):
    """The checked FP32 ONNX export and its IRs at each precision (int8 calibrated on the 10 NYU images)."""
    root = tmp_path_factory.mktemp("openvino")
    onnx_path = root / "meter.onnx"
    export_onnx(meter, onnx_path, source=meter_nyu_file)
    out = {"onnx": onnx_path}
    for precision in ("f32", "bf16", "int8"):
        path = root / f"meter_{precision}.xml"
        info = export_openvino(onnx_path, path, precision=precision, calibration=nyu if precision == "int8" else None,
                               num_images=len(nyu))
        out[precision] = (path, info)
    return out


@pytest.fixture(scope="module")
def nyu_rmse(exports, nyu):
    protocol = get_protocol("nyu")
    rmse = {}
    for precision in ("f32", "bf16", "int8"):
        model = OpenVinoDepthModel(exports[precision][0], threads=1)
        result = evaluate(model, nyu, protocol, progress=False)
        assert result["num_images"] == len(nyu)
        rmse[precision] = result["metrics"]["rmse"]
    return rmse


def test_f32_equals_torch_on_the_nyu_images(meter, nyu, exports):
    path, info = exports["f32"]
    assert info["max_abs_diff_m"] < 1e-4 and info["ignored"] == [] and info["num_images"] == 0
    model = OpenVinoDepthModel(path, threads=1)
    x = torch.cat([meter.preprocessing(nyu[i]["image"][None].float()) for i in range(len(nyu))])
    with torch.no_grad():
        ref = meter(x)
    out = model(x)  # a fixed batch of 1: run image by image
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == ref.shape == (10, 1, 48, 64)
    assert (out - ref).abs().max().item() < 1e-4  # measured 5.7e-6 m


def test_bf16_and_int8_rmse_close_to_fp32(nyu_rmse):
    # measured on the 10 NYU images: ORT and OpenVINO FP32 0.5604 m; BF16 +0.29%; INT8 +0.36%. Quantising the output
    # stage as well gave +35% (and OpenVINO's default activation ranges, which clip outliers, +9%)
    assert 0.55 < nyu_rmse["f32"] < 0.57
    assert abs(nyu_rmse["bf16"] / nyu_rmse["f32"] - 1) < 0.01
    assert abs(nyu_rmse["int8"] / nyu_rmse["f32"] - 1) < 0.03


def test_int8_keeps_the_output_stage_in_fp32(exports):
    path, info = exports["int8"]
    # the ONNX output stage: the decoder's last skip Concat, the fuse convolutions, their ReLU and the output conv
    assert len(info["ignored"]) == 5 and info["ignored"][0] == "depth" and info["num_images"] == 10
    assert info["mean_abs_diff_m"] < 0.1  # measured 0.056 m (0.33 m with the output stage quantised)
    graph = ov.Core().read_model(str(path))
    ops = {op.get_friendly_name(): op for op in graph.get_ordered_ops()}
    kinds = [op.get_type_name() for op in graph.get_ordered_ops()]
    assert "FakeQuantize" in kinds  # the rest is quantised
    for name in info["ignored"]:
        op = ops[name]
        for inp in op.inputs():
            source = inp.get_source_output().get_node()
            assert source.get_type_name() != "FakeQuantize", (name, source.get_friendly_name())
            if source.get_type_name() == "Constant":  # the convolutions' weights: FP32 constants, not compressed INT8
                assert source.get_output_element_type(0) == ov.Type.f32, name
    assert ops["depth"].get_type_name() == "Convolution"


def test_metadata_round_trip_and_defaults(meter, meter_nyu_file, exports):
    for precision, hint in (("f32", "f32"), ("bf16", "bf16"), ("int8", "f32")):
        model = OpenVinoDepthModel(exports[precision][0], threads=1)
        assert model.metadata["precision"] == precision and model.precision == hint
        assert model.preprocessing == meter.preprocessing and model.name == "meter_xxs"
        assert model.metadata["architecture"] == "meter_xxs" and model.metadata["format"] == "seldepth-openvino-1"
        assert model.metadata["intrinsics"] == meter.metadata["intrinsics"]
        provenance = model.metadata["provenance"]
        assert provenance["sha256"] == meter.metadata["provenance"]["sha256"] and provenance["png_scale"] == 1000.0
        assert provenance["onnx_export"]["source_file"] == str(meter_nyu_file)
        assert provenance["openvino_export"]["precision"] == precision
        assert model.num_parameters() == OnnxDepthModel(exports["onnx"]).num_parameters()  # the FP32 graph's weights
    assert OpenVinoDepthModel(exports["bf16"][0], precision="f32").precision == "f32"
    with pytest.raises(ValueError, match="precision must be one of f32, bf16"):
        OpenVinoDepthModel(exports["f32"][0], precision="fp16")


def test_load_model_and_read_model_file_dispatch_xml(exports, monkeypatch):
    path = exports["f32"][0]
    for model in (load_model(path), read_model_file(path), load_model(str(path), device="auto")):
        assert isinstance(model, OpenVinoDepthModel)
        assert model.eval() is model and model.train() is model and model.to("cpu") is model and not model.training
        assert list(model.parameters()) == [] and list(model.buffers()) == [] and model.size_multiple == 64
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^device 'cuda': .*meter_f32.xml is an OpenVINO model, which seldepth runs "
                                         r"on the CPU only"):
        load_model(path, device="cuda")


def test_fixed_ir_runs_batches_but_only_its_size(exports):
    model = OpenVinoDepthModel(exports["f32"][0], threads=1)
    x = torch.randn(3, 3, 192, 256)
    out = model(x)
    assert out.shape == (3, 1, 48, 64)
    assert torch.equal(out[1:2], model(x[1:2]))  # each image on its own: the output buffer is copied, not shared
    with pytest.raises(ValueError, match="meter_f32.xml was exported for a fixed input of 192x256"):
        model(torch.randn(1, 3, 128, 128))


def test_cli_export_then_eval_and_predict(meter_nyu_file, nyu_sample, tmp_path, capsys):
    out = tmp_path / "m.xml"
    assert main(["export", "--model", str(meter_nyu_file), "--format", "openvino", "--precision", "bf16",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and (tmp_path / "m.bin").is_file() and "precision bf16" in text and "max abs diff" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]  # no temporary file left
    assert OpenVinoDepthModel(out).precision == "bf16"
    assert main(["eval", "--model", str(out), "--data", f"nyu:{nyu_sample}"]) == 0
    assert "rmse" in capsys.readouterr().out
    image = nyu_sample / "nyu2_test" / "00000_colors.png"
    assert main(["predict", str(image), "--model", str(out), "--out", str(tmp_path / "depth"), "--outputs", "npy"]) == 0
    depth = np.load(tmp_path / "depth" / "00000_colors_depth.npy")
    assert depth.shape == (480, 640) and 0.3 < float(np.median(depth)) < 10


def test_missing_openvino_or_nncf_names_the_pip_line(exports, nyu, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(MissingExtraError, match=r"OpenVINO INT8 quantisation.*pip install 'seldepth\[openvino\]'"):
        export_openvino(exports["onnx"], tmp_path / "q.xml", precision="int8", calibration=nyu, num_images=2)
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingExtraError, match=r"'openvino'.*pip install 'seldepth\[openvino\]'"):
        OpenVinoDepthModel(exports["f32"][0])
    with pytest.raises(MissingExtraError, match=r"seldepth\[openvino\]"):
        export_openvino(exports["onnx"], tmp_path / "m.xml")
    assert list(tmp_path.iterdir()) == []


def test_a_compile_failure_is_an_openvino_error_naming_the_file(exports, monkeypatch):
    def fail(self, *args, **kwargs):
        raise RuntimeError("Exception from src/inference/src/cpp/core.cpp: unsupported instruction set")

    monkeypatch.setattr(ov.Core, "compile_model", fail)
    with pytest.raises(OpenVinoError, match=r"meter_bf16.xml: OpenVINO could not compile .* precision bf16 .*unsupported"):
        OpenVinoDepthModel(exports["bf16"][0])
    assert issubclass(OpenVinoError, RuntimeError)


def test_files_that_are_not_seldepth_irs(exports, tmp_path):
    with pytest.raises(FileNotFoundError, match="OpenVINO model not found"):
        OpenVinoDepthModel(tmp_path / "missing.xml")
    import re
    import shutil

    bare = tmp_path / "bare.xml"
    ir = exports["f32"][0]
    bare.write_text(re.sub(r"<seldepth>.*?</seldepth>", "", ir.read_text(), flags=re.S))  # the IR, its metadata cut
    shutil.copy(ir.with_suffix(".bin"), tmp_path / "bare.bin")
    with pytest.raises(ValueError, match=r"bare.xml: .*no seldepth metadata.*seldepth export --format openvino"):
        load_model(bare)
    (tmp_path / "bare.bin").unlink()
    with pytest.raises(FileNotFoundError, match="bare.bin is missing"):
        OpenVinoDepthModel(bare)


def test_an_f32_ir_that_differs_is_not_written(exports, monkeypatch, tmp_path):
    import seldepth.deploy.openvino_export as export

    monkeypatch.setattr(export, "FP32_TOLERANCE_M", 0.0)  # the measured 1e-6 m now fails the check
    with pytest.raises(ExportError, match="differs from ONNX Runtime"):
        export_openvino(exports["onnx"], tmp_path / "bad.xml")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp16"}, "precision must be one of f32, bf16, int8"),
    ({"precision": "int8"}, "calibration: precision int8 needs calibration data"),
    ({"precision": "int8", "calibration": "nyu", "num_images": 0}, "num_images must be an integer >= 1"),
    ({"precision": "int8", "calibration": "nyu", "num_images": 11}, "num_images: asked for 11 calibration images"),
    ({"out": "m.onnx"}, r"out: m.onnx: an OpenVINO IR is an .xml file"),
])
def test_export_argument_errors_before_any_work(kwargs, message, nyu, tmp_path):
    kwargs = dict(kwargs)
    if kwargs.get("calibration") == "nyu":
        kwargs["calibration"] = nyu
    out = kwargs.pop("out", tmp_path / "m.xml")
    with pytest.raises(ExportError, match=message):
        export_openvino(tmp_path / "missing.onnx", out, **kwargs)  # the arguments first: the ONNX file is not read


@pytest.mark.parametrize("args, message", [
    (dict(fmt="openvino", precision="int8"), "--precision int8 needs --calibration"),
    (dict(fmt="openvino", precision="fp16"), "--precision must be one of f32, bf16, int8"),
    (dict(fmt="openvino", int8=True, calibration="nyu:x"), "with --format openvino use --precision int8"),
    (dict(fmt="openvino", out="m.onnx"), "--out m.onnx: an OpenVINO IR is an .xml file"),
    (dict(fmt="onnx", precision="bf16"), "--precision bf16 is for --format openvino"),
    (dict(fmt="tflite"), "unknown export format 'tflite'; available: onnx, openvino"),
])
def test_check_export_args(args, message):
    with pytest.raises(ExportError, match=message):
        check_export_args(**args)
    check_export_args("openvino", precision="int8", calibration="nyu:x", out="m.xml")  # accepted
    check_export_args("openvino", out="m.xml")


@pytest.mark.parametrize("argv, message", [
    (["--format", "openvino", "--precision", "int8"], "--calibration"),
    (["--format", "onnx", "--precision", "bf16"], "--precision"),
    (["--format", "openvino", "--out", "x.onnx"], ".xml"),
])
def test_cli_export_errors_before_work(argv, message, tmp_path, capsys):
    argv = ["export", "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x.xml")] + argv
    assert main(argv) == 2  # the argument error comes before the (missing) model is read
    assert message in capsys.readouterr().err
