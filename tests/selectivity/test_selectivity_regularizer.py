"""The assign loss: hand-computed values, a reference loop, gradcheck, EMA, warm-up, training raises DS, config errors."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seldepth.cli import main
from seldepth.selectivity.bins import depth_to_bins, parse_bins
from seldepth.selectivity.dissect import dissect
from seldepth.selectivity.regularizer import (
    SelectivityConfig,
    SelectivityRegularizer,
    assigned_bins,
    assigned_selectivity,
)
from seldepth.selectivity.responses import binned_responses
from helpers import tiny_train_args


def test_assigned_bins_follow_the_formula_floor_k_over_k_per_bin():
    assert assigned_bins(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert assigned_bins(4, 4).tolist() == [0, 1, 2, 3]
    for K, n_b in ((16, 5), (24, 16), (160, 64), (7, 2)):
        expected = [math.floor(k / (K / n_b) + 1e-9) for k in range(K)]
        assert assigned_bins(K, n_b).tolist() == expected, (K, n_b)
        assert assigned_bins(K, n_b).bincount().min() >= 1  # every bin gets a unit when N_b <= K


def test_assigned_selectivity_hand_computed():
    # R = sums / counts: unit 0 -> [3, -1], unit 1 -> [1, -3]; assigned bins 0 and 1.
    sums = torch.tensor([[6.0, -4.0], [2.0, -12.0]])
    counts = torch.tensor([2.0, 4.0])
    out = assigned_selectivity(sums, counts)
    assert out.ds.tolist() == pytest.approx([(3 - 1) / (3 + 1), (3 - 1) / (3 + 1)])  # |R| per bin, signed R averaged
    assert float(out.mean_ds) == pytest.approx(0.5)
    # A unit selective to the WRONG bin gets a negative DS: assigned bin 0 has |R| 1, the other 3.
    out = assigned_selectivity(sums, counts, assigned=torch.tensor([1, 0]))
    assert out.ds.tolist() == pytest.approx([-0.5, -0.5])


def test_units_whose_assigned_bin_is_empty_are_left_out():
    # 3 units, 3 bins; bin 1 is empty. Unit 1 (assigned bin 1) is left out; empty bins are not R = 0.
    sums = torch.tensor([[4.0, 0.0, 1.0], [5.0, 0.0, 5.0], [1.0, 0.0, 2.0]])
    counts = torch.tensor([1.0, 0.0, 1.0])
    out = assigned_selectivity(sums, counts)
    assert out.included.tolist() == [True, False, True]
    ds0 = (4 - 1) / (4 + 1)  # others: only bin 2 (bin 1 empty, not counted as 0)
    ds2 = (2 - 1) / (2 + 1)
    assert float(out.mean_ds) == pytest.approx((ds0 + ds2) / 2)


class TwoLayer(nn.Module):
    def __init__(self, width=6):
        super().__init__()
        self.a = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.b = nn.Conv2d(width, 4, 3, stride=2, padding=1)
        self.out = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        return self.out(torch.relu(self.b(torch.tanh(self.a(x)))))


def _reference_loss(model, image, depth, valid, layers, scheme, weight, lo=1e-3, hi=10.0):
    """L_assign written from the formula of You et al., ICCV 2021, with explicit upsampling and loops over bins and units."""
    acts = {}
    hooks = [getattr(model, n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o)) for n in layers]
    model(image)
    for h in hooks:
        h.remove()
    total = 0.0
    for name in layers:
        a = acts[name].double()
        K = a.shape[1]
        n_b = min(scheme.num_bins, K)
        edges = scheme.edges(n_b)
        up = F.interpolate(a, size=depth.shape[-2:], mode="bilinear", align_corners=False)
        d = depth[:, 0].double()
        ok = valid[:, 0] & (d > lo) & (d < hi)
        R = torch.zeros(K, n_b, dtype=torch.float64)
        up = up.detach()
        nonempty = []
        for b in range(n_b):
            m = ok & (d > edges[b]) & (d <= edges[b + 1])
            nonempty.append(bool(m.any()))
            for k in range(K):
                R[k, b] = up[:, k][m].sum() / m.sum() if m.any() else 0.0
        ds = []
        for k in range(K):
            dk = math.floor(k / (K / n_b) + 1e-9)
            if not nonempty[dk]:
                continue
            others = [abs(float(R[k, j].detach())) for j in range(n_b) if j != dk and nonempty[j]]
            a_, b_ = abs(float(R[k, dk].detach())), sum(others) / len(others)
            ds.append((a_ - b_) / (a_ + b_))
        total += sum(ds) / len(ds)
    return -weight * total


def test_regularizer_equals_a_reference_loop_written_from_the_formula():
    torch.manual_seed(0)
    model = TwoLayer().double()
    image = torch.rand(2, 3, 16, 20, dtype=torch.float64)
    depth = torch.rand(2, 1, 32, 40, dtype=torch.float64) * 6 + 0.5
    valid = torch.rand(2, 1, 32, 40) > 0.1
    cfg = SelectivityConfig(layers=("a", "b"), weight=2.5, bins="sid:5")
    reg = SelectivityRegularizer(model, cfg)
    with reg.capture():
        model(image)
    out = reg(depth, valid)
    expected = _reference_loss(model, image, depth, valid, ["a", "b"], parse_bins("sid:5"), 2.5)
    assert float(out.loss.detach()) == pytest.approx(expected, abs=1e-9)
    assert set(out.ds) == {"a", "b"}
    # Outside capture() nothing is recorded; calling without a captured pass is an error, not a silent 0.
    model(image)
    with pytest.raises(RuntimeError, match="no activations captured"):
        reg(depth, valid)


def test_gradcheck_float64():
    torch.manual_seed(1)
    acts = torch.randn(2, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    depth = torch.rand(2, 12, 15, dtype=torch.float64) * 9 + 0.5
    bins = depth_to_bins(depth, parse_bins("sid:4").edges(4))

    def loss(a):
        r = binned_responses(a, bins, 4)
        return assigned_selectivity(r.sums, r.counts).mean_ds

    assert torch.autograd.gradcheck(loss, (acts,), eps=1e-6, atol=1e-6)


def test_ema_statistics_mix_batches_and_keep_gradients_of_the_current_one():
    torch.manual_seed(2)
    model = TwoLayer()
    cfg = SelectivityConfig(layers=("a",), weight=1.0, bins="sid:4", statistics="ema", momentum=0.75)
    reg = SelectivityRegularizer(model, cfg).train()
    batches = [(torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16) * 8 + 0.8) for _ in range(2)]
    stats = []
    for image, depth in batches:
        with reg.capture():
            model(image)
        acts = reg._acts["a"]
        bins = depth_to_bins(depth, reg.scheme.edges(4))
        stats.append(binned_responses(acts.detach(), bins, 4))
        out = reg(depth)
    s = 0.75 * stats[0].sums + 0.25 * stats[1].sums
    c = 0.75 * stats[0].counts + 0.25 * stats[1].counts
    assert float(out.loss) == pytest.approx(-float(assigned_selectivity(s, c).mean_ds), abs=1e-6)
    torch.testing.assert_close(reg.ema["a"][0], s)
    assert not reg.ema["a"][0].requires_grad
    out.loss.backward()
    assert model.a.weight.grad is not None and model.a.weight.grad.abs().sum() > 0


def test_warmup_gives_zero_loss_but_logs_selectivity():
    model = TwoLayer()
    reg = SelectivityRegularizer(model, SelectivityConfig(layers=("a",), weight=5.0, bins="sid:4"))
    with reg.capture():
        model(torch.rand(1, 3, 16, 16))
    out = reg(torch.rand(1, 1, 16, 16) * 8 + 0.8, active=False)
    assert float(out.loss) == 0.0 and math.isfinite(float(out.ds["a"]))


class TinyDepth(nn.Module):
    def __init__(self):
        super().__init__()
        self.feat = nn.Conv2d(3, 8, 5, padding=2)
        self.head = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return F.softplus(self.head(torch.relu(self.feat(x)))) + 0.1


def _depth_images(n=12, size=(24, 32), seed=0):
    """Images whose colour encodes depth through a smooth ramp: a learnable toy task with all depths present."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(n):
        lo, hi = float(torch.rand(1, generator=g)) * 2 + 0.8, float(torch.rand(1, generator=g)) * 4 + 4.0
        ramp = torch.linspace(lo, hi, size[0]).view(1, size[0], 1).expand(1, *size).clone()
        image = torch.cat([ramp / 10, 1 - ramp / 10, torch.rand(1, *size, generator=g) * 0.2])
        data.append({"image": image, "depth": ramp, "valid": torch.ones(1, *size, dtype=torch.bool), "meta": {}})
    return data


def _train(weight: float, steps: int = 60):
    torch.manual_seed(0)
    model = TinyDepth()
    data = _depth_images()
    reg = SelectivityRegularizer(model, SelectivityConfig(layers=("feat",), weight=weight, bins="sid:8"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    images = torch.stack([s["image"] for s in data])
    depth = torch.stack([s["depth"] for s in data])
    for _ in range(steps):
        with reg.capture():
            pred = model(images)
        loss = (pred - depth).abs().mean() + reg(depth).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    result = dissect(model, data, layers=["feat"], bins="sid:8", progress=False, preprocess=lambda x: x)
    rmse = float(((model(images) - depth) ** 2).mean().sqrt())
    return result.layers["feat"].mean_ds, rmse


def test_training_with_the_regularizer_raises_the_layer_selectivity():
    ds_plain, rmse_plain = _train(0.0)
    ds_reg, rmse_reg = _train(1.0)
    assert ds_reg > ds_plain + 0.1, (ds_plain, ds_reg)
    assert rmse_reg < 2.0 and rmse_plain < 2.0  # both still learn the task


def test_seldepth_train_logs_selectivity_and_keeps_the_ema_in_checkpoints(tiny_splits, tmp_path):
    out = tmp_path / "run"
    args = ["train", *tiny_train_args(tiny_splits, out), "--selectivity.layers", "[enc_7,dec_3]",
            "--selectivity.weight", "5.0", "--selectivity.statistics", "ema", "--selectivity.log_layers", "[enc_7,dec_3,enc_0]",
            "--data.input_size", "[64,128]"]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    for col in ("train/l_assign", "train/ds_assigned/enc_7", "train/ds_assigned/dec_3", "val/ds/enc_7", "val/ds/enc_0"):
        values = [float(r[col]) for r in rows if r.get(col)]
        assert values and all(math.isfinite(v) for v in values), col
    for r in (r for r in rows if r.get("train/l_assign")):  # the logged loss is -lambda * sum of the logged layer DS
        ds = float(r["train/ds_assigned/enc_7"]) + float(r["train/ds_assigned/dec_3"])
        assert float(r["train/l_assign"]) == pytest.approx(-5.0 * ds, rel=1e-4, abs=1e-5)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert set(ckpt["selectivity_ema"]) == {"enc_7", "dec_3"}
    assert ckpt["hyper_parameters"]["selectivity"]["weight"] == 5.0


@pytest.mark.parametrize("argv, key", [
    (["--selectivity.layers", "[enc_99]"], "selectivity.layers: no layer 'enc_99'"),
    (["--selectivity.log_layers", "[nope]"], "selectivity.log_layers: no layer 'nope'"),
    (["--selectivity.statistics", "median"], "selectivity.statistics"),
    (["--selectivity.weight", "-1"], "selectivity.weight"),
    (["--selectivity.bins", "quantile:8"], "selectivity.bins"),
    (["--selectivity.layers", "[enc_7]"], "data.input_size: meter_xxs pads inputs to multiples of 64"),  # 64x96
])
def test_bad_selectivity_config_names_the_key_before_work(argv, key, tiny_splits, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *tiny_train_args(tiny_splits, out), *argv]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()
