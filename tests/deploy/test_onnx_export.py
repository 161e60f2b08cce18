"""ONNX export (checked against torch), the ONNX Runtime model wrapper, INT8 quantisation and `seldepth bench`."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from seldepth.cli import main
from seldepth.data.spec import open_dataset
from seldepth.evaluation import evaluate
from seldepth.deploy.onnx_export import ExportError, export_onnx
from seldepth.deploy.quantize import quantize_int8
from seldepth.models.onnx_model import read_onnx_props
from seldepth.inference import predict_depth
from seldepth.models.loading import load_model
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.evaluation.protocol import get_protocol


@pytest.fixture(scope="module")
def meter(meter_nyu_file):
    return load_model(meter_nyu_file)


@pytest.fixture(scope="module")
def nyu(nyu_sample):
    return open_dataset(f"nyu:{nyu_sample}", "test")


@pytest.fixture(scope="module")
def fp32_onnx(meter, meter_nyu_file, nyu, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "meter.onnx"
    info = export_onnx(meter, path, check_images=[nyu[0]["image"]], source=meter_nyu_file)
    return path, info


def test_export_matches_torch_on_a_real_image(meter, nyu, fp32_onnx):
    path, info = fp32_onnx
    assert info["max_abs_diff_m"] < 1e-4
    onnx_model = OnnxDepthModel(path, threads=1)
    image = nyu[1]["image"][None]
    with torch.no_grad():
        ref = predict_depth(meter, image)
    out = predict_depth(onnx_model, image)
    assert out.shape == ref.shape == (1, 1, *image.shape[-2:])
    assert (out - ref).abs().max().item() < 1e-4


def test_metadata_records_preprocessing_and_provenance(meter, meter_nyu_file, fp32_onnx):
    path, _ = fp32_onnx
    props = read_onnx_props(path)
    assert json.loads(props["preprocessing"]) == meter.preprocessing.to_dict()
    assert props["architecture"] == "meter_xxs" and props["output_unit"] == "m" and props["precision"] == "fp32"
    provenance = json.loads(props["provenance"])
    assert provenance["sha256"] == meter.metadata["provenance"]["sha256"]
    assert provenance["onnx_export"]["source_file"] == str(meter_nyu_file)
    # The NYU camera and the PNG scale travel with the export: point clouds and 16-bit PNGs from the .onnx too.
    assert json.loads(props["intrinsics"]) == meter.metadata["intrinsics"]
    onnx_model = OnnxDepthModel(path, threads=1)
    assert onnx_model.metadata["intrinsics"]["fx"] == 518.8579
    assert onnx_model.metadata["provenance"]["png_scale"] == 1000.0
    loaded = load_model(path)
    assert isinstance(loaded, OnnxDepthModel)
    assert loaded.preprocessing == meter.preprocessing
    assert loaded.name == "meter_xxs" and loaded.eval() is loaded and loaded.train() is loaded and not loaded.training
    assert list(loaded.parameters()) == [] and list(loaded.buffers()) == []


def test_evaluate_onnx_equals_torch(meter, nyu, fp32_onnx):
    protocol = get_protocol("nyu")
    ref = evaluate(meter, nyu, protocol, progress=False)
    out = evaluate(load_model(fp32_onnx[0]), nyu, protocol, progress=False)
    assert out["num_images"] == ref["num_images"] == len(nyu)
    assert abs(out["metrics"]["rmse"] - ref["metrics"]["rmse"]) < 1e-4


def test_fixed_export_rejects_other_sizes(fp32_onnx):
    model = OnnxDepthModel(fp32_onnx[0], threads=1)
    assert model(torch.randn(3, 3, 192, 256)).shape == (3, 1, 48, 64)  # fixed batch 1: run per image
    with pytest.raises(ValueError, match="fixed input of 192x256"):
        model(torch.randn(1, 3, 128, 128))


def test_dynamic_export_runs_at_several_sizes_and_batches(meter, tmp_path):
    path = tmp_path / "dynamic.onnx"
    info = export_onnx(meter, path, dynamic=True)
    assert info["dynamic"] and info["max_abs_diff_m"] < 1e-4
    model = OnnxDepthModel(path, threads=1)
    assert model.input_shape[0] is None and model.input_shape[2] is None
    for shape in [(2, 3, 128, 192), (1, 3, 192, 256), (3, 3, 100, 150)]:  # the last one is padded by the wrapper
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = meter(x)
        out = model(x)
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() < 1e-4


def test_int8_close_to_fp32(fp32_onnx, nyu, tmp_path):
    path = tmp_path / "int8.onnx"
    info = quantize_int8(fp32_onnx[0], path, nyu, num_images=3)
    assert info["num_images"] == 3
    props = read_onnx_props(path)
    assert props["precision"] == "int8" and props["preprocessing"] == read_onnx_props(fp32_onnx[0])["preprocessing"]
    assert any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in onnx.load(str(path)).graph.node)
    # the output stage (back to the last skip Concat) stays FP32; quantising it shifted depth by ~-5%
    assert [n.op_type for n in onnx.load(str(path)).graph.node][-1] == "Conv"
    # measured 0.033 m on the 3 calibration images (0.2 m with the output stage in INT8)
    assert info["mean_abs_diff_m"] < 0.06
    fp32, int8 = OnnxDepthModel(fp32_onnx[0], threads=1), OnnxDepthModel(path, threads=1)
    images = torch.stack([nyu[i]["image"] for i in range(3, 6)])
    a = predict_depth(fp32, images).flatten().numpy()
    b = predict_depth(int8, images).flatten().numpy()
    assert np.corrcoef(a, b)[0, 1] > 0.98  # measured 0.993 on these held-out images
    assert abs(b.mean() / a.mean() - 1) < 0.035  # measured -2.2% (3 calibration images; -0.1% with 16)


def test_bench_cli_writes_json(meter_nyu_file, nyu_sample, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--model", str(meter_nyu_file), "--runs", "3", "--warmup", "1", "--threads", "1",
                 "--no-compile", "--calibration", f"nyu:{nyu_sample}", "--calibration-images", "2", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["parameters"] == load_model(meter_nyu_file).num_parameters() and result["flops"] > 0
    for backend in ("eager", "ort_fp32", "ort_int8"):
        assert result["latency_ms"][backend]["p50"] > 0 and result["latency_ms"][backend]["p90"] > 0
    assert "skipped" in result["latency_ms"]["compile"]
    assert "ort_fp32" in capsys.readouterr().out


def test_export_cli(meter_nyu_file, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "--model", str(meter_nyu_file), "--format", "onnx", "--out", str(out)]) == 0
    assert out.is_file() and "max abs diff" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["export", "--format", "onnx", "--int8"], "--calibration"),
    (["export", "--format", "tflite"], "unknown export format 'tflite'"),
    (["bench", "--size", "192by256"], "--size"),
    (["bench", "--size", "0x256"], "--size"),
])
def test_cli_errors_before_work(argv, message, tmp_path, capsys):
    argv = argv + ["--model", str(tmp_path / "missing.safetensors")] + (["--out", str(tmp_path / "x.onnx")] if argv[0] == "export" else [])
    assert main(argv) == 2  # the argument error comes before the (missing) model is read
    assert message in capsys.readouterr().err


def test_onnx_without_preprocessing_names_the_file(fp32_onnx, tmp_path, capsys):
    proto = onnx.load(str(fp32_onnx[0]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save_model(proto, str(bare))
    with pytest.raises(ValueError, match="bare.onnx.*preprocessing"):
        load_model(bare)
    assert main(["eval", "--model", str(bare), "--data", "nyu:/nonexistent"]) == 2
    assert "bare.onnx" in capsys.readouterr().err


def test_export_refuses_a_bad_export(meter, tmp_path, monkeypatch):
    import seldepth.deploy.onnx_export as export

    monkeypatch.setattr(export, "max_abs_difference", lambda *a, **k: 0.5)
    with pytest.raises(ExportError, match="differs from torch"):
        export_onnx(meter, tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_output_stage_nodes_walks_back_to_the_last_concat():
    from onnx import TensorProto, helper

    from seldepth.deploy.quantize import output_stage_nodes

    w = helper.make_tensor("w", TensorProto.FLOAT, [1, 2, 1, 1], [1.0, 1.0])
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="enc"),
             helper.make_node("Concat", ["a", "x"], ["cat"], axis=1, name="skip"),
             helper.make_node("Relu", ["cat"], ["r"], name="act"),
             helper.make_node("Conv", ["r", "w"], ["y"], name="head")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])], [w])
    assert output_stage_nodes(helper.make_model(graph)) == ["head", "act", "skip"]
    assert output_stage_nodes(helper.make_model(graph), max_nodes=2) == ["head", "act"]


def test_int8_slower_nodes_are_the_stem_and_attention_products_with_their_projections():
    from onnx import TensorProto, helper

    from seldepth.deploy.quantize import int8_slower_nodes

    def weight(name, dims):
        return helper.make_tensor(name, TensorProto.FLOAT, dims, [0.0] * int(np.prod(dims)))

    inits = [weight("w_stem", [8, 3, 3, 3]), weight("w_conv", [8, 8, 1, 1]), weight("w_dw", [8, 1, 3, 3]),
             weight("w_qk", [8, 16]), weight("w_mlp", [8, 8]), weight("shape", [3])]
    nodes = [helper.make_node("Conv", ["x", "w_stem"], ["s"], name="stem"),
             helper.make_node("Conv", ["s", "w_conv"], ["c"], name="pointwise"),
             helper.make_node("Conv", ["c", "w_dw"], ["d"], group=8, name="depthwise"),
             helper.make_node("Reshape", ["d", "shape"], ["t"], name="to_tokens"),
             helper.make_node("MatMul", ["t", "w_qk"], ["qk"], name="qk_proj"),
             helper.make_node("Split", ["qk"], ["q", "k"], axis=-1, num_outputs=2, name="split"),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1], name="kt"),
             helper.make_node("MatMul", ["q", "kt"], ["att"], name="q_kt"),
             helper.make_node("MatMul", ["t", "w_mlp"], ["y"], name="mlp")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("att", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    # the MLP's weight MatMul, the pointwise and the depthwise convolutions stay quantised
    assert int8_slower_nodes(helper.make_model(graph)) == ["stem", "qk_proj", "q_kt"]


def test_a_fixed_export_records_its_own_input_size_not_the_model_s(tmp_path):
    from seldepth.models import create_model
    from seldepth.models.preprocessing import Preprocessing

    model = create_model("meter_xxs").eval()
    model.preprocessing = Preprocessing((192, 256))
    path = tmp_path / "small.onnx"
    info = export_onnx(model, path, input_size=(128, 192))
    assert info["input_size"] == [128, 192]
    props = read_onnx_props(path)
    assert json.loads(props["preprocessing"])["input_size"] == [128, 192]
    assert json.loads(props["provenance"])["onnx_export"]["input_size"] == [128, 192]
    onnx_model = OnnxDepthModel(path, threads=1)
    assert tuple(onnx_model.preprocessing.input_size) == (128, 192)
    assert onnx_model(torch.randn(1, 3, 128, 192)).shape == (1, 1, 32, 48)
