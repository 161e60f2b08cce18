import math

import pytest
import torch

from seldepth.models import create_model


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
    # METER-xxs reference: 0.446 GFLOP at 192x256, torch FlopCounterMode (2 FLOPs per multiply-add).
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
