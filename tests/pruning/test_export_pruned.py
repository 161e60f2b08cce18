"""A pruned model exports to ONNX like any other and matches torch there."""

import pytest
import torch

from seldepth.models.loading import load_model
from seldepth.pruning.pipeline import prune, save_pruned

onnx = pytest.importorskip("onnx")


def test_pruned_model_exports_to_onnx_and_matches_torch(meter_file, tmp_path, one_thread):
    from seldepth.deploy.onnx_export import export_onnx
    from seldepth.models.onnx_model import OnnxDepthModel

    result = prune(load_model(meter_file), "random", 0.6, size=(64, 64), draw=1)
    path = save_pruned(result, tmp_path / "pruned.safetensors", source=str(meter_file))
    model = load_model(path)
    info = export_onnx(model, tmp_path / "pruned.onnx", input_size=(64, 64), source=path)
    assert info["max_abs_diff_m"] < 1e-4  # export_onnx's own check: ONNX Runtime against torch
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    out = OnnxDepthModel(tmp_path / "pruned.onnx", threads=1)(x)
    assert out.shape == expected.shape == (1, 1, 16, 16)
    assert (torch.as_tensor(out) - expected).abs().max().item() < 1e-4
