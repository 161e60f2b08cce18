"""Numeric options of export, bench, quantize, predict, eval and dissect: a value outside what they do is refused
before any work, naming the argument; none is clamped, truncated or replaced by another."""

from __future__ import annotations

import onnx
import pytest
import torch

from seldepth.deploy.bench import BenchmarkError, benchmark, check_benchmark_args
from seldepth.deploy.onnx_export import ExportError, check_export_args, export_onnx, supported_opsets
from seldepth.deploy.quantize import check_calibration_images


def _tiny():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1)).eval()


@pytest.mark.parametrize("opset", [1, 17, 2.5, True, 99])
def test_export_refuses_an_opset_the_exporter_does_not_write(opset, tmp_path):
    low, high = supported_opsets()
    assert 18 <= low <= high  # torch's dynamo exporter builds opset 18 graphs and converts them up
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=rf"^opset must be an integer in \[{low}, {high}\], got {opset}"):
        export_onnx(_tiny(), path, input_size=(8, 8), opset=opset)
    with pytest.raises(ExportError, match="^opset "):
        check_export_args("onnx", opset=opset)
    assert not path.exists()


def test_export_writes_exactly_the_opset_asked_for_or_nothing(tmp_path, monkeypatch):
    info = export_onnx(_tiny(), tmp_path / "a.onnx", input_size=(8, 8), opset=20)
    assert info["opset"] == 20
    assert [o.version for o in onnx.load(str(tmp_path / "a.onnx")).opset_import if o.domain in ("", "ai.onnx")] == [20]
    # an exporter that writes another opset than asked (as torch does when it cannot convert a model down)
    original = torch.onnx.export
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: original(*a, **{**k, "opset_version": 18}))
    with pytest.raises(ExportError, match=r"^opset: asked for opset 21, but .* wrote opset 18"):
        export_onnx(_tiny(), tmp_path / "b.onnx", input_size=(8, 8), opset=21)
    assert not (tmp_path / "b.onnx").exists()


@pytest.mark.parametrize("size, message", [((64, 96.5), r"input_size\[1\] must be an integer >= 1, got 96.5"),
                                           ((0, 96), r"input_size\[0\] must be an integer >= 1, got 0"),
                                           ((64,), r"input_size must be \(height, width\)")])
def test_export_refuses_a_bad_input_size(size, message, tmp_path):
    with pytest.raises(ExportError, match=message):
        export_onnx(_tiny(), tmp_path / "m.onnx", input_size=size)


@pytest.mark.parametrize("kwargs, message", [
    ({"compile_budget_s": -1}, r"^compile_budget_s must be a finite number > 0 or null, got -1$"),
    ({"compile_budget_s": 0}, r"^compile_budget_s must be a finite number > 0 or null, got 0$"),
    ({"compile_budget_s": float("inf")}, r"^compile_budget_s .* got inf$"),
    ({"threads": 0}, r"^threads must be an integer >= 1, got 0$"),
    ({"runs": 2.5}, r"^runs must be an integer >= 1, got 2.5$"),
    ({"warmup": -1}, r"^warmup must be an integer >= 0, got -1$"),
    ({"int8_images": 0}, r"^int8_images must be an integer >= 1, got 0$"),
    ({"size": (192.5, 256)}, r"^size\[0\] must be an integer >= 1, got 192.5$"),
])
def test_bench_refuses_bad_numbers_before_any_work(kwargs, message, tmp_path):
    missing = tmp_path / "missing.safetensors"  # never read: the arguments are checked first
    with pytest.raises(BenchmarkError, match=message):
        benchmark(missing, **kwargs)
    args = {"size": (192, 256), "threads": 1, "runs": 1, "warmup": 0, **kwargs}
    with pytest.raises(BenchmarkError, match=message):
        check_benchmark_args(missing, **args)


def test_bench_without_a_compile_budget_is_none():
    check_benchmark_args("m.safetensors", (8, 8), 1, 1, 0, compile_budget_s=None)


def test_quantize_refuses_more_calibration_images_than_the_data_has():
    data = [None] * 10
    assert check_calibration_images(10, data) == 10
    with pytest.raises(ExportError, match=r"^num_images: asked for 16 calibration images, but the calibration data has 10"):
        check_calibration_images(16, data)
    with pytest.raises(ExportError, match=r"^num_images must be an integer >= 1, got 2.5"):
        check_calibration_images(2.5)


def test_predict_eval_and_dissect_refuse_a_batch_size_they_would_truncate(tmp_path):
    from seldepth.evaluation.evaluate import evaluate
    from seldepth.evaluation.protocol import get_protocol
    from seldepth.prediction import predict_paths
    from seldepth.selectivity.dissect import dissect

    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got 2.5$"):
        predict_paths(tmp_path / "missing.safetensors", [tmp_path], tmp_path / "out", batch_size=2.5)
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1, got 0$"):
        evaluate(_tiny(), [], get_protocol("nyu"), batch_size=0)
    with pytest.raises(ValueError, match=r"^num_workers must be an integer >= 0, got -1$"):
        dissect(_tiny(), [], layers=[], num_workers=-1)
    with pytest.raises(ValueError, match=r"^depth_range: expected finite 0 <= min < max"):
        dissect(_tiny(), [], layers=[], depth_range=(0.1, float("inf")))
