"""Tests over every registered model (timm style): size, forward, gradients, declared outputs, ONNX export.

Each test is parametrised over ``list_models()``, so a newly registered model is checked without a new test.
"""

import math

import pytest
import torch

from seldepth.models import create_model, list_models
from seldepth.models.base import OUTPUTS, has_output

EXPECTED_PARAMETERS = {"meter_xxs": 713_464, "meter_xs": 1_449_760, "meter_s": 3_295_168}


def test_registry_lists_meter_variants():
    assert set(EXPECTED_PARAMETERS) <= set(list_models())


def test_unknown_model_name_lists_available():
    with pytest.raises(ValueError, match="unknown model 'meter_xxxl'.*meter_xxs"):
        create_model("meter_xxxl")


@pytest.mark.parametrize("name", list_models())
def test_parameter_count(name):
    if name in EXPECTED_PARAMETERS:
        assert create_model(name).num_parameters() == EXPECTED_PARAMETERS[name]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [(64, 64), (100, 130), (192, 256)])
def test_forward_shape_and_finite(name, size):
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    stride = model.output_stride
    assert out.shape == (2, 1, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_gets_a_gradient(name):
    model = create_model(name).train()
    x = torch.randn(2, 3, 128, 128)
    if has_output(model, "heads"):  # multi-head models: every head's output
        out = model.forward_heads(x)
        sum(t.square().mean() for group in out for t in group).backward()
    elif has_output(model, "tasks"):  # depth and semantics
        sum(t.square().mean() for t in model.forward_tasks(x)).backward()
    else:
        model(x).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


# what each registered depth model declares besides depth (models not listed: depth only)
EXPECTED_OUTPUTS = {"realtime_depth": {"depth", "heads"}, "synergy_depth": {"depth", "tasks"}}
OUTPUT_METHODS = {"heads": "forward_heads", "tasks": "forward_tasks"}


@pytest.mark.parametrize("name", list_models())
def test_has_output_matches_the_declared_outputs_and_their_methods(name):
    model = create_model(name)
    declared = {o for o in OUTPUTS if has_output(model, o)}
    assert declared == EXPECTED_OUTPUTS.get(name, {"depth"})
    for output, method in OUTPUT_METHODS.items():  # a declared output has its method
        assert callable(getattr(model, method, None)) == (output in declared), (output, method)


def test_has_output_of_an_undeclaring_module_is_depth_only():
    plain = torch.nn.Conv2d(3, 1, 1)
    assert has_output(plain, "depth") and not has_output(plain, "heads") and not has_output(plain, "tasks")


@pytest.mark.parametrize("output", ["semantics", "Depth", "", "head"])
def test_has_output_rejects_an_unknown_output(output):
    with pytest.raises(ValueError, match=f"output must be one of depth, heads, tasks, got {output!r}"):
        has_output(create_model("realtime_depth"), output)


def _export_size(model, base=(64, 96)) -> tuple[int, int]:
    """``base`` rounded up to the model's ``size_multiple`` (METER-based models: 64x128; realtime_depth: 64x96)."""
    m = int(model.size_multiple)
    return tuple(math.ceil(side / m) * m for side in base)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_onnx_export_matches_torch(name, tmp_path, one_thread):
    from seldepth.deploy.onnx_export import export_onnx
    from seldepth.models.onnx_model import OnnxDepthModel, read_onnx_props

    model = create_model(name).eval()
    size = _export_size(model)
    path = tmp_path / f"{name}.onnx"
    info = export_onnx(model, path, input_size=size)
    assert info["max_abs_diff_m"] < 1e-4 and info["input_size"] == list(size) and not info["dynamic"]
    assert read_onnx_props(path)["architecture"] == name
    onnx_model = OnnxDepthModel(path, threads=1)
    x = torch.rand(2, 3, *size)  # not the export's check inputs; batch 2 runs as two fixed batches of 1
    with torch.no_grad():
        ref = model(x)
    out = onnx_model(x)
    stride = model.output_stride
    assert out.shape == ref.shape == (2, 1, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max().item() < 1e-4
