"""Structured pruning of the real-time network (realtime_depth): its channel groups, the FLOPs cut, exactness against
the original with the removed channels' readers zeroed, the model file, the ONNX export, DS ranking, the config's
width fields and detached models."""

import dataclasses

import pytest
import torch

from seldepth.cli import main
from seldepth.models import create_model
from seldepth.models.model_file import read_model_file, save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.realtime import RealtimeDepth, RealtimeDepthConfig
from seldepth.pruning.criteria import l1_importance, random_importance, unit_importance
from seldepth.pruning.finetune import width_options
from seldepth.pruning.groups import (
    check_prunable,
    config_with_widths,
    prunable_groups,
    realtime_groups,
)
from seldepth.pruning.pipeline import prune, save_pruned
from seldepth.pruning.plan import floor_of, plan_pruning
from seldepth.pruning.structured import slice_model

SIZE = (64, 96)  # a small input, a multiple of the network's 16
GROUPS = {  # name: (width of the default network, config field, index)
    "stem.mid": (16, "conv_widths", 0), "down4.mid": (32, "conv_widths", 1),
    "down8.0.hidden": (128, "mv2_widths", 0), "down8.1.hidden": (192, "mv2_widths", 1),
    "down16.0.hidden": (192, "mv2_widths", 2), "down16.1.hidden": (384, "mv2_widths", 3),
    "down16.2.hidden": (384, "mv2_widths", 4),
    "decoder.S.reduce": (48, "reduce_widths", 2), "decoder.S.out": (48, "decoder_widths", 2),
    "decoder.M.reduce": (32, "reduce_widths", 1), "decoder.M.out": (32, "decoder_widths", 1),
    "decoder.L.reduce": (16, "reduce_widths", 0), "decoder.L.out": (16, "decoder_widths", 0),
}
DISSECT = {"bins": "linear:8:min=0.5,max=5.5", "depth_range": (0.4, 5.6), "batch_size": 2, "num_workers": 0,
           "progress": False}


def realtime_with_statistics(head: str = "L", semantic_classes: int = 0) -> RealtimeDepth:
    """A real-time network in eval mode whose batch norms are not the identity: seeded random weights, running
    means in [-0.5, 0.5), variances in [0.5, 1.5), scales in [0.5, 1.5) and shifts in [-0.1, 0.1)."""
    torch.manual_seed(3)
    model = create_model("realtime_depth", head=head, semantic_classes=semantic_classes)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            for tensor, low in ((bn.running_mean, -0.5), (bn.running_var, 0.5), (bn.weight, 0.5)):
                tensor.copy_(torch.rand(bn.num_features, generator=generator) + low)
            bn.bias.copy_(0.2 * torch.rand(bn.num_features, generator=generator) - 0.1)
    return model.eval()


@pytest.fixture
def realtime():
    return realtime_with_statistics()


def _heads(model, x):
    with torch.no_grad():
        out = model.forward_heads(x)
    return out.depth + out.semantics


def _zero_readers(model, keep):
    """``model`` with the input weights that read the channels not in ``keep`` set to zero (at each reader's offset)."""
    for g in prunable_groups(model):
        dropped = torch.tensor(sorted(set(range(g.width)) - set(keep[g.name].tolist())), dtype=torch.long)
        for consumer in g.consumers:
            conv = model.get_submodule(consumer.module)
            with torch.no_grad():
                conv.weight.index_fill_(1, dropped + consumer.offset, 0.0)
    return model


def test_thirteen_groups_whose_probes_output_their_channels(realtime):
    groups = realtime_groups(realtime)
    assert {g.name: (g.width, g.field, g.index) for g in groups} == GROUPS
    assert [g.name for g in prunable_groups(realtime)] == [g.name for g in groups]
    assert check_prunable(realtime) is realtime
    readers = {g.name: [(c.module, c.offset) for c in g.consumers] for g in groups}
    assert readers["decoder.S.out"] == [("head.S", 0), ("decoder.M.reduce.0", 0)]
    assert readers["decoder.L.out"] == [("head.L", 0)]
    assert readers["decoder.M.reduce"] == [("decoder.M.fuse.0", 0)]  # the first part of the fuse conv's input
    seen = {}
    hooks = [realtime.get_submodule(g.probe).register_forward_hook(
        lambda module, inputs, output, name=g.name: seen.__setitem__(name, tuple(output.shape))) for g in groups]
    _heads(realtime, torch.rand(1, 3, *SIZE))
    for h in hooks:
        h.remove()
    assert {name: shape[1] for name, shape in seen.items()} == {g.name: g.width for g in groups}
    assert all(len(shape) == 4 for shape in seen.values())


@pytest.mark.parametrize("criterion", ["l1", "random"])
@pytest.mark.parametrize("fraction", [0.8, 0.6])
def test_flops_reach_the_target_within_five_percent_and_the_outputs_keep_their_shape(realtime, criterion, fraction):
    # round_to 1: with blocks of 8 the 16-channel groups at 1/2 scale move the FLOPs in steps larger than 5% (below)
    result = prune(realtime, criterion, fraction, size=SIZE, draw=1, round_to=1)
    pruned = result.model
    assert type(pruned) is RealtimeDepth and pruned.name == "realtime_depth"
    achieved = pruned.flops(*SIZE) / realtime.flops(*SIZE)
    assert achieved == pytest.approx(fraction, rel=0.05) and achieved <= fraction
    assert result.plan.achieved_fraction == pytest.approx(achieved)
    widths = {g.name: g.width for g in realtime_groups(pruned)}
    assert widths == result.plan.widths and all(widths[n] >= floor_of(w) for n, (w, _, _) in GROUPS.items())
    assert sum(widths.values()) < sum(w for w, _, _ in GROUPS.values())
    assert pruned.config.channels == realtime.config.channels  # the encoder's stage outputs are kept
    assert result.parameters_after < result.parameters_before
    x = torch.rand(1, 3, 70, 90)  # not a multiple of 16: padded inside
    assert [o.shape for o in _heads(pruned, x)] == [o.shape for o in _heads(realtime, x)]
    with torch.no_grad():
        assert pruned(x).shape == realtime(x).shape == (1, 1, 35, 45)


@pytest.mark.parametrize("fraction", [0.8, 0.6])
def test_blocks_of_eight_channels_stay_at_or_under_the_target(realtime, fraction):
    plan = plan_pruning(realtime, l1_importance(realtime), fraction, SIZE)  # round_to 8, the default
    assert all(w % 8 == 0 or w == GROUPS[name][0] for name, w in plan.widths.items())
    assert plan.achieved_fraction <= fraction and plan.achieved_fraction == pytest.approx(fraction, abs=0.06)
    assert slice_model(realtime, plan.keep).flops(*SIZE) == plan.flops_after


@pytest.mark.parametrize("head", ["L", "M", "XS"])
def test_pruned_model_equals_the_original_with_the_readers_of_removed_channels_zeroed(head):
    model = realtime_with_statistics(head, semantic_classes=2)
    plan = plan_pruning(model, random_importance(model, 1), 0.6, SIZE, round_to=1)
    assert all(len(plan.keep[g.name]) < g.width for g in realtime_groups(model))  # every group loses channels
    pruned = slice_model(model, plan.keep)
    x = torch.randn(2, 3, 64, 128)
    out, expected = _heads(pruned, x), _heads(_zero_readers(model, plan.keep), x)
    assert len(out) == len(expected) == 2 * len(model.heads)
    for a, b in zip(out, expected, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_pruned_model_saves_loads_and_exports_to_onnx(realtime, tmp_path, one_thread):
    pytest.importorskip("onnx")
    from seldepth.deploy.onnx_export import export_onnx
    from seldepth.models.onnx_model import OnnxDepthModel

    realtime.preprocessing = Preprocessing(input_size=SIZE)
    result = prune(realtime, "l1", 0.6, size=SIZE)
    path = save_pruned(result, tmp_path / "pruned.safetensors", source="realtime.safetensors")
    loaded = read_model_file(path)
    assert type(loaded) is RealtimeDepth and loaded.config == result.model.config
    assert {g.name: g.width for g in realtime_groups(loaded)} == result.plan.widths
    assert loaded.metadata["provenance"]["pruning"]["widths"] == result.plan.widths
    x = torch.rand(1, 3, *SIZE)
    for a, b in zip(_heads(loaded, x), _heads(result.model, x), strict=True):
        torch.testing.assert_close(a, b)
    info = export_onnx(loaded, tmp_path / "pruned.onnx", input_size=SIZE, source=path)
    assert info["max_abs_diff_m"] < 1e-4  # export_onnx's own check: ONNX Runtime against torch
    with torch.no_grad():
        expected = loaded(x)
    out = torch.as_tensor(OnnxDepthModel(tmp_path / "pruned.onnx", threads=1)(x))
    assert out.shape == expected.shape == (1, 1, 32, 48)
    assert (out - expected).abs().max().item() < 1e-4


def test_ds_prunes_a_channel_that_never_responds_first(depth_samples):
    group, channel = "decoder.M.reduce", 0
    model = realtime_with_statistics()
    with torch.no_grad():  # a zero filter and a large negative shift: the ReLU is 0 everywhere
        model.decoder.M.reduce[0].weight[channel] = 0
        model.decoder.M.reduce[1].bias[channel] = -100.0
    ds = unit_importance(model, "ds", depth_samples, **DISSECT)
    assert set(ds) == set(GROUPS) and all(((s >= 0) & (s <= 1)).all() for s in ds.values())
    scores = ds[group]
    assert scores.shape == (32,) and scores[channel] == 0 and (scores > 0).sum() >= 16
    plan = plan_pruning(model, ds, 0.95, (64, 64), round_to=1)
    assert channel not in plan.keep[group].tolist() and plan.widths[group] < 32
    inverse = plan_pruning(model, unit_importance(model, "ds-inverse", depth_samples, **DISSECT), 0.95, (64, 64),
                           round_to=1)
    assert channel in inverse.keep[group].tolist() and inverse.widths[group] < 32


def test_l1_scores_the_filter_that_makes_each_channel(realtime):
    scores = l1_importance(realtime)
    torch.testing.assert_close(scores["decoder.S.out"],
                               realtime.decoder.S.fuse[0].weight.detach().double().abs().sum((1, 2, 3)))
    torch.testing.assert_close(scores["down16.1.hidden"],  # an MV2 hidden channel: the 1x1 expand filter
                               realtime.down16[1].conv[0].weight.detach().double().abs().sum((1, 2, 3)))


def test_configs_without_the_width_fields_build_the_model_of_today():
    model = create_model("realtime_depth")
    cfg = model.config
    assert (cfg.conv_widths, cfg.mv2_widths, cfg.reduce_widths, cfg.decoder_widths) == (None,) * 4
    old = {k: v for k, v in dataclasses.asdict(cfg).items()  # a model file written before the fields existed
           if k not in ("conv_widths", "mv2_widths", "reduce_widths", "decoder_widths")}
    explicit = config_with_widths(model, {})  # every width written out
    assert explicit.mv2_widths == (128, 192, 192, 384, 384) and explicit.decoder_widths == (16, 32, 48)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    for other in (create_model("realtime_depth", **old), RealtimeDepth(explicit)):
        assert {k: v.shape for k, v in other.state_dict().items()} == shapes
    small = create_model("realtime_depth", head="S", blocks_16=1)
    assert small.config.explicit_widths().mv2_widths == (128, 192, 192, 384)
    assert {k: v.shape for k, v in RealtimeDepth(config_with_widths(small, {})).state_dict().items()} \
        == {k: v.shape for k, v in small.state_dict().items()}


def test_explicit_widths_shape_the_layers():
    model = RealtimeDepth(RealtimeDepthConfig(conv_widths=(8, 24), mv2_widths=(64, 96, 80, 200, 120),
                                              reduce_widths=(8, 16, 24), decoder_widths=(12, 20, 40)))
    assert model.stem[0][0].out_channels == 8 and model.stem[1][0].in_channels == 8
    assert model.down4[0][0].out_channels == 24 and model.down16[1].conv[3].groups == 200
    assert model.decoder.S.fuse[0].in_channels == 24 + 48 and model.decoder.S.fuse[0].out_channels == 40
    assert model.decoder.M.reduce[0].in_channels == 40 and model.head.M.in_channels == 20
    assert model.decoder.L.fuse[0].in_channels == 8 + 16 and model.head.L.in_channels == 12
    assert model.eval()(torch.rand(1, 3, *SIZE)).shape == (1, 1, 32, 48)


@pytest.mark.parametrize("key, value", [("conv_widths", (16,)), ("mv2_widths", (128, 192, 192, 384)),
                                        ("reduce_widths", (16, 0, 48)), ("decoder_widths", (16, 32, 2.5)),
                                        ("mv2_widths", (128, 192, True, 384, 384))])
def test_bad_widths_are_refused_naming_the_field(key, value):
    with pytest.raises(ValueError, match=rf"^{key} must be None or \d positive integers"):
        RealtimeDepthConfig(**{key: value})
    with pytest.raises(ValueError, match=key):
        create_model("realtime_depth", **{key: list(value)})


def test_a_detached_model_prunes_its_built_stages_only():
    model = realtime_with_statistics("M")
    assert [g.name for g in realtime_groups(model)][-4:] == ["decoder.S.reduce", "decoder.S.out", "decoder.M.reduce",
                                                             "decoder.M.out"]
    assert len(realtime_groups(model)) == 11
    assert [(c.module, c.offset) for c in realtime_groups(model)[-1].consumers] == [("head.M", 0)]
    result = prune(model, "l1", 0.6, size=SIZE, round_to=1)
    pruned = result.model
    achieved = pruned.flops(*SIZE) / model.flops(*SIZE)
    assert achieved == pytest.approx(0.6, rel=0.05) and achieved <= 0.6
    assert pruned.heads == ("M", "S", "XS") and pruned.config.head == "M"
    assert pruned.config.reduce_widths[0] == pruned.config.decoder_widths[0] == 16  # stage L: not built, as it was
    x = torch.rand(1, 3, *SIZE)
    assert [o.shape for o in _heads(pruned, x)] == [o.shape for o in _heads(model, x)]


def test_a_pruned_full_model_detaches_and_its_widths_rebuild_it(realtime):
    pruned = prune(realtime, "random", 0.6, size=SIZE, draw=2).model
    small = pruned.up_to_head("S")
    x = torch.rand(1, 3, *SIZE)
    for a, b in zip(_heads(small, x), _heads(pruned, x)[2:], strict=True):
        torch.testing.assert_close(a, b)
    options = width_options(pruned)  # what fine-tuning puts in the training config's model_options
    assert sorted(options) == ["conv_widths", "decoder_widths", "mv2_widths", "reduce_widths"]
    assert create_model("realtime_depth", **options).config == pruned.config


def test_the_command_prunes_a_realtime_model_file(tmp_path, capsys):
    source = save_model_file(realtime_with_statistics(), tmp_path / "rt.safetensors", Preprocessing(input_size=SIZE))
    out = tmp_path / "pruned.safetensors"
    assert main(["prune", "--model", str(source), "--criterion", "l1", "--flops", "0.8", "--out", str(out)]) == 0
    pruning = read_model_file(out).metadata["provenance"]["pruning"]
    assert pruning["size"] == list(SIZE) and pruning["achieved_flops_fraction"] == pytest.approx(0.8, rel=0.05)
    assert "error" not in capsys.readouterr().err
