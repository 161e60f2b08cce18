import math

import pytest
import torch

from seldepth.losses.logdepth import log_depth
from seldepth.models import create_model
from seldepth.models.loading import load_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.realtime import HEADS


def test_parameter_and_flop_budget_of_the_seed():
    model = create_model("realtime_depth", semantic_classes=5)
    assert model.num_parameters() <= 350_000  # Chiu et al., ICPR 2020: 0.32M
    flops = model.flops(320, 480)
    assert 1.6e9 <= flops <= 2.6e9  # Chiu et al., ICPR 2020: 2.1 GFLOPs at 480x320


def test_four_heads_at_half_to_a_sixteenth():
    model = create_model("realtime_depth", semantic_classes=5).eval()
    with torch.no_grad():
        out = model.forward_heads(torch.rand(2, 3, 320, 480))
    assert [tuple(d.shape) for d in out.depth] == [(2, 1, 160, 240), (2, 1, 80, 120), (2, 1, 40, 60), (2, 1, 20, 30)]
    assert [tuple(s.shape) for s in out.semantics] == [(2, 5, 160, 240), (2, 5, 80, 120), (2, 5, 40, 60), (2, 5, 20, 30)]
    assert all((d > 0).all() for d in out.depth)
    assert model(torch.rand(1, 3, 320, 480)).shape == (1, 1, 160, 240)  # forward: the finest head


def test_unaligned_input_gives_ceil_sized_heads():
    model = create_model("realtime_depth").eval()
    with torch.no_grad():
        out = model.forward_heads(torch.rand(1, 3, 100, 150))
    assert [tuple(d.shape[-2:]) for d in out.depth] == [(50, 75), (25, 38), (13, 19), (7, 10)]


def test_detached_heads_skip_the_finer_layers():
    flops = {h: create_model("realtime_depth", head=h).flops(320, 480) for h in HEADS}
    assert flops["L"] > flops["M"] > flops["S"] > flops["XS"]
    small = create_model("realtime_depth", head="M")
    names = {n for n, _ in small.named_modules()}
    assert "decoder.L" not in names and "head.L" not in names and "decoder.M" in names
    assert small.num_parameters() < create_model("realtime_depth").num_parameters()


def test_detach_keeps_the_weights_and_the_outputs_of_the_kept_heads():
    torch.manual_seed(0)
    full = create_model("realtime_depth", semantic_classes=3).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        ref = full.forward_heads(x)
        small = full.up_to_head("S")
        out = small.forward_heads(x)
    assert small.heads == ("S", "XS") and small(x).shape == (1, 1, 8, 12)
    for a, b in zip(out.depth, ref.depth[2:]):
        torch.testing.assert_close(a, b)
    for a, b in zip(out.semantics, ref.semantics[2:]):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="head 'L' is not built"):
        small.up_to_head("L")


def test_head_output_is_the_log_depth_of_the_loss():
    # depth = exp(log m + g log(M/m) / M), so G(depth) with the same m, M gives back g
    model = create_model("realtime_depth", min_depth=4.0, max_depth=80.0)
    g = torch.tensor([0.0, 40.0, 80.0])
    d = model._depth(g)
    torch.testing.assert_close(d, torch.tensor([4.0, math.sqrt(4 * 80), 80.0]))
    torch.testing.assert_close(log_depth(d, 4.0, 80.0), g, atol=1e-4, rtol=1e-5)


def test_model_file_round_trip_keeps_the_config(tmp_path):
    model = create_model("realtime_depth", head="M", semantic_classes=4).eval()
    path = save_model_file(model, tmp_path / "rt.safetensors", Preprocessing())
    loaded = load_model(path)
    assert loaded.heads == ("M", "S", "XS") and loaded.config.semantic_classes == 4
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_bad_head_and_bad_option_are_clear_errors():
    with pytest.raises(ValueError, match="head must be one of L, M, S, XS"):
        create_model("realtime_depth", head="XL")
    with pytest.raises(ValueError, match="bad options"):
        create_model("realtime_depth", colour=3)


def test_with_head_detaches_multi_head_models_only():
    from seldepth.models.base import with_head

    full = create_model("realtime_depth")
    assert with_head(full, None) is full and with_head(full, "XS").heads == ("XS",)
    with pytest.raises(ValueError, match="^head M: meter_xxs has no detachable output heads"):
        with_head(create_model("meter_xxs"), "M")


def test_export_of_a_detached_head_matches_torch(tmp_path):
    from seldepth.deploy.onnx_export import export_onnx
    from seldepth.models.onnx_model import OnnxDepthModel

    model = create_model("realtime_depth", head="S").eval()
    model.preprocessing = Preprocessing(input_size=(64, 96))
    info = export_onnx(model, tmp_path / "s.onnx", input_size=(64, 96))
    assert info["max_abs_diff_m"] < 1e-4
    out = OnnxDepthModel(tmp_path / "s.onnx", threads=1)(torch.rand(1, 3, 64, 96))
    assert out.shape == (1, 1, 8, 12)


def test_a_fixed_export_at_another_size_records_that_size(tmp_path):
    import json

    from seldepth.deploy.onnx_export import export_onnx
    from seldepth.models.onnx_model import read_onnx_props

    model = create_model("realtime_depth", head="S").eval()
    model.preprocessing = Preprocessing(input_size=(64, 96))
    export_onnx(model, tmp_path / "s.onnx", input_size=(32, 64))
    prep = json.loads(read_onnx_props(tmp_path / "s.onnx")["preprocessing"])
    assert prep["input_size"] == [32, 64]  # what the fixed graph takes, so calibration and predict resize to it
