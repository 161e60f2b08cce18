import math

import pytest
import torch

from seldepth.models import create_model, list_models
from seldepth.models.base import has_output

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


@pytest.mark.parametrize("size", [(480, 640), (375, 1242)])
def test_meter_xxs_runs_on_dataset_sizes(size):
    model = create_model("meter_xxs").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape[-2:] == (math.ceil(size[0] / 4), math.ceil(size[1] / 4))


def test_unaligned_input_is_padded_by_replication_and_cropped_back():
    model = create_model("meter_xxs").eval()
    x = torch.randn(1, 3, 130, 200)
    padded = torch.nn.functional.pad(x, (0, 256 - 200, 0, 192 - 130), mode="replicate")
    with torch.no_grad():
        out = model(x)
        reference = model(padded)[..., :33, :50]
    assert out.shape == (1, 1, 33, 50)
    torch.testing.assert_close(out, reference)


def test_flops_of_xxs_match_spec():
    # SPEC.md: 0.446 GFLOP at 192x256, torch FlopCounterMode (2 FLOPs per multiply-add).
    assert create_model("meter_xxs").flops(192, 256) == pytest.approx(0.446e9, rel=2e-3)


def test_default_selectivity_layers_exist_in_execution_order():
    model = create_model("meter_xxs").eval()
    names = list(model.selectivity_layers)
    assert names == [f"enc_{i}" for i in range(11)] + ["enc_out", "dec_0", "dec_1", "dec_2", "dec_3"]
    order = []
    hooks = [model.layer_module(n).register_forward_hook(lambda m, i, o, n=n: order.append(n)) for n in names]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert order == names
    with pytest.raises(ValueError, match="available: enc_0"):
        model.layer_module("enc_99")
