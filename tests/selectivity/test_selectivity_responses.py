"""The vectorised responses against a plain per-image, per-bin loop written from the formula of You et al., ICCV 2021."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seldepth.models import create_model
from seldepth.selectivity.bins import depth_to_bins, parse_bins
from seldepth.selectivity.dissect import Dissector
from seldepth.selectivity.responses import (
    bin_counts,
    binned_responses,
    interpolation_matrix,
    mean_responses,
    project_bins,
    selectivity_index,
)


# ----------------------------------------------------------------------------------------------
# The plain reference path: upsample every channel, then loop over images and bins.
# ----------------------------------------------------------------------------------------------
def loop_sums(activations: torch.Tensor, bins: torch.Tensor, num_bins: int):
    """sum_i S(A(x_i) * M_i^d) and sum_i S(M_i^d), per image, per bin, with F.interpolate."""
    B, K = activations.shape[:2]
    H, W = bins.shape[-2:]
    sums = torch.zeros(K, num_bins, dtype=torch.float64)
    counts = torch.zeros(num_bins, dtype=torch.float64)
    for i in range(B):
        up = F.interpolate(activations[i:i + 1].double(), size=(H, W), mode="bilinear", align_corners=False)[0]
        for d in range(num_bins):
            mask = bins[i] == d
            sums[:, d] += (up * mask).sum(dim=(1, 2))
            counts[d] += mask.sum()
    return sums, counts


def loop_ds(sums: torch.Tensor, counts: torch.Tensor):
    """DS per unit from the formula, with the reference conventions (signed R, DS from |R|, empty bins out)."""
    K, n = sums.shape
    ds = torch.zeros(K, dtype=torch.float64)
    pref = torch.zeros(K, dtype=torch.long)
    nonempty = [d for d in range(n) if counts[d] > 0]
    for k in range(K):
        r = {d: (sums[k, d] / counts[d]).item() for d in nonempty}
        dmax = max(nonempty, key=lambda d: (abs(r[d]), -d))
        others = [abs(r[d]) for d in nonempty if d != dmax]
        rmax, rest = abs(r[dmax]), sum(others) / len(others)
        ds[k] = 0.0 if rmax + rest == 0 else (rmax - rest) / (rmax + rest)
        pref[k] = dmax
    return ds, pref


def loop_dissect(model: nn.Module, layers: dict[str, str], batches, scheme, depth_range=(1e-3, 10.0)):
    """Hooks store activations; every layer is upsampled and looped over per image and per bin."""
    modules = dict(model.named_modules())
    acc = {}
    for inputs, depth, valid in batches:
        store = {}
        handles = [modules[p].register_forward_hook(lambda m, a, o, n=n: store.__setitem__(n, o.detach()))
                   for n, p in layers.items()]
        with torch.no_grad():
            model(inputs)
        for h in handles:
            h.remove()
        mask = valid & (depth > depth_range[0]) & (depth < depth_range[1])
        for name, act in store.items():
            n_b = scheme.bins_for(act.shape[1])
            bins = depth_to_bins(depth, scheme.edges(n_b), mask)
            s, c = loop_sums(act, bins, n_b)
            if name in acc:
                acc[name] = (acc[name][0] + s, acc[name][1] + c)
            else:
                acc[name] = (s, c)
    return acc


def random_depth(B, H, W, invalid_fraction=0.2, generator=None):
    depth = torch.rand(B, 1, H, W, generator=generator) * 11.0  # some above the 10 m range
    valid = torch.rand(B, 1, H, W, generator=generator) > invalid_fraction
    depth[~valid] = 0.0
    return depth, valid


# ----------------------------------------------------------------------------------------------
SIZES = [  # (h, w) of activations, (H, W) of depth: integer and non-integer factors, down-sampling too
    ((6, 8), (48, 64)), ((5, 7), (33, 41)), ((12, 16), (50, 70)), ((13, 9), (13, 9)), ((9, 11), (4, 6)), ((1, 3), (5, 7)),
]


@pytest.mark.parametrize("size,gt_size", SIZES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_binned_responses_equal_the_loop(size, gt_size, dtype):
    g = torch.Generator().manual_seed(hash((size, gt_size)) % 2**31)
    B, K, n_b = 3, 5, 7
    acts = torch.randn(B, K, *size, generator=g, dtype=torch.float64)
    bins = torch.randint(-1, n_b, (B, *gt_size), generator=g)
    ref_sums, ref_counts = loop_sums(acts, bins, n_b)
    out = binned_responses(acts.to(dtype), bins, n_b)
    assert out.sums.dtype == dtype and out.sums.shape == (K, n_b) and out.counts.shape == (n_b,)
    tol = 1e-9 if dtype == torch.float64 else 2e-6 * ref_sums.abs().max().item()
    torch.testing.assert_close(out.sums.double(), ref_sums, atol=tol, rtol=0)
    torch.testing.assert_close(out.counts.double(), ref_counts, atol=0, rtol=0)
    per = binned_responses(acts.to(dtype), bins, n_b, per_image=True)
    assert per.sums.shape == (B, K, n_b) and per.counts.shape == (B, n_b)
    torch.testing.assert_close(per.sums.sum(0).double(), ref_sums, atol=tol, rtol=0)
    torch.testing.assert_close(per.counts.sum(0).double(), ref_counts, atol=0, rtol=0)


def test_means_equal_the_loop_to_1e6_at_480x640():
    g = torch.Generator().manual_seed(1)
    acts = torch.randn(2, 4, 6, 8, generator=g)  # x80: METER's coarsest layers on NYU ground truth
    depth, valid = random_depth(2, 480, 640, generator=g)
    bins = depth_to_bins(depth, parse_bins("sid:8").edges(8), valid)
    ref_sums, ref_counts = loop_sums(acts, bins, 8)
    out = binned_responses(acts.double(), bins, 8)
    torch.testing.assert_close(mean_responses(out.sums, out.counts), mean_responses(ref_sums, ref_counts), atol=1e-6, rtol=0)


def test_projection_is_the_adjoint_of_upsampling():
    g = torch.Generator().manual_seed(2)
    bins = torch.randint(-1, 4, (2, 23, 31), generator=g)
    proj = project_bins(bins, 4, (5, 7), torch.float64)
    a = torch.randn(2, 1, 5, 7, generator=g, dtype=torch.float64)
    up = F.interpolate(a, size=(23, 31), mode="bilinear", align_corners=False)
    for d in range(4):
        lhs = (up[:, 0] * (bins == d)).sum(dim=(1, 2))
        rhs = (a[:, 0] * proj[:, d]).sum(dim=(1, 2))
        torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=0)
    # each valid pixel spreads a total weight of 1
    torch.testing.assert_close(proj.sum(dim=(2, 3)), bin_counts(bins, 4, per_image=True), atol=1e-12, rtol=0)


@pytest.mark.parametrize("n_in,n_out", [(6, 480), (7, 33), (9, 4), (1, 5), (5, 5)])
def test_interpolation_matrix_matches_torch(n_in, n_out):
    eye = torch.eye(n_in, dtype=torch.float64).view(1, n_in, n_in, 1)
    expected = F.interpolate(eye, size=(n_out, 1), mode="bilinear", align_corners=False)[0, :, :, 0].t()
    torch.testing.assert_close(interpolation_matrix(n_in, n_out), expected, atol=1e-15, rtol=0)


@pytest.mark.parametrize("per_image", [False, True])
def test_gradcheck(per_image):
    g = torch.Generator().manual_seed(3)
    acts = torch.randn(2, 3, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    bins = torch.randint(-1, 4, (2, 7, 9), generator=g)
    assert torch.autograd.gradcheck(lambda a: binned_responses(a, bins, 4, per_image=per_image).sums, (acts,))
    # and through R and DS, as the regulariser uses them (away from argmax ties)
    def ds(a):
        out = binned_responses(a, bins, 4)
        return selectivity_index(mean_responses(out.sums, out.counts), out.counts > 0).ds
    assert torch.autograd.gradcheck(ds, (acts,))


def test_gradient_flows_in_float32():
    acts = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = binned_responses(acts, torch.randint(-1, 3, (2, 9, 11)), 3)
    out.sums.sum().backward()
    assert acts.grad is not None and torch.isfinite(acts.grad).all()


# ----------------------------------------------------------------------------------------------
# DS: analytic cases and the formula
# ----------------------------------------------------------------------------------------------
def test_indicator_unit_has_ds_1_and_constant_unit_ds_0():
    # activations at the ground truth's resolution: upsampling is the identity
    g = torch.Generator().manual_seed(4)
    depth = torch.rand(3, 1, 12, 16, generator=g) * 9.5 + 0.3
    scheme = parse_bins("sid:4")  # 4 units -> N_b = min(4, 4)
    bins = depth_to_bins(depth, scheme.edges(4))
    acts = torch.stack([(bins == 2).double(), torch.full_like(bins, 3.5, dtype=torch.float64),
                        -(bins == 3).double() * 2.0, torch.zeros_like(bins, dtype=torch.float64)], dim=1)
    model = nn.Sequential(nn.Identity())
    d = Dissector(model, ["0"], scheme)
    d.update(acts, depth)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all bins are filled here: no warning
        res = d.compute().layers["0"]
    assert res.ds.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0])
    assert res.preferred_bin[0] == 2 and res.preferred_bin[2] == 3
    assert res.responses[2, 3] == pytest.approx(-2.0)  # R keeps the sign


def test_selectivity_index_formula_and_empty_bins():
    R = torch.tensor([[1.0, 2.0, -4.0, 0.0], [3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    nonempty = torch.tensor([True, True, True, False])
    sel = selectivity_index(R, nonempty)
    # unit 0: |R|max = 4, mean |R| of the other non-empty bins = 1.5
    assert sel.ds.tolist() == pytest.approx([(4 - 1.5) / (4 + 1.5), 0.0, 0.0])
    assert sel.preferred_bin.tolist()[0] == 2
    # left out, not counted as R = 0 (which would give (4 - 1) / (4 + 1))
    assert sel.ds[0] != pytest.approx(0.6)
    # fewer than two non-empty bins: undefined, 0, never NaN
    one = selectivity_index(R, torch.tensor([False, True, False, False]))
    assert not one.defined.any() and one.ds.tolist() == [0.0, 0.0, 0.0]
    none = selectivity_index(R, torch.zeros(4, dtype=torch.bool))
    assert torch.isfinite(none.ds).all()
    # an assigned bin (the regulariser's d_k) replaces the argmax
    assigned = selectivity_index(R[:1], nonempty, preferred=torch.tensor([0]))
    assert assigned.ds.item() == pytest.approx((1 - 3) / (1 + 3))


def test_invalid_pixels_change_nothing():
    g = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1))
    x = torch.randn(2, 3, 20, 28, generator=g)
    depth, valid = random_depth(2, 37, 53, generator=g)
    scheme = parse_bins("sid:4")

    def run(dep, val):
        d = Dissector(model, ["0", "2"], scheme)
        d.update(x, dep, val)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return d.compute()

    a = run(depth, valid)
    scrambled = torch.where(valid, depth, torch.rand(depth.shape, generator=g) * 9 + 0.5)  # in range but invalid
    b = run(scrambled, valid)
    for name in ("0", "2"):
        assert torch.equal(a.layers[name].sums, b.layers[name].sums)
        assert torch.equal(a.layers[name].counts, b.layers[name].counts)
    assert not torch.equal(run(scrambled, None).layers["0"].counts, a.layers["0"].counts)


# ----------------------------------------------------------------------------------------------
# Whole dissection of random models against the loop
# ----------------------------------------------------------------------------------------------
class SmallNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.b = nn.Conv2d(5, 12, 3, stride=3, padding=1)
        self.c = nn.Conv2d(12, 3, 1)
        self.selectivity_layers = {"first": "a", "second": "b", "third": "c"}

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("make_model,input_size,gt_size,spec", [
    (SmallNet, (25, 37), (41, 59), "sid:8"),
    (SmallNet, (16, 16), (48, 64), "linear:6:min=0,max=10"),
    (lambda: create_model("meter_xxs"), (64, 64), (70, 90), "sid:64"),
])
def test_dissector_equals_the_loop_on_random_models(make_model, input_size, gt_size, spec):
    torch.manual_seed(6)
    model = make_model().eval()
    g = torch.Generator().manual_seed(7)
    batches = []
    for b in (2, 1):
        depth, valid = random_depth(b, *gt_size, generator=g)
        batches.append((torch.randn(b, 3, *input_size, generator=g), depth, valid))
    scheme = parse_bins(spec)
    d = Dissector(model, None, scheme)
    for inputs, depth, valid in batches:
        d.update(inputs, depth, valid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = d.compute()
    ref = loop_dissect(model, d.layers, batches, scheme)
    assert list(result.layers) == list(d.layers)
    for name, layer in result.layers.items():
        sums, counts = ref[name]
        torch.testing.assert_close(layer.counts, counts, atol=0, rtol=0)
        torch.testing.assert_close(layer.responses, mean_responses(sums, counts), atol=1e-6, rtol=0)
        ds, pref = loop_ds(sums, counts)
        torch.testing.assert_close(layer.ds, ds, atol=1e-6, rtol=0)
        assert torch.equal(layer.preferred_bin, pref)
        assert layer.num_bins == min(scheme.num_bins, layer.num_units)


def test_float32_dissection_close_to_float64():
    torch.manual_seed(8)
    model = SmallNet().eval()
    x = torch.randn(2, 3, 30, 40)
    depth, valid = random_depth(2, 60, 80)
    out = {}
    for dt in (torch.float32, torch.float64):
        d = Dissector(model, None, "sid:8", dtype=dt)
        d.update(x, depth, valid)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out[dt] = d.compute()
    for name in out[torch.float64].layers:
        torch.testing.assert_close(out[torch.float32].layers[name].ds, out[torch.float64].layers[name].ds, atol=1e-5, rtol=0)


def test_response_argument_errors():
    acts = torch.randn(2, 3, 4, 5)
    with pytest.raises(ValueError, match="activations"):
        binned_responses(acts[0], torch.zeros(2, 8, 8, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="bins"):
        binned_responses(acts, torch.zeros(3, 8, 8, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"bins: indices must lie in \[-1, 3\)"):
        binned_responses(acts, torch.full((2, 8, 8), 3), 3)
    with pytest.raises(ValueError, match="bins: expected an integer"):
        binned_responses(acts, torch.zeros(2, 8, 8), 3)
    with pytest.raises(ValueError, match="projected"):
        binned_responses(acts, torch.zeros(2, 8, 8, dtype=torch.long), 3, projected=torch.zeros(2, 3, 4, 4))
