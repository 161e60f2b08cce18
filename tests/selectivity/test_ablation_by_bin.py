"""Ablation per depth range (``seldepth ablate --by-bin``): groups, controls, matrices, dominance, files, CLI."""

import csv
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from seldepth.cli import main
from seldepth.evaluation.protocol import get_protocol
from seldepth.models import create_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.report.by_bin_plots import plot_by_bin, save_by_bin
from seldepth.report.html import FigureFolder, ablation_section
from seldepth.selectivity.ablation_by_bin import (
    UnitAssignment,
    ablate_by_bin,
    coarse_groups,
    control_matrices,
    diagonal_dominance,
    random_units,
    read_assignment,
)
from seldepth.selectivity.bins import parse_bins, sid_edges
from seldepth.selectivity.dissect import EmptyBinWarning, dissect

IDENTITY = Preprocessing(input_size=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
BINS = "linear:64"  # a layer of 8 units: 8 bins of 1.25 m over (0, 10]; 4 groups of 2.5 m, each 2 fine bins
GROUP_EDGES = np.array([0.0, 2.5, 5.0, 7.5, 10.0])


class Bands(nn.Module):
    """Unit k is 1 where the depth the image encodes (10 x red) lies in (1.25 k, 1.25 (k + 1)], else 0."""

    def __init__(self, units=8):
        super().__init__()
        edges = torch.linspace(0, 10, units + 1)
        self.register_buffer("lo", edges[:-1].view(1, -1, 1, 1))
        self.register_buffer("hi", edges[1:].view(1, -1, 1, 1))

    def forward(self, x):
        d = 10 * x[:, :1]
        return ((d > self.lo) & (d <= self.hi)).float()


class OneBandMatters(nn.Module):
    """Depth = d (1.1 - 0.1 A_J), d = 10 x red: exact where unit J is on (its band), 10 % too far elsewhere.

    Silencing unit J makes its band 10 % too far; no other unit feeds the output.
    """

    def __init__(self, j):
        super().__init__()
        self.bands = Bands()
        self.j = j
        self.selectivity_layers = {"bands": "bands"}
        self.preprocessing = IDENTITY

    def forward(self, x):
        a = self.bands(x)
        return 10 * x[:, :1] * (1.1 - 0.1 * a[:, self.j:self.j + 1])


def _dataset(n=4, size=(12, 16), seed=0):
    """Images whose red channel encodes the ground truth: depth = 10 x red, uniform in (0.3, 9.8) m."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for i in range(n):
        image = torch.rand(3, *size, generator=g)
        image[0] = 0.03 + 0.95 * torch.rand(*size, generator=g)
        data.append({"image": image, "depth": 10 * image[:1], "valid": torch.ones(1, *size, dtype=torch.bool),
                     "meta": {"index": i}})
    return data


def _group_rmse(data, pred_of, group):
    """Per image RMSE over the pixels whose depth is in (E_g, E_g+1], averaged over the images that have such pixels."""
    lo, hi = GROUP_EDGES[group], GROUP_EDGES[group + 1]
    values = []
    for s in data:
        gt = s["depth"][0].double().numpy()
        pred = pred_of(s["image"]).double().numpy()
        m = (gt > lo) & (gt <= hi)
        if m.any():
            values.append(np.sqrt(np.mean((pred[m] - gt[m]) ** 2)))
    return float(np.mean(values))


def _run(j, mode="zero", seeds=3, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBinWarning)
        return ablate_by_bin(OneBandMatters(j), _dataset(), "bands", groups=4, seeds=seeds, mode=mode, bins=BINS,
                             protocol="synthetic", batch_size=3, progress=False, **kwargs)


def test_the_unit_of_one_depth_range_hurts_that_range_and_nothing_else():
    # unit 3 (band (3.75, 5] m, group 1) is never drawn by the controls of 2 units, seeds 0..2: {0, 4}, {4, 5}, {0, 4}
    assert all(3 not in random_units(8, 2, s) for s in range(3))
    r = _run(3)
    assert r.group_edges.tolist() == GROUP_EDGES.tolist() and r.group_scheme == "linear:4:min=0,max=10"
    assert r.unit_bins.tolist() == list(range(8))  # each unit prefers its own band
    assert r.unit_groups.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and r.units_per_group == [2, 2, 2, 2]
    assert r.images_per_group.tolist() == [4, 4, 4, 4] and r.num_images == 4
    excess = r.excess("rmse")
    assert int(np.argmax(excess[1])) == 1 and excess[1, 1] > 0.1
    np.testing.assert_allclose(np.delete(excess, 1, axis=0), 0.0, atol=1e-6)  # other groups' units change nothing
    np.testing.assert_allclose(np.delete(excess[1], 1), 0.0, atol=1e-6)  # nor does unit 3 outside its range
    # hand check: group 1 = (2.5, 5] m; intact: 10 % error on (2.5, 3.75], none on (3.75, 5]; ablated: 10 % everywhere
    model = OneBandMatters(3)
    intact = _group_rmse(_dataset(), lambda x: model(x[None])[0, 0], 1)
    ablated = _group_rmse(_dataset(), lambda x: 1.1 * 10 * x[0], 1)
    assert r.intact["rmse"][1] == pytest.approx(intact, rel=1e-5)
    assert r.ablated["rmse"][1, 1] == pytest.approx(ablated, rel=1e-5)
    assert excess[1, 1] == pytest.approx(ablated - intact, rel=1e-4)
    d = r.dominance("rmse")
    # row 1 peaks on the diagonal; the rows of zeros tie everywhere: the share of their columns near the diagonal
    assert d["near_diagonal"] == pytest.approx((2 / 4 + 1 + 3 / 4 + 2 / 4) / 4) and d["rows"] == 4
    assert d["chance"] == pytest.approx((2 / 4 + 3 / 4 + 3 / 4 + 2 / 4) / 4)
    assert d["contrast"] == pytest.approx(excess[1, 1] / 4, rel=1e-4)  # one diagonal entry of four is non-zero
    assert r.overall["ablated"]["rmse"][1] > r.overall["intact"]["rmse"]


def test_random_controls_are_seeded_have_the_groups_size_and_enter_the_excess():
    # unit 5 (band (6.25, 7.5], group 2) is drawn by the control of seed 1 only ({4, 5}): 1 of 3 seeds
    r = _run(5, mode="mean")
    for g in range(4):
        assert [len(units) for units in r.random_sets[g]] == [2, 2, 2]
        assert r.random_sets[g] == [random_units(8, 2, s) for s in range(3)]
    assert random_units(8, 2, 1) == [4, 5] and random_units(8, 3, 7) == random_units(8, 3, 7)
    inc = r.increase("rmse")[2, 2]
    assert inc > 0.05
    np.testing.assert_allclose(r.random["rmse"][:, 1, 2], r.ablated["rmse"][2, 2], rtol=1e-6)  # seed 1 holds unit 5
    np.testing.assert_allclose(r.random["rmse"][:, [0, 2], 2], r.intact["rmse"][2], rtol=1e-6)
    excess = r.excess("rmse")
    assert excess[2, 2] == pytest.approx(inc * 2 / 3, rel=1e-5)
    np.testing.assert_allclose(excess[[0, 1, 3], 2], -inc / 3, rtol=1e-5)
    # mean mode: unit 5 set to its mean, the share of pixels in its band
    share = float(np.mean([((s["depth"] > 6.25) & (s["depth"] <= 7.5)).float().mean() for s in _dataset()]))
    expected = _group_rmse(_dataset(), lambda x: 10 * x[0] * (1.1 - 0.1 * share), 2)
    assert r.ablated["rmse"][2, 2] == pytest.approx(expected, rel=1e-5)
    # the control's null matrices: seed j's increase minus the mean of the others'
    nulls = control_matrices(r.random_increase("rmse"))
    assert nulls.shape == (3, 4, 4)
    assert nulls[1, 0, 2] == pytest.approx(inc, rel=1e-5) and nulls[0, 0, 2] == pytest.approx(-inc / 2, rel=1e-5)
    control = r.dominance("rmse")["control"]
    assert control["contrast_per_seed"] == pytest.approx([diagonal_dominance(m)["contrast"] for m in nulls])
    assert control["contrast_std"] == pytest.approx(np.std(control["contrast_per_seed"]))
    # same seeds, same numbers
    again = _run(5, mode="mean")
    np.testing.assert_array_equal(again.random["rmse"], r.random["rmse"])


def test_grouping_by_assigned_bins_needs_no_dissection_and_leaves_empty_rows_nan(monkeypatch):
    def no_dissection(*args, **kwargs):
        raise AssertionError("assigned grouping must not dissect")

    monkeypatch.setattr("seldepth.selectivity.ablation_by_bin.dissect", no_dissection)
    # linear:16 bins 0 and 15 have centres 0.31 and 9.69 m: groups 0 and 3
    assignment = UnitAssignment(torch.tensor([0, 0, 0, 0, 15, 15, 15, 15]), num_bins=16, scheme="linear:16")
    r = _run(3, grouping=assignment, seeds=2)
    assert r.grouping == "assigned" and r.units_per_group == [4, 0, 0, 4]
    assert r.unit_groups.tolist() == [0, 0, 0, 0, 3, 3, 3, 3]
    assert np.isnan(r.ablated["rmse"][[1, 2]]).all() and np.isnan(r.excess("abs_rel")[[1, 2]]).all()
    assert r.random_sets[1] == [] and [len(s) for s in r.random_sets[0]] == [4, 4]
    assert int(np.nanargmax(r.increase("rmse")[0])) == 1  # units 0..3 hold unit 3, band (3.75, 5] m
    assert diagonal_dominance(r.excess("rmse"))["rows"] == 2


def test_a_given_dissection_is_used_as_is():
    model, data = OneBandMatters(3), _dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBinWarning)
        layer = dissect(model, data, layers=["bands"], bins=BINS, progress=False).layers["bands"]
    layer.preferred_bin = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0])  # reversed
    r = ablate_by_bin(model, data, "bands", groups=4, dissection=layer, seeds=1, bins=BINS, protocol="synthetic",
                      progress=False)
    assert r.bins == "precomputed" and r.unit_groups.tolist() == [3, 3, 2, 2, 1, 1, 0, 0]
    assert int(np.argmax(r.increase("rmse")[2])) == 1  # unit 3 now sits in group 2; it still hurts (2.5, 5] m
    assert np.isnan(r.dominance("rmse")["control"]["contrast_mean"])  # one seed: no control spread


def test_scores_per_group_equal_the_evaluation_metrics_restricted_to_the_group():
    from seldepth.evaluation.metrics import DepthMetrics
    from seldepth.selectivity.ablation_by_bin import _GroupPixels, _GroupScores

    g = torch.Generator().manual_seed(4)
    gt = 12 * torch.rand(3, 1, 48, 64, generator=g)  # some beyond 10 m, outside the range
    gt[2] = 1.0  # image 2 lies in group 1 only
    pred = gt * (0.8 + 0.4 * torch.rand(3, 1, 48, 64, generator=g)) + 30 * (torch.rand(3, 1, 48, 64, generator=g) > 0.99)
    valid = torch.rand(3, 1, 48, 64, generator=g) > 0.1
    protocol, edges = get_protocol("nyu"), sid_edges(4)  # with the Eigen crop
    scores = _GroupScores(protocol, 4)
    scores.update(pred, gt, valid, _GroupPixels(gt, valid, edges, protocol))
    got = scores.compute()
    for k in range(4):
        reference = DepthMetrics(protocol)
        reference.update(pred, gt, valid & (gt > edges[k]) & (gt <= edges[k + 1]))
        expected = reference.compute()
        assert got["images"][k] == expected["num_images"] == (3 if k == 1 else 2)
        for m in ("rmse", "abs_rel"):
            assert got[m][k] == pytest.approx(expected[m], rel=1e-9), (k, m)


def test_fine_bins_go_to_the_group_of_their_centre():
    # centres 1, 3, 5, 7; 3 lies on the edge 3: right-closed, so group 0
    assert coarse_groups(torch.tensor([0.0, 2, 4, 6, 8]), torch.tensor([0.0, 3, 8])).tolist() == [0, 0, 1, 1]
    assert coarse_groups(torch.tensor([0.0, 2, 4, 6, 8]), torch.tensor([2.5, 8.0])).tolist() == [-1, 0, 0, 0]
    # sid:64 into sid:8: the coarse edges are fine edges (t_9j = T_j): bin (0, 0.75] alone, then 9 fine bins each
    groups = coarse_groups(parse_bins("sid:64").edges(64), parse_bins("sid:64").edges(8))
    assert groups.bincount().tolist() == [1, 9, 9, 9, 9, 9, 9, 9]
    assert groups[:11].tolist() == [0] + [1] * 9 + [2]
    # sid:64 into sid:3 (edges 0, 0.75, 3.41, 10): fine centres decide
    fine, coarse = sid_edges(64), sid_edges(3)
    centres = (0.5 * (fine[1:] + fine[:-1])).numpy()
    expected = np.searchsorted(coarse.numpy(), centres, side="left") - 1
    assert coarse_groups(fine, coarse).tolist() == expected.tolist()


def test_diagonal_dominance_on_a_hand_built_matrix():
    nan = float("nan")
    m = [[3.0, 1.0, 0.0], [nan, nan, nan], [4.0, 2.0, 1.0]]
    d = diagonal_dominance(m)
    # row 0: max at 0 (hit); row 2: max at 0, |2 - 0| = 2 (miss); chance: 2 of 3 columns near the diagonal per row
    assert d["near_diagonal"] == 0.5 and d["rows"] == 2
    assert diagonal_dominance([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])["near_diagonal"] == pytest.approx(
        (1 + 1 + 0.5) / 3)  # row 2 ties at columns 0 (far) and 2 (near)
    assert d["chance"] == pytest.approx(2 / 3)
    assert d["contrast"] == pytest.approx((3 + 1) / 2 - (1 + 0 + 4 + 2) / 4)  # 2 - 1.75
    no_diagonal = diagonal_dominance([[nan, 1.0], [2.0, nan]])  # only finite entries count
    assert no_diagonal["near_diagonal"] == 1.0 and no_diagonal["chance"] == 1.0 and np.isnan(no_diagonal["contrast"])
    empty = diagonal_dominance(np.full((3, 3), np.nan))
    assert empty["rows"] == 0 and np.isnan(empty["near_diagonal"])
    np.testing.assert_allclose(control_matrices(np.array([[[1.0], [2.0], [6.0]]]))[:, 0, 0], [-3.0, -1.5, 4.5])
    assert np.isnan(control_matrices(np.ones((2, 1, 2)))).all()


class Untouchable(list):
    def __getitem__(self, i):
        raise AssertionError("data were read before the arguments were checked")


def test_bad_arguments_name_themselves_before_any_work(tmp_path):
    model, data = OneBandMatters(3), Untouchable(_dataset(n=2))
    with pytest.raises(ValueError, match="groups must be an integer >= 2, got 1"):
        ablate_by_bin(model, data, "bands", groups=1, progress=False)
    with pytest.raises(ValueError, match="groups must be an integer >= 2"):
        ablate_by_bin(model, data, "bands", groups=2.5, progress=False)
    with pytest.raises(ValueError, match="grouping: expected 'preferred' or a UnitAssignment, got 'nearest'"):
        ablate_by_bin(model, data, "bands", grouping="nearest", progress=False)
    with pytest.raises(ValueError, match="grouping: 'assigned' needs"):
        ablate_by_bin(model, data, "bands", grouping="assigned", progress=False)
    with pytest.raises(ValueError, match="no layer 'nope'"):
        ablate_by_bin(model, data, "nope", progress=False)
    with pytest.raises(ValueError, match="seeds"):
        ablate_by_bin(model, data, "bands", seeds=0, progress=False)
    with pytest.raises(ValueError, match="mode"):
        ablate_by_bin(model, data, "bands", mode="half", progress=False)
    with pytest.raises(ValueError, match="protocol: median scaling"):
        ablate_by_bin(model, data, "bands", protocol=get_protocol("synthetic", median_scaling=True), progress=False)
    with pytest.raises(ValueError, match="grouping.bins"):
        UnitAssignment(torch.tensor([0, 4]), num_bins=4, scheme="sid:4")
    with pytest.raises(ValueError, match="grouping: the assignment has 2 units, 'bands' has 8"):
        ablate_by_bin(model, _dataset(n=2), "bands", grouping=UnitAssignment(torch.tensor([0, 1]), 2, "sid:2"),
                      progress=False)
    with pytest.raises(ValueError, match="bins: the depth groups sid:4 span 0...80 m"):
        ablate_by_bin(model, _dataset(n=2), "bands", groups=4, bins="sid:64:preset=kitti",
                      grouping=UnitAssignment(torch.zeros(8, dtype=torch.long), 4, "linear:4"), progress=False)
    # assignment files
    path = tmp_path / "selectivity_assignment.json"
    path.write_text(json.dumps({"enc_6": {"num_bins": 4, "bins_spec": "sid:4", "assigned": [0, 1, 2, 3]}}))
    assert read_assignment(path, "enc_6").bins.tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"selectivity_assignment.json: no entry for layer 'enc_7' \(layers: enc_6\)"):
        read_assignment(path, "enc_7")
    path.write_text(json.dumps({"enc_6": {"num_bins": 4, "assigned": [0]}}))
    with pytest.raises(ValueError, match="enc_6: missing bins_spec"):
        read_assignment(path, "enc_6")
    path.write_text(json.dumps({"enc_6": {"num_bins": 4, "bins_spec": "sid:4", "assigned": [0, 9]}}))
    with pytest.raises(ValueError, match=r"enc_6.assigned: expected a list of integers in \[0, 4\)"):
        read_assignment(path, "enc_6")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON file"):
        read_assignment(path, "enc_6")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_assignment(tmp_path / "missing.json", "enc_6")


def test_save_writes_json_csv_and_the_heatmap_and_leaves_the_model_unchanged(tmp_path):
    model = OneBandMatters(3).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBinWarning)
        r = ablate_by_bin(model, _dataset(), "bands", groups=4, seeds=2, bins=BINS, protocol="synthetic",
                          progress=False)
    assert model.training
    for name, module in model.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, name
    paths = save_by_bin(r, tmp_path)
    doc = json.loads(paths["json"].read_text())
    assert {"layer", "num_units", "mode", "grouping", "bins", "group_scheme", "groups", "group_edges", "group_labels",
            "units_per_group", "group_units", "images_per_group", "intact", "ablated", "random", "random_units",
            "overall", "increase", "excess", "dominance", "conventions", "info"} <= set(doc)
    assert doc["group_edges"] == GROUP_EDGES.tolist() and doc["group_labels"][1] == "2.50-5.00"
    assert doc["group_units"] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert np.array(doc["random"]["rmse"]).shape == (4, 2, 4) and np.array(doc["excess"]["abs_rel"]).shape == (4, 4)
    assert set(doc["dominance"]["rmse"]["control"]) == {"near_diagonal_per_seed", "near_diagonal_mean",
                                                        "near_diagonal_std", "contrast_per_seed", "contrast_mean",
                                                        "contrast_std"}
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == 16
    row = next(x for x in rows if x["ablated_group"] == "1" and x["scored_group"] == "1")
    assert float(row["rmse_excess"]) == pytest.approx(r.excess("rmse")[1, 1])
    assert float(row["ablated_to_m"]) == 5.0 and row["units"] == "2"
    assert paths["png"].stat().st_size > 10_000
    text = r.format_table()
    assert "RMSE excess (m)" in text and "2.50-5.00" in text
    assert "share of the 4 ablated groups whose largest excess is on or next to the diagonal 0.69 (chance 0.62" in text
    # the heatmap also draws from a document with empty (null) rows
    doc["excess"]["rmse"][0] = [None] * 4
    assert plot_by_bin(doc, tmp_path / "again.png").stat().st_size > 10_000
    # the report shows the heatmap of a run folder's ablate_by_bin/by_bin.json, beside its ablation curves if any
    run_dir = tmp_path / "run"
    save_by_bin(r, run_dir / "ablate_by_bin")

    class Run:
        name, path = "run", run_dir

        def ablation(self):
            return None

    page = ablation_section([Run()], FigureFolder(tmp_path / "figures"))
    assert page.count("<img ") == 1 and "units of bands grouped by the depth range they prefer" in page


def test_cli_ablate_by_bin(nyu_sample, tmp_path, capsys):
    model = create_model("meter_xxs")
    path = save_model_file(model, tmp_path / "meter.safetensors", Preprocessing(), {})
    out = tmp_path / "by_bin"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBinWarning)  # bin (0, 0.75] is empty on these images
        rc = main(["ablate", "--model", str(path), "--data", f"nyu:{nyu_sample}", "--layer", "dec_3", "--by-bin",
                   "--groups", "3", "--seeds", "2", "--batch-size", "5", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "RMSE excess (m)" in printed and "random control" in printed
    doc = json.loads((out / "by_bin.json").read_text())
    assert doc["layer"] == "dec_3" and doc["groups"] == 3 and doc["num_units"] == 8 and doc["protocol"] == "nyu"
    assert doc["info"] == {"model": str(path), "data": f"nyu:{nyu_sample}", "split": "test"}
    assert sum(doc["units_per_group"]) == 8 and doc["images_per_group"][0] == 0  # no ground truth below 0.75 m
    for name in ("by_bin.json", "by_bin.csv", "by_bin.png"):
        assert (out / name).stat().st_size > 100, name
    # a bad --groups: one line, no traceback, nothing written
    rc = main(["ablate", "--model", str(path), "--data", f"nyu:{nyu_sample}", "--layer", "dec_3", "--by-bin",
               "--groups", "1", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines()[-1] == "seldepth ablate: error: groups must be an integer >= 2, got 1"
    assert "Traceback" not in err and not (tmp_path / "x").exists()
    # an assignment file without the layer
    assignment = tmp_path / "selectivity_assignment.json"
    assignment.write_text(json.dumps({"enc_6": {"num_bins": 4, "bins_spec": "sid:4", "assigned": [0, 1, 2, 3]}}))
    rc = main(["ablate", "--model", str(path), "--data", f"nyu:{nyu_sample}", "--layer", "dec_3", "--by-bin",
               "--group-by", "assigned", "--assignment", str(assignment), "--out", str(tmp_path / "y")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2 and line.startswith(f"seldepth ablate: error: {assignment}: no entry for layer 'dec_3'")


def test_units_tuned_groups_only_the_tuned_units():
    from types import SimpleNamespace

    model, data = OneBandMatters(3), _dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmptyBinWarning)
        layer = dissect(model, data, layers=["bands"], bins=BINS, progress=False).layers["bands"]
    kinds = ["ramp", "tuned", "tuned", "flat", "tuned", "tuned", "tuned", "ramp"]
    layer.__dict__["_tuning"] = SimpleNamespace(kinds=kinds)  # the dissection's classification, set by hand
    r = ablate_by_bin(model, data, "bands", groups=4, dissection=layer, units="tuned", seeds=2, bins=BINS,
                      protocol="synthetic", progress=False)
    assert r.units == "tuned" and r.to_dict()["units"] == "tuned"
    assert r.unit_groups.tolist() == [-1, 0, 1, -1, 2, 2, 3, -1]  # units 0, 3, 7 are in no group
    assert r.units_per_group == [1, 1, 2, 1]
    assert np.allclose(r.increase("rmse"), 0)  # unit 3, the only one that matters, is not ablated as a group
    with pytest.raises(ValueError, match="units: expected one of all, tuned"):
        ablate_by_bin(model, data, "bands", groups=4, units="ramps", progress=False)
