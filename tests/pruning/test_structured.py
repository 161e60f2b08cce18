"""Slicing and the FLOPs cut: the pruned model computes what the original computes with the removed channels'
readers zeroed, reaches its FLOPs target, and is an ordinary model (saved, loaded)."""

import pytest
import torch

from seldepth.models.loading import load_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.pruning.criteria import l1_importance, random_importance
from seldepth.pruning.groups import meter_groups
from seldepth.pruning.plan import (
    floor_of,
    plan_pruning,
    rounded_width,
    smallest_fraction,
)
from seldepth.pruning.structured import prune_model, slice_model

SIZE = (64, 64)


def _zero_readers(model, keep):
    """``model`` with the input weights that read the channels not in ``keep`` set to zero."""
    for g in meter_groups(model):
        dropped = torch.tensor(sorted(set(range(g.width)) - set(keep[g.name].tolist())), dtype=torch.long)
        for consumer in g.consumers:
            module = model.get_submodule(consumer.module)
            dim = 0 if isinstance(module, torch.nn.ConvTranspose2d) else 1
            with torch.no_grad():
                module.weight.index_fill_(dim, dropped + consumer.offset, 0.0)
    return model


def test_pruned_model_equals_the_original_with_the_readers_of_removed_channels_zeroed(meter):
    plan = plan_pruning(meter, random_importance(meter, 1), 0.6, SIZE)
    pruned = slice_model(meter, plan.keep)
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        expected = _zero_readers(meter, plan.keep)(x)
        out = pruned(x)
    assert out.shape == expected.shape == (2, 1, 16, 32)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fraction", [0.8, 0.6])
def test_flops_reach_the_target_within_five_percent_and_floors_hold(meter, fraction):
    pruned = prune_model(meter, l1_importance(meter), fraction, SIZE)
    achieved = pruned.flops(*SIZE) / meter.flops(*SIZE)
    assert achieved == pytest.approx(fraction, rel=0.05) and achieved <= fraction
    assert pruned.pruning_plan.achieved_fraction == pytest.approx(achieved)
    widths = {g.name: g.width for g in meter_groups(pruned)}
    assert all(widths[g.name] >= floor_of(g.width) for g in meter_groups(meter))
    assert pruned.num_parameters() < meter.num_parameters()
    with torch.no_grad():
        assert pruned(torch.rand(1, 3, 70, 90)).shape == meter(torch.rand(1, 3, 70, 90)).shape == (1, 1, 18, 23)


def test_rank_normalisation_cuts_every_group_by_about_the_same_share(meter):
    plan = plan_pruning(meter, l1_importance(meter), 0.8, SIZE, round_to=1)
    shares = [plan.widths[g.name] / g.width for g in meter_groups(meter) if floor_of(g.width, round_to=1) < g.width]
    assert max(shares) - min(shares) < 0.1


def test_rounded_widths_and_floors_by_hand():
    assert [rounded_width(k, 48, 8) for k in (1, 8, 9, 27, 40, 41, 48)] == [8, 8, 16, 32, 40, 48, 48]
    assert rounded_width(27, 48, 1) == 27 and rounded_width(5, 6, 8) == 6  # never above the group's width
    assert floor_of(48, round_to=1) == 12 and floor_of(48, round_to=8) == 16  # ceil(0.25 x 48) = 12 -> 16
    assert floor_of(20, 0.25, 4, round_to=1) == 5 and floor_of(20, 0.25, 4, round_to=8) == 8
    assert floor_of(6, round_to=8) == 6  # fewer than min_channels: kept whole


def test_round_to_keeps_multiples_of_it_and_drops_each_groups_lowest_scores(meter):
    # scores = channel index: within each group the lowest channels must go first, whatever the rounding
    importance = {g.name: torch.arange(g.width, dtype=torch.float64) for g in meter_groups(meter)}
    plan = plan_pruning(meter, importance, 0.6, SIZE, round_to=8)
    assert plan.achieved_fraction == pytest.approx(0.6, rel=0.05) and plan.achieved_fraction <= 0.6
    for g in meter_groups(meter):
        width = plan.widths[g.name]
        assert width % 8 == 0 or width == g.width, (g.name, width)
        assert width >= floor_of(g.width, round_to=8)
        assert plan.keep[g.name].tolist() == list(range(g.width - width, g.width))  # the highest scores kept
    assert plan.removed == sum(g.width - plan.widths[g.name] for g in meter_groups(meter))
    assert plan.info["round_to"] == 8
    unrounded = plan_pruning(meter, importance, 0.6, SIZE, round_to=1)
    assert any(w % 8 for w in unrounded.widths.values())  # the rounding changed something


def test_round_to_is_checked(meter):
    for bad in (0, -8, 2.5, True):
        with pytest.raises(ValueError, match="round_to"):
            plan_pruning(meter, l1_importance(meter), 0.8, SIZE, round_to=bad)


def test_a_fraction_of_one_keeps_everything(meter):
    plan = plan_pruning(meter, l1_importance(meter), 1.0, SIZE)
    assert plan.removed == 0 and plan.flops_after == plan.flops_before


def test_pruned_model_file_loads_as_a_normal_model(meter, tmp_path):
    pruned = prune_model(meter, l1_importance(meter), 0.6, SIZE)
    path = save_model_file(pruned, tmp_path / "pruned.safetensors", Preprocessing(input_size=SIZE))
    loaded = load_model(path)
    assert loaded.config == pruned.config and loaded.config.mv2_widths != meter.config.mv2_widths
    x = torch.rand(1, 3, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pruned(x))


def test_bad_arguments_are_refused_naming_them(meter):
    scores = l1_importance(meter)
    for fraction in (0, -0.5, 1.5, float("nan"), True):
        with pytest.raises(ValueError, match="flops_fraction must be a number in"):
            plan_pruning(meter, scores, fraction, SIZE)
    lowest = smallest_fraction(meter, SIZE)
    with pytest.raises(ValueError, match=rf"flops_fraction 0.1 cannot be reached.*keeps {lowest:.3f}"):
        plan_pruning(meter, scores, 0.1, SIZE)
    with pytest.raises(ValueError, match="importance: groups missing: encoder.head"):
        plan_pruning(meter, {k: v for k, v in scores.items() if k != "encoder.head"}, 0.6, SIZE)
    with pytest.raises(ValueError, match=r"importance\['decoder.input'\]: expected 64 scores"):
        plan_pruning(meter, {**scores, "decoder.input": torch.zeros(3)}, 0.6, SIZE)
    with pytest.raises(ValueError, match="normalise must be one of rank, none"):
        plan_pruning(meter, scores, 0.6, SIZE, normalise="zscore")
    with pytest.raises(ValueError, match=r"keep\['decoder.input'\]: expected distinct channel indices in 0..63"):
        slice_model(meter, {"decoder.input": [0, 0, 70]})
