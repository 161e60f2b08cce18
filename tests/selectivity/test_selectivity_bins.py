import math

import pytest
import torch

from seldepth.selectivity.bins import (
    BinScheme,
    EdgeRefinement,
    bin_centres,
    depth_to_bins,
    linear_edges,
    log_edges,
    parse_bins,
    quantile_edges,
    sid_edges,
)


@pytest.mark.parametrize("n", [2, 3, 8, 16, 64])
@pytest.mark.parametrize("alpha,beta", [(0.75, 10.0), (3.0, 80.0)])
def test_sid_edges_follow_the_spec_formula(n, alpha, beta):
    e = sid_edges(n, alpha, beta)
    assert e.shape == (n + 1,) and e.dtype == torch.float64
    assert e[0] == 0 and e[1] == alpha and e[-1] == beta
    for i in range(1, n - 1):
        assert e[i + 1].item() == pytest.approx(math.exp(math.log(beta + 1 - alpha) * i / (n - 1)) - (1 - alpha), rel=1e-12)
    assert (e[1:] > e[:-1]).all()
    # t_0 = alpha and t_{N_b-1} = beta: the formula's own end points
    assert math.exp(0) - (1 - alpha) == pytest.approx(alpha)
    assert math.exp(math.log(beta + 1 - alpha)) - (1 - alpha) == pytest.approx(beta)


def test_other_schemes_edges():
    assert torch.allclose(linear_edges(4, 0, 8), torch.tensor([0, 2, 4, 6, 8], dtype=torch.float64))
    e = log_edges(3, 1, 8)
    assert torch.allclose(e, torch.tensor([1, 2, 4, 8], dtype=torch.float64))
    d = torch.rand(10_000, dtype=torch.float64) * 10
    q = quantile_edges(d, 5, 0, 10)
    counts = torch.bincount(depth_to_bins(d.view(1, 1, -1), q).flatten(), minlength=5)
    assert counts.min() >= 1990 and counts.max() <= 2010


def test_quantile_scheme_must_be_fitted_and_gives_equal_counts():
    scheme = parse_bins("quantile:8")
    assert not scheme.is_fitted
    with pytest.raises(ValueError, match="fitted"):
        scheme.edges()
    depth = torch.randn(4, 1, 30, 40).abs() * 3 + 0.5
    fitted = scheme.fit(depth)
    bins = depth_to_bins(depth, fitted.edges(8))
    counts = torch.bincount(bins[bins >= 0], minlength=8)
    assert counts.max() - counts.min() <= 2
    assert fitted.edges(4).shape == (5,)


@pytest.mark.parametrize("spec,kind,n,params", [
    ("sid:64", "sid", 64, {"alpha": 0.75, "beta": 10.0}),
    ("sid", "sid", 64, {"alpha": 0.75, "beta": 10.0}),
    ("sid:32:alpha=3,beta=80", "sid", 32, {"alpha": 3.0, "beta": 80.0}),
    ("sid:16:preset=kitti", "sid", 16, {"alpha": 3.0, "beta": 80.0}),
    ("linear:32", "linear", 32, {"min": 0.0, "max": 10.0}),
    ("log:24:min=0.25,max=12", "log", 24, {"min": 0.25, "max": 12.0}),
    ("quantile:64", "quantile", 64, {"min": 0.0, "max": 10.0}),
])
def test_parse_bins(spec, kind, n, params):
    s = parse_bins(spec)
    assert (s.kind, s.num_bins, s.params) == (kind, n, params)
    assert parse_bins(s.spec()) == s


@pytest.mark.parametrize("spec,match", [
    ("cubic:8", "unknown kind"), ("sid:x", "not an integer"), ("sid:1", "num_bins"),
    ("sid:8:gamma=2", "not 'gamma'"), ("sid:8:alpha=abc", "not a number"), ("sid:8:alpha", "key=value"),
    ("sid:8:alpha=20", "alpha < beta"), ("log:8:min=0", "0 < min"), ("", "bins"), ("sid:8:preset=mars", "preset"),
])
def test_parse_bins_errors_name_the_argument(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_bins(spec)


def test_bins_per_layer_is_min_of_requested_and_units():
    s = parse_bins("sid:64")
    assert [s.bins_for(k) for k in (8, 16, 64, 160)] == [8, 16, 64, 64]
    assert s.bins_for(1) == 2  # DS needs two bins


def test_depth_to_bins_excludes_invalid_and_out_of_range_never_bin_0():
    e = sid_edges(4)  # 0, 0.75, 1.92, 4.47, 10
    depth = torch.tensor([[[0.0, -1.0, 0.5, 0.75, 0.7500001, 1.9, 9.99, 10.0, 10.5, math.nan, math.inf, 3.0]]])
    valid = torch.ones_like(depth, dtype=torch.bool)
    valid[..., -1] = False
    bins = depth_to_bins(depth, e, valid)
    assert bins.tolist() == [[[-1, -1, 0, 0, 1, 1, 3, 3, -1, -1, -1, -1]]]
    assert depth_to_bins(depth[:, None], e).shape == (1, 1, 12)  # (B, 1, H, W) accepted


def test_depth_to_bins_shape_errors():
    with pytest.raises(ValueError, match="depth"):
        depth_to_bins(torch.rand(2, 3, 4, 5), sid_edges(4))
    with pytest.raises(ValueError, match="valid"):
        depth_to_bins(torch.rand(2, 4, 5), sid_edges(4), torch.ones(2, 4, 4, dtype=torch.bool))


def test_edge_refinement_equals_separate_searches():
    sets = [sid_edges(n) for n in (8, 16, 24, 48, 64)] + [linear_edges(10, 0.5, 9.0), log_edges(7, 1.0, 11.0)]
    depth = torch.rand(2, 1, 40, 50) * 12
    depth[0, 0, 0, :5] = torch.tensor([math.nan, 0.0, 0.75, 10.0, -2.0])
    valid = torch.rand(2, 1, 40, 50) > 0.2
    ref = EdgeRefinement(sets)
    slots = ref.slots(depth, valid)
    assert slots.min() >= 0 and slots.max() <= ref.num_slots - 1
    for e in sets:
        assert torch.equal(ref.coarse(slots, e), depth_to_bins(depth, e, valid))
        spare = ref.coarse(slots, e, invalid=len(e) - 1)
        assert torch.equal(spare == len(e) - 1, depth_to_bins(depth, e, valid) == -1)
    # slots of a coarser refinement, then its bins: the same again
    sub = EdgeRefinement(sets[:2])
    sub_slots = ref.slot_map(sub.union)[slots]
    assert torch.equal(sub_slots, sub.slots(depth, valid))
    with pytest.raises(ValueError, match="not all"):
        ref.slot_map(torch.tensor([0.0, 0.123, 10.0], dtype=torch.float64))


def test_scheme_validation_and_centres():
    with pytest.raises(ValueError, match="unknown kind"):
        BinScheme("cubic", 8, {})
    with pytest.raises(ValueError, match="needs parameters"):
        BinScheme("sid", 8, {"alpha": 1.0})
    assert torch.allclose(bin_centres(linear_edges(2, 0, 4)), torch.tensor([1.0, 3.0], dtype=torch.float64))
