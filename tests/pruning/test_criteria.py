"""Each criterion ranks channels as specified, on hand-built cases: a dead channel goes first under ds and last
under ds-inverse, the smallest filter first under l1, and random is reproducible."""

import pytest
import torch

from seldepth.pruning.criteria import (
    CRITERIA,
    l1_importance,
    random_importance,
    unit_importance,
)
from seldepth.pruning.plan import plan_pruning

GROUP, CHANNEL = "encoder.blocks.7.fusion_mid", 5  # a METER block's fusion 3x3 output (64 channels, no ReLU: all respond)
DISSECT = {"bins": "linear:8:min=0.5,max=5.5", "depth_range": (0.4, 5.6), "batch_size": 2, "num_workers": 0,
           "progress": False}


def _silence(model, channel=CHANNEL):
    """Make ``channel`` of METER block 7's fusion 3x3 output 0 everywhere (its filter all zeros)."""
    with torch.no_grad():
        model.encoder.blocks[7].fusion[0].spatial.weight[channel] = 0
    return model


def test_ds_prunes_a_channel_that_never_responds_first(meter, depth_samples):
    model = _silence(meter)
    ds = unit_importance(model, "ds", depth_samples, **DISSECT)
    scores = ds[GROUP]
    assert scores.shape == (64,) and scores[CHANNEL] == 0 and (scores[torch.arange(64) != CHANNEL] > 0).all()
    assert all(((s >= 0) & (s <= 1)).all() for s in ds.values())
    plan = plan_pruning(model, ds, 0.95, (64, 64))
    assert CHANNEL not in plan.keep[GROUP].tolist() and plan.widths[GROUP] < 64


def test_ds_inverse_keeps_a_channel_that_never_responds_last(meter, depth_samples):
    model = _silence(meter)
    inverse = unit_importance(model, "ds-inverse", depth_samples, **DISSECT)
    assert inverse[GROUP][CHANNEL] == 0 and (inverse[GROUP][torch.arange(64) != CHANNEL] < 0).all()
    kept = plan_pruning(model, inverse, 0.95, (64, 64))
    assert CHANNEL in kept.keep[GROUP].tolist() and kept.widths[GROUP] < 64


def test_l1_prunes_the_smallest_filter_first(meter):
    with torch.no_grad():
        meter.encoder.blocks[7].fusion[0].spatial.weight[CHANNEL] *= 1e-3
    scores = l1_importance(meter)
    expected = meter.encoder.blocks[7].fusion[0].spatial.weight.detach().double().abs().sum((1, 2, 3))
    torch.testing.assert_close(scores[GROUP], expected)
    assert int(scores[GROUP].argmin()) == CHANNEL
    plan = plan_pruning(meter, scores, 0.95, (64, 64))
    assert CHANNEL not in plan.keep[GROUP].tolist()
    hidden = meter.encoder.blocks[8].conv[0].weight.detach()  # an MV2 hidden channel: its 1x1 expand filter
    torch.testing.assert_close(scores["encoder.blocks.8.hidden"], hidden.double().abs().sum((1, 2, 3)))
    up = scores["decoder.up1.up"]  # a transposed conv: its weight is (in, out, k, k)
    torch.testing.assert_close(up, meter.decoder.up1.upsample.weight.detach().double().abs().sum((0, 2, 3)))


def test_random_is_reproducible_per_draw(meter):
    a, b, c = random_importance(meter, 3), random_importance(meter, 3), random_importance(meter, 4)
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    assert all(((s >= 0) & (s < 1)).all() for s in a.values())
    assert torch.equal(unit_importance(meter, "random", draw=3)[GROUP], a[GROUP])


def test_criteria_refuse_what_they_cannot_rank(meter):
    assert CRITERIA == ("ds", "ds-inverse", "l1", "random")
    with pytest.raises(ValueError, match="criterion must be one of ds, ds-inverse, l1, random, got 'l2'"):
        unit_importance(meter, "l2")
    with pytest.raises(ValueError, match="dataset: criterion 'ds' measures depth selectivity on a data set"):
        unit_importance(meter, "ds")
    with pytest.raises(ValueError, match="draw must be a non-negative integer"):
        random_importance(meter, -1)


def test_data_with_one_depth_leaves_ds_undefined_and_is_refused(meter, depth_samples):
    flat = [{**s, "depth": torch.full_like(s["depth"], 2.0)} for s in depth_samples]
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="dataset: its dissection .* no unit with a defined depth"):
        unit_importance(meter, "ds", flat, **DISSECT)
