"""Options of the assign loss: the preferred (balanced) assignment, per-layer and quantile bins, layer weighting;
hand-built cases, a hand loop, gradcheck, config errors, and tiny training runs that resume."""

import csv
import itertools
import json
import math

import pytest
import torch
from helpers import tiny_train_args
from torch import nn

from seldepth.cli import main
from seldepth.selectivity import regularizer as regularizer_module
from seldepth.selectivity.bins import depth_to_bins, quantile_edges
from seldepth.selectivity.regularizer import (
    SelectivityConfig,
    SelectivityRegularizer,
    assigned_bins,
    assigned_selectivity,
    balanced_assignment,
    bin_scores,
)
from seldepth.selectivity.responses import binned_responses
from seldepth.training import DepthTrainingModule
from seldepth.training.config import dump_config, load_config, parse_train_config

# --- balanced_assignment, by hand ---------------------------------------------------------------------------------

def test_bin_scores_are_the_ds_towards_each_bin():
    # |R| = [3, 1, 2]: towards bin 0 the others' mean is 1.5 -> (3 - 1.5) / 4.5; bin 1: (1 - 2.5) / 3.5; bin 2: 0
    score = bin_scores(torch.tensor([[3.0, -1.0, 2.0]]))
    assert score[0].tolist() == pytest.approx([1.5 / 4.5, -1.5 / 3.5, 0.0])
    # an empty bin scores 0 and is left out of the others' mean: [3, (empty), 1] -> (3 - 1) / 4
    score = bin_scores(torch.tensor([[3.0, 7.0, 1.0]]), torch.tensor([True, False, True]))
    assert score[0].tolist() == pytest.approx([0.5, 0.0, -0.5])


def test_four_units_three_prefer_bin_0_the_weakest_moves():
    # DS towards bin 0 of units 1, 2, 3: 1/3, 3/5, 1/2; bin 1 holds two units, so unit 1 joins unit 0 there
    R = torch.tensor([[1.0, 3.0], [2.0, 1.0], [4.0, 1.0], [3.0, 1.0]])
    assigned = balanced_assignment(R)
    assert assigned.tolist() == [1, 1, 0, 0]
    assert assigned.dtype == torch.int64
    assert assigned.bincount(minlength=2).tolist() == [2, 2]
    assert R.abs().argmax(1).tolist() == [1, 0, 0, 0]  # the unbalanced preferences


def test_six_units_three_bins_unbalanced_preferences():
    # units 0, 2, 3 prefer bin 0 (DS 2/3, 1/3, 3/5); bin 1 is preferred by unit 4 alone (a negative R: |R| counts).
    # Unit 2, the weakest for bin 0 and with bin 1 as second choice (DS 0 there), moves to bin 1.
    R = torch.tensor([[5.0, 1.0, 1.0],
                      [1.0, 1.0, 6.0],
                      [3.0, 2.0, 1.0],
                      [4.0, 1.0, 1.0],
                      [1.0, -5.0, 1.0],
                      [1.0, 1.0, 4.0]])
    assert balanced_assignment(R).tolist() == [0, 2, 1, 0, 1, 2]


def test_an_empty_bin_takes_the_units_that_lose_least():
    # bin 1 is empty; its two slots still get units (the bin sizes are fixed): the weakest of the units preferring
    # bin 0 (unit 2, DS 1/7) and of those preferring bin 2 (unit 4, DS 1/11)
    R = torch.tensor([[5.0, 0.0, 1.0],
                      [1.0, 0.0, 5.0],
                      [2.0, 0.0, 1.5],
                      [4.0, 0.0, 1.0],
                      [1.0, 0.0, 1.2],
                      [1.0, 0.0, 4.0]])
    nonempty = torch.tensor([True, False, True])
    assert balanced_assignment(R, nonempty).tolist() == [0, 2, 1, 0, 1, 2]
    # fewer than two non-empty bins: no preference to measure, the fixed assignment
    assert balanced_assignment(R, torch.tensor([True, False, False])).tolist() == assigned_bins(6, 3).tolist()


def test_bin_sizes_equal_the_fixed_assignment_when_n_b_does_not_divide_k():
    # K = 5, N_b = 2: the fixed assignment is [0, 0, 0, 1, 1] (3 + 2). All units prefer bin 1 (DS 1/3, 2/3, 1/2,
    # 1/5, 3/5): the three weakest (units 3, 0, 2) go to bin 0.
    R = torch.tensor([[1.0, 2.0], [1.0, 5.0], [1.0, 3.0], [1.0, 1.5], [1.0, 4.0]])
    assigned = balanced_assignment(R)
    assert assigned.tolist() == [0, 1, 0, 0, 1]
    assert assigned.bincount().tolist() == assigned_bins(5, 2).bincount().tolist() == [3, 2]
    for K, n_b in ((7, 3), (10, 4), (16, 5)):
        out = balanced_assignment(torch.randn(K, n_b))
        assert sorted(out.tolist()) == assigned_bins(K, n_b).tolist(), (K, n_b)


def test_balanced_assignment_maximises_the_mean_ds_over_every_balanced_assignment():
    g = torch.Generator().manual_seed(3)
    fixed = assigned_bins(6, 3).tolist()
    for _ in range(5):
        R = torch.randn(6, 3, generator=g, dtype=torch.float64)
        score = bin_scores(R)
        best = max(sum(float(score[k, b]) for k, b in enumerate(perm)) for perm in set(itertools.permutations(fixed)))
        got = balanced_assignment(R)
        assert sum(float(score[k, b]) for k, b in enumerate(got.tolist())) == pytest.approx(best, abs=1e-12)


# --- the regulariser with the options -----------------------------------------------------------------------------

class Probe(nn.Module):
    """Two layers that pass given activations through: ``a`` at the input's resolution, ``b`` at half of it."""

    def __init__(self):
        super().__init__()
        self.a = nn.Identity()
        self.b = nn.AvgPool2d(2)

    def forward(self, x):
        return self.b(self.a(x))


def _run(reg, model, acts, depth, valid=None, active=True):
    with reg.capture():
        model(acts)
    return reg(depth, valid, active=active)


def _depth_in_three_bins(batch=1, seed=0):
    """(B, 1, 6, 6) depths 1, 3 or 5 m: bins 0, 1, 2 of linear:3:min=0,max=6 (edges 0, 2, 4, 6)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 3, (batch, 1, 6, 6), generator=g) * 2 + 1).double()


LINEAR3 = "linear:3:min=0,max=6"


def _responding_only_to(preferred, depth, seed=0):
    """Activations of units that respond (about 1) only where the depth is in their bin ``preferred[k]``."""
    g = torch.Generator().manual_seed(seed)
    bins = depth_to_bins(depth, torch.tensor([0.0, 2.0, 4.0, 6.0], dtype=torch.float64))  # (B, H, W)
    on = (bins[:, None] == torch.tensor(preferred).view(1, -1, 1, 1)).double()
    return on * (1 + 0.1 * torch.rand(on.shape, generator=g, dtype=torch.float64))


def _hand_loss(acts, depth, edges, assigned, weight):
    """-weight * mean over units of DS towards the assigned bin, looping over units and bins (acts at depth's size)."""
    n_b = len(edges) - 1
    d = depth[:, 0]
    R, nonempty = [[0.0] * n_b for _ in range(acts.shape[1])], []
    for b in range(n_b):
        m = (d > edges[b]) & (d <= edges[b + 1])
        nonempty.append(bool(m.any()))
        for k in range(acts.shape[1]):
            R[k][b] = float(acts[:, k][m].mean()) if m.any() else 0.0
    ds = []
    for k, dk in enumerate(assigned):
        if not nonempty[dk]:
            continue
        others = [abs(R[k][j]) for j in range(n_b) if j != dk and nonempty[j]]
        a, o = abs(R[k][dk]), sum(others) / len(others)
        ds.append((a - o) / (a + o))
    return -weight * sum(ds) / len(ds)


def test_preferred_assignment_follows_the_warmup_responses_and_the_loss_uses_it():
    preferred = [2, 0, 1, 1, 0, 2]  # balanced: two units per bin, not in the fixed order [0, 0, 1, 1, 2, 2]
    model = Probe()
    cfg = SelectivityConfig(layers=("a",), weight=2.0, bins=LINEAR3, assignment="preferred", warmup_epochs=1)
    reg = SelectivityRegularizer(model, cfg).train()
    reg.start_epoch(0)
    for seed in range(2):  # the warm-up epoch: statistics added up, no loss, the fixed bins meanwhile
        depth = _depth_in_three_bins(2, seed)
        out = _run(reg, model, _responding_only_to(preferred, depth, seed), depth, active=False)
        assert float(out.loss) == 0.0
    assert reg.assignments() == {"a": [0, 0, 1, 1, 2, 2]}
    reg.start_epoch(1)
    assert reg.assignments() == {"a": preferred} and reg.assigned_epoch == 1
    assert reg.epoch_stats == {}  # the next epoch's statistics start afresh
    depth = _depth_in_three_bins(2, seed=5)
    acts = torch.randn(2, 6, 6, 6, dtype=torch.float64)
    loss = float(_run(reg, model, acts, depth).loss)
    assert loss == pytest.approx(_hand_loss(acts, depth, [0.0, 2.0, 4.0, 6.0], preferred, 2.0), abs=1e-12)
    assert loss != pytest.approx(_hand_loss(acts, depth, [0.0, 2.0, 4.0, 6.0], [0, 0, 1, 1, 2, 2], 2.0), abs=1e-6)


def test_refresh_reassigns_every_n_epochs_from_the_previous_epoch_only():
    first, later = [2, 0, 1, 1, 0, 2], [0, 1, 2, 0, 1, 2]
    model = Probe()
    cfg = SelectivityConfig(layers=("a",), bins=LINEAR3, assignment="preferred", warmup_epochs=1,
                            assignment_refresh_epochs=2)
    reg = SelectivityRegularizer(model, cfg).train()
    for epoch, responding in enumerate([first, first, later, later]):
        reg.start_epoch(epoch)
        depth = _depth_in_three_bins(2, epoch)
        _run(reg, model, _responding_only_to(responding, depth, epoch), depth)
        reg.start_epoch(epoch)  # a run resumed mid-epoch starts it again: nothing changes
        assert "a" in reg.epoch_stats
        expected = {0: [0, 0, 1, 1, 2, 2], 1: first, 2: first, 3: later}[epoch]  # assigned at epochs 1 and 3
        assert reg.assignments()["a"] == expected, epoch


def test_fixed_assignment_adds_up_no_statistics_and_never_reassigns():
    model = Probe()
    reg = SelectivityRegularizer(model, SelectivityConfig(layers=("a",), bins=LINEAR3, warmup_epochs=1)).train()
    for epoch in range(3):
        reg.start_epoch(epoch)
        depth = _depth_in_three_bins(1, epoch)
        _run(reg, model, _responding_only_to([2, 0, 1, 1, 0, 2], depth), depth)
        assert reg.epoch_stats == {} and reg.assignments() == {"a": [0, 0, 1, 1, 2, 2]}


def test_the_training_state_survives_a_checkpoint(tmp_path):
    model = Probe()
    cfg = SelectivityConfig(layers=("a", "b"), bins=LINEAR3, assignment="preferred", warmup_epochs=1)
    reg = SelectivityRegularizer(model, cfg).train()
    reg.start_epoch(0)
    depth = _depth_in_three_bins(2)
    _run(reg, model, _responding_only_to([2, 0, 1, 1, 0, 2], depth), depth)
    reg.start_epoch(1)
    _run(reg, model, torch.rand(2, 6, 6, 6, dtype=torch.float64), depth)
    torch.save(reg.training_state(), tmp_path / "state.pt")
    restored = SelectivityRegularizer(model, cfg).train()
    restored.load_training_state(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.assignments() == reg.assignments() and restored.assignments()["a"] == [2, 0, 1, 1, 0, 2]
    assert (restored.epoch, restored.assigned_epoch) == (1, 1)
    for name in ("a", "b"):
        for mine, theirs in zip(restored.epoch_stats[name], reg.epoch_stats[name]):
            assert torch.equal(mine, theirs)
        assert torch.equal(restored.edges.get(name, reg.edges[name]), reg.edges[name])


def test_mean_layer_weighting_is_the_sum_over_the_number_of_layers():
    model = Probe()
    acts = torch.randn(2, 6, 6, 6, dtype=torch.float64)
    depth = _depth_in_three_bins(2)
    losses, ds = {}, {}
    for weighting in ("sum", "mean"):
        cfg = SelectivityConfig(layers=("a", "b"), weight=3.0, bins=LINEAR3, layer_weighting=weighting)
        out = _run(SelectivityRegularizer(model, cfg), model, acts, depth)
        losses[weighting], ds[weighting] = float(out.loss), {k: float(v) for k, v in out.ds.items()}
    assert ds["sum"] == ds["mean"] and losses["sum"] == pytest.approx(-3.0 * sum(ds["sum"].values()), rel=1e-12)
    assert losses["mean"] == pytest.approx(losses["sum"] / 2, rel=1e-12) and losses["mean"] != 0


def test_each_layer_uses_its_own_bins():
    # a: sid:4 (K = 6 units -> 4 bins); b: linear:8 over (0, 8] (K = 6 -> 6 bins of 4/3 m)
    sid = [0.0, 0.75] + [math.exp(math.log(10.25) * i / 3) - 0.25 for i in (1, 2)] + [10.0]
    lin = [8 * i / 6 for i in range(7)]
    model = Probe()
    cfg = SelectivityConfig(layers=("a", "b"), bins={"a": "sid:4", "b": "linear:8:min=0,max=8"})
    reg = SelectivityRegularizer(model, cfg)
    g = torch.Generator().manual_seed(1)
    acts = torch.randn(2, 6, 8, 8, generator=g, dtype=torch.float64)
    depth = torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64) * 9.5 + 0.2
    out = _run(reg, model, acts, depth)
    torch.testing.assert_close(reg.edges["a"], torch.tensor(sid, dtype=torch.float64))
    torch.testing.assert_close(reg.edges["b"], torch.tensor(lin, dtype=torch.float64))
    layer_acts = {"a": acts, "b": nn.functional.avg_pool2d(acts, 2)}
    mask = (depth > 1e-3) & (depth < 10.0)
    for name, edges in (("a", sid), ("b", lin)):
        n_b = len(edges) - 1
        bins = depth_to_bins(depth, torch.tensor(edges, dtype=torch.float64), mask)
        r = binned_responses(layer_acts[name], bins, n_b)
        assert float(out.ds[name]) == pytest.approx(float(assigned_selectivity(r.sums, r.counts).mean_ds), abs=1e-12)
    # not the other layer's bins: b under sid:6 (its N_b) gives another value
    other = SelectivityRegularizer(model, SelectivityConfig(layers=("b",), bins="sid:6"))
    assert float(_run(other, model, acts, depth).ds["b"]) != pytest.approx(float(out.ds["b"]), abs=1e-6)


def test_gradcheck_with_a_preferred_assignment_and_per_layer_bins():
    model = Probe()
    cfg = SelectivityConfig(layers=("a", "b"), weight=1.5, bins={"a": LINEAR3, "b": "sid:3"}, assignment="preferred",
                            warmup_epochs=1, layer_weighting="mean")
    reg = SelectivityRegularizer(model, cfg).train()
    reg.start_epoch(0)
    depth = _depth_in_three_bins(2) + torch.rand(2, 1, 6, 6, dtype=torch.float64) * 0.5
    _run(reg, model, _responding_only_to([1, 2, 0, 0, 2, 1], depth), depth, active=False)
    reg.start_epoch(1)
    assert reg.assignments()["a"] == [1, 2, 0, 0, 2, 1]
    reg.eval()  # no more statistics added up while gradcheck calls it
    acts = torch.randn(2, 6, 6, 6, dtype=torch.float64, requires_grad=True)

    def loss(a):
        return _run(reg, model, a, depth).loss

    assert torch.autograd.gradcheck(loss, (acts,), eps=1e-6, atol=1e-6)


def test_quantile_bins_are_fitted_on_the_first_epoch_and_a_resumed_sample_gives_the_same_edges(monkeypatch, tmp_path):
    monkeypatch.setattr(regularizer_module, "QUANTILE_SAMPLE", 100)  # the kept subset is pruned along the way
    model = Probe()
    cfg = SelectivityConfig(layers=("a", "b"), bins={"a": "quantile:4", "b": "sid:4"}, warmup_epochs=1)
    g = torch.Generator().manual_seed(4)
    batches = [(torch.randn(2, 6, 8, 8, generator=g, dtype=torch.float64),
                torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64) * 11,  # some beyond the 10 m range
                torch.rand(2, 1, 8, 8, generator=g) > 0.2) for _ in range(4)]
    reg = SelectivityRegularizer(model, cfg).train()
    reg.start_epoch(0)
    for i, (acts, depth, valid) in enumerate(batches):
        out = _run(reg, model, acts, depth, valid, active=False)
        assert set(out.ds) == {"b"}  # no quantile bins yet
        if i == 1:
            torch.save(reg.training_state(), tmp_path / "mid.pt")
    resumed = SelectivityRegularizer(model, cfg).train()
    resumed.load_training_state(torch.load(tmp_path / "mid.pt", weights_only=True))
    resumed.start_epoch(0)  # the resumed epoch: nothing changes
    for acts, depth, valid in batches[2:]:
        _run(resumed, model, acts, depth, valid, active=False)
    for r in (reg, resumed):
        r.start_epoch(1)
    torch.testing.assert_close(resumed.edges["a"], reg.edges["a"], rtol=0, atol=0)
    assert "sample" not in reg.training_state() and torch.equal(reg.training_state()["quantile_edges"]["a"], reg.edges["a"])
    # all valid depths (< 200 000 of them) give the quantile edges of the whole epoch
    monkeypatch.setattr(regularizer_module, "QUANTILE_SAMPLE", 200_000)
    whole = SelectivityRegularizer(model, cfg).train()
    whole.start_epoch(0)
    for acts, depth, valid in batches:
        _run(whole, model, acts, depth, valid, active=False)
    whole.start_epoch(1)
    d = torch.cat([depth[valid & (depth > 1e-3) & (depth < 10.0)].float().double() for _, depth, valid in batches])
    torch.testing.assert_close(whole.edges["a"], quantile_edges(d, 4, 0.0, 10.0))
    acts, depth, valid = batches[0]
    out = _run(whole, model, acts, depth, valid)
    bins = depth_to_bins(depth, quantile_edges(d, 4, 0.0, 10.0), valid & (depth > 1e-3) & (depth < 10.0))
    r = binned_responses(acts, bins, 4)
    assert float(out.ds["a"]) == pytest.approx(float(assigned_selectivity(r.sums, r.counts).mean_ds), abs=1e-12)


# --- the config ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("options, message", [
    ({"assignment": "best"}, "selectivity.assignment must be one of fixed, preferred"),
    ({"assignment": "preferred"}, "selectivity.warmup_epochs must be >= 1 with selectivity.assignment: preferred"),
    ({"bins": {"enc_2": "sid:16"}}, "selectivity.bins has no entry for layer 'enc_5'"),
    ({"bins": {"enc_2": "sid:16", "enc_5": "cubic:8"}}, "selectivity.bins.enc_5: spec 'cubic:8': unknown kind"),
    ({"bins": {"enc_2": "sid:16", "enc_5": 8}}, "selectivity.bins: expected a spec string per layer"),
    ({"bins": 8}, "selectivity.bins: expected a spec"),
    ({"layer_weighting": "max"}, "selectivity.layer_weighting must be one of sum, mean"),
    ({"assignment_refresh_epochs": -1}, "selectivity.assignment_refresh_epochs must be an integer >= 0"),
    ({"assignment_refresh_epochs": 2}, "selectivity.assignment_refresh_epochs: reassigning bins needs"),
    ({"bins": "quantile:8"}, "selectivity.warmup_epochs must be >= 1 with quantile selectivity.bins"),
    ({"bins": {"enc_2": "quantile:8", "enc_5": "sid:8"}, "assignment": "preferred", "warmup_epochs": 1},
     "selectivity.warmup_epochs must be >= 2 with selectivity.assignment: preferred"),
])
def test_config_errors_name_the_key(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        SelectivityConfig(layers=("enc_2", "enc_5"), **options)


def test_per_layer_bins_parse_from_a_mapping_and_from_the_saved_config(tmp_path):
    mapping = {"data": {"path": "synthetic:default:12", "input_size": [64, 128]},
               "selectivity": {"layers": ["enc_2", "enc_5", "enc_out"], "assignment": "preferred", "warmup_epochs": 1,
                               "bins": {"enc_2": "sid:16", "enc_5": "linear:8", "enc_out": "log:32"},
                               "layer_weighting": "mean", "assignment_refresh_epochs": 3}}
    cfg = parse_train_config(mapping)
    s = cfg.selectivity
    assert s.bins == {"enc_2": "sid:16", "enc_5": "linear:8", "enc_out": "log:32"}
    assert (s.assignment, s.layer_weighting, s.assignment_refresh_epochs) == ("preferred", "mean", 3)
    assert s.log_bins == "sid:64"  # the validation dissection's one spec with per-layer bins
    saved = tmp_path / "config.yaml"
    saved.write_text(dump_config(cfg))
    assert load_config(saved).selectivity == s
    bad = dict(mapping, selectivity=dict(mapping["selectivity"], bins={"enc_2": "sid:16", "enc_5": "linear:8"}))
    with pytest.raises(ValueError, match="selectivity.bins has no entry for layer 'enc_out'"):
        parse_train_config(bad)
    assert parse_train_config(dict(mapping, selectivity={"bins": "log:8"})).selectivity.bins == "log:8"


# --- training runs ------------------------------------------------------------------------------------------------

SHORT = ["--data.limit_train", "12", "--trainer.evaluate_test", "false", "--data.input_size", "[64,128]",
         "--trainer.checkpoint_every_n_steps", "4"]  # 6 steps an epoch
PREFERRED = ("selectivity:\n  layers: [enc_7, dec_3]\n  weight: 5.0\n  bins: {enc_7: 'sid:16', dec_3: 'linear:8'}\n"
             "  assignment: preferred\n  warmup_epochs: 1\n  layer_weighting: mean\n")


def _state(path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


def test_a_preferred_run_writes_a_balanced_assignment_and_resumes_with_it(tiny_splits, tmp_path, monkeypatch):
    config = tmp_path / "selectivity.yaml"
    config.write_text(PREFERRED)
    runs = {}
    for name in ("uninterrupted", "killed"):
        out = tmp_path / name
        runs[name] = ["train", "--config", str(config), *tiny_train_args(tiny_splits, out, epochs=2), *SHORT]
    assert main(runs["uninterrupted"]) == 0
    reference = tmp_path / "uninterrupted"
    written = json.loads((reference / "selectivity_assignment.json").read_text())
    assert set(written) == {"enc_7", "dec_3"}
    assert (written["enc_7"]["num_bins"], written["dec_3"]["num_bins"]) == (16, 8)
    assert written["enc_7"]["bins_spec"].startswith("sid:16") and written["dec_3"]["bins_spec"].startswith("linear:8")
    for layer in written.values():
        K = len(layer["assigned"])
        assert sorted(layer["assigned"]) == assigned_bins(K, layer["num_bins"]).tolist()  # balanced, like fixed
    assert written["enc_7"]["assigned"] != assigned_bins(64, 16).tolist()  # assigned by preference
    state = _state(reference / "checkpoints" / "last.ckpt")["selectivity_state"]
    assert state["assigned_epoch"] == 1
    assert {k: v.tolist() for k, v in state["assigned"].items()} == {k: v["assigned"] for k, v in written.items()}

    original = DepthTrainingModule.training_step

    def killed_at_step_10(self, batch, batch_idx):  # in the second epoch, after its assignment
        if self.global_step == 10:
            raise RuntimeError("killed")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DepthTrainingModule, "training_step", killed_at_step_10)
    assert main(runs["killed"]) == 1
    monkeypatch.undo()
    killed = _state(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    assert killed["global_step"] == 8
    assert {k: v.tolist() for k, v in killed["selectivity_state"]["assigned"].items()} == \
        {k: v["assigned"] for k, v in written.items()}
    assert main([*runs["killed"], "--resume"]) == 0
    assert json.loads((tmp_path / "killed" / "selectivity_assignment.json").read_text()) == written
    final = _state(tmp_path / "killed" / "checkpoints" / "last.ckpt")
    for key, value in _state(reference / "checkpoints" / "last.ckpt")["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key  # the same assignment, so the same training


def test_a_run_with_quantile_bins_fits_them_in_the_first_epoch(tiny_splits, tmp_path):
    out = tmp_path / "run"
    args = ["train", *tiny_train_args(tiny_splits, out, epochs=2), *SHORT, "--selectivity.layers", "[enc_7,dec_3]",
            "--selectivity.bins", "{enc_7: 'quantile:8', dec_3: 'sid:8'}", "--selectivity.warmup_epochs", "1"]
    assert main(args) == 0
    written = json.loads((out / "selectivity_assignment.json").read_text())
    edges = _state(out / "checkpoints" / "last.ckpt")["selectivity_state"]["quantile_edges"]
    assert set(edges) == {"enc_7"} and written["enc_7"]["edges"] == edges["enc_7"].tolist()
    assert len(edges["enc_7"]) == 9 and bool((edges["enc_7"].diff() > 0).all())
    assert written["enc_7"]["assigned"] == assigned_bins(64, 8).tolist()  # fixed
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    logged = [r for r in rows if r.get("train/ds_assigned/enc_7")]
    assert logged and all(int(r["epoch"]) >= 1 for r in logged)  # from the epoch after the fit
    assert all(math.isfinite(float(r["train/ds_assigned/enc_7"])) for r in logged)


def test_the_best_checkpoint_of_a_regularised_run_comes_after_its_warm_up(tiny_splits, tmp_path, monkeypatch):
    import lightning as L

    from seldepth.training import run as run_module

    scores = iter([0.1, 0.5, 0.9])  # validation RMSE of epochs 0, 1, 2: the best is epoch 0, inside the warm-up

    def log(self, name, value, *args, **kwargs):
        if name == "val/rmse":
            value = next(scores)
        return L.LightningModule.log(self, name, value, *args, **kwargs)

    monkeypatch.setattr(DepthTrainingModule, "log", log)
    out = tmp_path / "run"
    args = ["train", *tiny_train_args(tiny_splits, out, epochs=3), *SHORT, "--selectivity.layers", "[enc_7]",
            "--selectivity.warmup_epochs", "2"]
    assert main(args) == 0
    best = _state(out / "checkpoints" / "best.ckpt")
    assert best["epoch"] == 2  # the only regularised epoch, although epoch 0 scored better
    assert run_module.BestAfterWarmup in {type(c) for c in run_module.build_trainer(
        load_config(str(out / "config.yaml")), tmp_path / "again").callbacks}
