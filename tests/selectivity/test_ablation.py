"""Unit ablation (``seldepth ablate``): which units are ablated, what ablation does, results, files, CLI."""

import copy
import csv
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from seldepth.cli import main
from seldepth.evaluation import evaluate
from seldepth.models import create_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.evaluation.protocol import get_protocol
from seldepth.report.ablation_plots import plot_ablation
from seldepth.selectivity.ablation import (
    ablate,
    ablate_units,
    ablation_order,
    channel_means,
    num_ablated,
)
from seldepth.selectivity.dissect import EmptyBinWarning

IDENTITY = Preprocessing(input_size=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
SCHEMA = {"info", "layer", "num_units", "mode", "bins", "protocol", "fractions", "seeds", "baseline", "curves",
          "top_minus_random_rmse"}


def _dataset(n=4, size=(12, 16), depth=None, seed=0):
    """Sample dicts; depth constant ``depth`` metres, or random in [1, 5] m when None."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for i in range(n):
        d = torch.full((1, *size), float(depth)) if depth is not None else 1 + 4 * torch.rand(1, *size, generator=g)
        data.append({"image": torch.rand(3, *size, generator=g), "depth": d, "valid": torch.ones(1, *size, dtype=torch.bool),
                     "meta": {"index": i}})
    return data


class UnitSum(nn.Module):
    """Units with constant activation 1; depth = 1 + sum_k 0.01 * 2**k * A_k.

    Against ground truth 3.55 m (all 8 units on) the RMSE is 0.01 * (bitmask of the ablated units).
    """

    def __init__(self, k=8):
        super().__init__()
        self.feat = nn.Conv2d(3, k, 1)
        self.head = nn.Conv2d(k, 1, 1)
        with torch.no_grad():
            self.feat.weight.zero_()
            self.feat.bias.fill_(1.0)
            self.head.weight.copy_((0.01 * 2.0 ** torch.arange(k)).view(1, k, 1, 1))
            self.head.bias.fill_(1.0)
        self.selectivity_layers = {"feat": "feat"}
        self.preprocessing = IDENTITY

    def forward(self, x):
        return self.head(self.feat(x))


def _bitmask_rmse(units):
    return 0.01 * sum(2 ** int(u) for u in units)


DS = torch.tensor([0.5, 0.9, 0.1, 0.9, 0.3, 0.7, 0.2, 0.0])  # units 1 and 3 tie for the top


def test_top_and_bottom_follow_ds_with_ties_by_index_and_random_draws_by_seed():
    fractions = (0, 0.125, 0.25, 0.5, 1.0)
    r = ablate(UnitSum(), _dataset(depth=3.55), "feat", fractions=fractions, seeds=3, protocol="synthetic",
               selectivity=DS, progress=False)
    assert r.fractions == [0, 0.125, 0.25, 0.5, 1.0] and r.num_units == 8 and r.bins == "precomputed"
    assert r.baseline["rmse"] == pytest.approx(0, abs=1e-6)
    top = {row["fraction"]: row for row in r.curves["top"]}
    bottom = {row["fraction"]: row for row in r.curves["bottom"]}
    assert [top[f]["k"] for f in fractions] == [0, 1, 2, 4, 8]
    # top: units 1, 3 (tie, lower index first), 5, 0; bottom: 7, 2, 6, 4
    for f, units in [(0.125, [1]), (0.25, [1, 3]), (0.5, [0, 1, 3, 5]), (1.0, list(range(8)))]:
        assert r.ablated("top", f) == units
        assert top[f]["rmse"] == pytest.approx(_bitmask_rmse(units), abs=1e-5)
    for f, units in [(0.125, [7]), (0.25, [2, 7]), (0.5, [2, 4, 6, 7])]:
        assert r.ablated("bottom", f) == units
        assert bottom[f]["rmse"] == pytest.approx(_bitmask_rmse(units), abs=1e-5)
    assert top[0.25]["abs_rel"] == pytest.approx(0.10 / 3.55, abs=1e-5)
    assert bottom[0.5]["delta1"] == 0.0 and top[0.25]["delta1"] == 1.0  # pred 1.43 and 3.45 m vs 3.55 m
    # random: seed s ablates the first k of torch.randperm(8) seeded with s
    for row in r.curves["random"]:
        expected = [_bitmask_rmse(torch.randperm(8, generator=torch.Generator().manual_seed(s))[:row["k"]])
                    for s in range(3)]
        np.testing.assert_allclose(row["rmse_per_seed"], expected, atol=1e-5)
        assert row["rmse"] == pytest.approx(np.mean(row["rmse_per_seed"]), abs=1e-12)
        assert row["rmse_std"] == pytest.approx(np.std(row["rmse_per_seed"], ddof=0), abs=1e-12)
    rnd = {row["fraction"]: row for row in r.curves["random"]}
    assert len(set(np.round(rnd[0.25]["rmse_per_seed"], 6))) > 1  # seeds draw different units
    assert r.top_minus_random_rmse == pytest.approx([top[f]["rmse"] - rnd[f]["rmse"] for f in fractions])
    # fraction 0 is the baseline in every curve
    for curve in ("top", "random", "bottom"):
        first = r.curves[curve][0]
        assert first["fraction"] == 0 and first["k"] == 0
        assert all(first[m] == r.baseline[m] for m in ("rmse", "abs_rel", "delta1"))
    assert r.curves["random"][0]["rmse_std"] == 0.0
    # same seeds, same draws
    again = ablate(UnitSum(), _dataset(depth=3.55), "feat", fractions=fractions, seeds=3, protocol="synthetic",
                   selectivity=DS, progress=False)
    assert again.curves == r.curves


def test_order_and_rounding_helpers():
    assert ablation_order(DS, "top").tolist() == [1, 3, 5, 0, 4, 6, 2, 7]
    assert ablation_order(DS, "bottom").tolist() == [7, 2, 6, 4, 0, 5, 1, 3]
    assert ablation_order(DS, "random", 5).tolist() == torch.randperm(8, generator=torch.Generator().manual_seed(5)).tolist()
    assert [num_ablated(f, 10) for f in (0, 0.1, 0.25, 0.5, 1)] == [0, 1, 3, 5, 10]  # half up: 2.5 -> 3
    with pytest.raises(ValueError, match="curve"):
        ablation_order(DS, "middle")


class OneUnitMatters(nn.Module):
    """A random conv layer of 6 units; only unit 4 feeds the depth head."""

    J = 4

    def __init__(self):
        super().__init__()
        self.feat = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, 1, 1)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[0, self.J] = 1.5
            self.head.bias.fill_(1.0)
        self.selectivity_layers = {"feat": "feat"}
        self.preprocessing = IDENTITY

    def forward(self, x):
        return self.head(self.feat(x))


def _metrics(model, data, batch_size=2):
    m = evaluate(model, data, get_protocol("synthetic"), batch_size=batch_size, progress=False)["metrics"]
    return {k: m[k] for k in ("rmse", "abs_rel", "delta1")}


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_only_the_unit_that_feeds_the_output_matters(mode):
    torch.manual_seed(1)
    model = OneUnitMatters().eval()
    data = _dataset(n=5, size=(10, 12))
    ds = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.9, 0.5])  # unit 4 is the most selective
    r = ablate(model, data, "feat", fractions=(0, 1 / 6, 5 / 6), seeds=2, mode=mode, protocol="synthetic",
               selectivity=ds, batch_size=2, progress=False)
    assert r.baseline == _metrics(model, data)  # same numbers as ``seldepth eval``
    # bottom-5 = every unit but 4: the output does not change at all
    assert r.ablated("bottom", 5 / 6) == [0, 1, 2, 3, 5]
    assert r.curves["bottom"][2]["rmse"] == r.baseline["rmse"]
    # top-1 = unit 4: the same as removing its weight from the head (zero) or replacing it by its mean (mean)
    means = channel_means(model, data, "feat")
    acts = torch.cat([model.feat(s["image"][None]) for s in data])
    torch.testing.assert_close(means, acts.double().mean(dim=(0, 2, 3)), rtol=1e-6, atol=1e-9)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        if mode == "mean":
            reference.head.bias += reference.head.weight[0, OneUnitMatters.J, 0, 0] * float(means[OneUnitMatters.J])
        reference.head.weight[0, OneUnitMatters.J] = 0
    expected = _metrics(reference, data)
    got = r.curves["top"][1]
    assert r.ablated("top", 1 / 6) == [OneUnitMatters.J]
    assert got["rmse"] != pytest.approx(r.baseline["rmse"], abs=1e-3)
    for m in ("rmse", "abs_rel", "delta1"):
        assert got[m] == pytest.approx(expected[m], rel=1e-5, abs=1e-7), m


def test_mean_mode_on_a_constant_unit_changes_nothing_and_dissection_ranks_the_units():
    # constant activations: the mean is the activation itself, so mean ablation is exact identity
    with pytest.warns(UserWarning):  # DS undefined / empty bins on this tiny data set are reported
        r = ablate(UnitSum(), _dataset(depth=None), "feat", fractions=(0, 0.5, 1), seeds=2, mode="mean",
                   bins="sid:4", protocol="synthetic", progress=False)
    assert r.bins == "sid:4" and r.selectivity.shape == (8,)
    for curve in ("top", "random", "bottom"):
        for row in r.curves[curve]:
            assert row["rmse"] == r.baseline["rmse"] and row["abs_rel"] == r.baseline["abs_rel"]
    # the means taken during the dissection equal those of a separate pass
    torch.manual_seed(3)
    model, data = OneUnitMatters(), _dataset(n=3, size=(10, 12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = ablate(model, data, "feat", fractions=(0, 0.5), seeds=1, mode="mean", bins="sid:4",
                        protocol="synthetic", progress=False)
    given = ablate(model, data, "feat", fractions=(0, 0.5), seeds=1, mode="mean", protocol="synthetic",
                   selectivity=ranked.selectivity, progress=False)
    for curve in ("top", "random", "bottom"):
        assert ranked.curves[curve][1]["rmse"] == pytest.approx(given.curves[curve][1]["rmse"], rel=1e-9)
    # the same layer zeroed: every unit now matters
    z = ablate(UnitSum(), _dataset(depth=None), "feat", fractions=(0, 1), seeds=1, mode="zero", protocol="synthetic",
               selectivity=torch.zeros(8), progress=False)
    assert z.curves["top"][1]["rmse"] > z.baseline["rmse"] + 0.5


class SkipInPlace(nn.Module):
    """A prefix output reused after the ablated layer and modified in place there."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
        self.b = nn.Conv2d(5, 5, 3, padding=1)
        self.c = nn.Conv2d(5, 5, 1)
        self.head = nn.Conv2d(5, 1, 1)
        self.selectivity_layers = {"b": "b"}
        self.preprocessing = IDENTITY

    def forward(self, x):
        s = self.a(x)
        s += self.c(torch.relu(self.b(s)))
        return 2.0 + torch.tanh(self.head(s))


def test_results_equal_plain_evaluation_of_each_ablated_set_and_the_model_is_left_unchanged():
    torch.manual_seed(2)
    model = SkipInPlace().train()
    data = _dataset(n=5, size=(10, 12))
    x = torch.rand(2, 3, 10, 12)
    with torch.no_grad():
        before = model.eval()(x)
    model.train()
    ds = torch.tensor([0.3, 0.8, 0.1, 0.5, 0.6])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the replay of a.* reproduces the baseline: no fallback
        r = ablate(model, data, "b", fractions=(0, 0.4, 0.8), seeds=2, protocol="synthetic", selectivity=ds,
                   batch_size=2, progress=False)
    assert model.training  # restored
    for curve, seed, f in [("top", 0, 0.4), ("bottom", 0, 0.8), ("random", 1, 0.4), ("random", 0, 0.8)]:
        with ablate_units(model.b, r.ablated(curve, f, seed)):
            expected = _metrics(model, data)
        row = next(row for row in r.curves[curve] if row["fraction"] == f)
        got = row["rmse_per_seed"][seed] if curve == "random" else row["rmse"]
        assert got == pytest.approx(expected["rmse"], rel=1e-6, abs=1e-9), (curve, seed, f)
    # model unchanged: no hooks, no patched forward, same output
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, name
        assert "forward" not in module.__dict__, name
    with torch.no_grad():
        assert torch.equal(model.eval()(x), before)


def test_ablate_units_replaces_channels_and_removes_its_hook():
    conv = nn.Conv2d(3, 4, 1)
    x = torch.rand(2, 3, 5, 5)
    full = conv(x)
    with ablate_units(conv, [1, 3], fill=torch.tensor([9.0, 8.0, 7.0, 6.0])):
        out = conv(x)
    torch.testing.assert_close(out[:, [0, 2]], full[:, [0, 2]])
    assert (out[:, 1] == 8.0).all() and (out[:, 3] == 6.0).all()
    with pytest.raises(RuntimeError), ablate_units(conv, [0]):
        raise RuntimeError("boom")
    assert not conv._forward_hooks
    with pytest.raises(ValueError, match="units"), ablate_units(conv, [4]):
        conv(x)


class Untouchable(list):
    def __getitem__(self, i):
        raise AssertionError("data were read before the arguments were checked")


def test_bad_arguments_name_themselves_before_any_work():
    model = UnitSum()
    data = Untouchable(_dataset(n=2))
    with pytest.raises(ValueError, match="no layer 'nope'"):
        ablate(model, data, "nope", progress=False)
    with pytest.raises(ValueError, match="fractions"):
        ablate(model, data, "feat", fractions=(0, 1.5), progress=False)
    with pytest.raises(ValueError, match="fractions"):
        ablate(model, data, "feat", fractions=(-0.1,), progress=False)
    with pytest.raises(ValueError, match="seeds"):
        ablate(model, data, "feat", seeds=0, progress=False)
    with pytest.raises(ValueError, match="mode"):
        ablate(model, data, "feat", mode="half", progress=False)
    with pytest.raises(ValueError, match="protocol"):
        ablate(model, data, "feat", protocol="moon", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        ablate(model, data, "feat", batch_size=0, progress=False)
    with pytest.raises(ValueError, match="selectivity"):
        ablate(model, data, "feat", selectivity=torch.zeros(2, 4), progress=False)
    with pytest.raises(ValueError, match=r"selectivity: expected \(8,\)"):
        ablate(model, _dataset(n=2), "feat", selectivity=torch.zeros(5), progress=False)


def test_save_writes_json_csv_markdown_and_the_plot(tmp_path):
    r = ablate(UnitSum(), _dataset(depth=3.55), "feat", fractions=(0, 0.25, 0.5), seeds=2, protocol="synthetic",
               selectivity=DS, progress=False)
    paths = r.save(tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert set(doc) == SCHEMA and paths["json"].name == "ablation.json"
    assert doc["layer"] == "feat" and doc["num_units"] == 8 and doc["mode"] == "zero" and doc["seeds"] == 2
    assert doc["fractions"] == [0, 0.25, 0.5] and set(doc["info"]) == {"model", "data", "split"}
    assert set(doc["baseline"]) == {"rmse", "abs_rel", "delta1"}
    assert set(doc["curves"]["top"][1]) == set(doc["curves"]["bottom"][1]) == {"fraction", "k", "rmse", "abs_rel", "delta1"}
    assert set(doc["curves"]["random"][1]) == {"fraction", "k", "rmse", "rmse_std", "abs_rel", "delta1", "rmse_per_seed"}
    assert len(doc["curves"]["random"][1]["rmse_per_seed"]) == 2 and len(doc["top_minus_random_rmse"]) == 3
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 9 and {row["curve"] for row in rows} == {"top", "random", "bottom"}
    md = paths["md"].read_text()
    assert "| fraction | k | top-k RMSE | random-k RMSE (mean ± std over 2 seeds) | bottom-k RMSE |" in md
    assert "| 0.25 | 2 | 0.1000 |" in md and "fraction 0.5 (k=4)" in md
    png = plot_ablation(doc, tmp_path / "ablation.png")
    assert png.stat().st_size > 10_000


def test_cli_ablate(nyu_sample, tmp_path, capsys):
    model = create_model("meter_xxs")
    path = save_model_file(model, tmp_path / "meter.safetensors", Preprocessing(), {})
    out = tmp_path / "ablate"
    with pytest.warns(EmptyBinWarning, match="dec_3"):  # bin (0, 0.75] is empty on these images
        rc = main(["ablate", "--model", str(path), "--data", f"nyu:{nyu_sample}", "--layer", "dec_3", "--fractions",
                   "0,0.5", "--seeds", "2", "--batch-size", "5", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| fraction | k | top-k RMSE |" in printed and "fraction 0.5 (k=4):" in printed
    doc = json.loads((out / "ablation.json").read_text())
    assert set(doc) == SCHEMA and doc["layer"] == "dec_3" and doc["num_units"] == 8 and doc["protocol"] == "nyu"
    assert doc["info"] == {"model": str(path), "data": f"nyu:{nyu_sample}", "split": "test"}
    assert [row["k"] for row in doc["curves"]["random"]] == [0, 4]
    for name in ("ablation.csv", "ablation.md", "ablation.png"):
        assert (out / name).stat().st_size > 100, name
    rc = main(["ablate", "--model", str(path), "--data", f"nyu:{nyu_sample}", "--layer", "bogus", "--out", str(tmp_path / "x")])
    assert rc == 2
    assert "no layer 'bogus'" in capsys.readouterr().err and not (tmp_path / "x").exists()
