"""Per-layer widths in METER's config: None keeps today's model; explicit widths build the smaller one."""

import dataclasses

import pytest
import torch

from seldepth.models import create_model
from seldepth.models.meter import METER, METER_VARIANTS
from seldepth.pruning.groups import check_prunable, config_with_widths, meter_groups


def test_default_widths_build_the_model_of_today():
    model = create_model("meter_xxs")
    assert model.num_parameters() == 713464
    cfg = model.config
    assert cfg.mv2_widths is None and cfg.meter_widths is None and cfg.up_widths is None
    explicit = METER(config_with_widths(model, {}))  # every width written out: the same tensors
    assert explicit.config.mv2_widths == (32, 32, 48, 48, 48, 96, 128)
    assert {k: v.shape for k, v in explicit.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_explicit_widths_shape_the_blocks():
    cfg = config_with_widths(create_model("meter_xxs"), {"encoder.blocks.0.hidden": 20, "encoder.blocks.5.tokens_out": 10,
                                                         "decoder.up1.up": 12, "decoder.up3.out": 5})
    model = METER(cfg)
    assert model.encoder.blocks[0].conv[3].groups == 20
    assert model.encoder.blocks[5].fusion[0].spatial.in_channels == 10 + 48
    assert model.decoder.up1.fuse.spatial.in_channels == 12 + 64 and model.decoder.output.in_channels == 5
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1, 16, 16)


@pytest.mark.parametrize("key, value", [("mv2_widths", (1, 2, 3)), ("meter_widths", (4,) * 11 + (0,)),
                                        ("up_widths", (8,) * 5 + (2.5,))])
def test_bad_widths_are_refused_naming_the_field(key, value):
    with pytest.raises(ValueError, match=key):
        dataclasses.replace(METER_VARIANTS["xxs"], **{key: value})


def test_thirty_groups_whose_probes_output_their_channels():
    model = create_model("meter_xxs").eval()
    groups = meter_groups(model)
    assert len(groups) == 30 and len({g.name for g in groups}) == 30
    seen = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = output.shape
        return hook

    hooks = [model.get_submodule(g.probe).register_forward_hook(record(g.name)) for g in groups]
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert {name: shape[1] for name, shape in seen.items()} == {g.name: g.width for g in groups}
    assert all(len(shape) == 4 for shape in seen.values())


def test_only_meter_and_the_realtime_network_are_prunable():
    with pytest.raises(ValueError, match=r"model: structured pruning supports METER models \(meter_xxs.*realtime_depth.*"
                                         r"got synergy_depth"):
        check_prunable(create_model("synergy_depth"))
    with pytest.raises(ValueError, match="widths: no channel group 'nope'"):
        config_with_widths(create_model("meter_xxs"), {"nope": 3})
