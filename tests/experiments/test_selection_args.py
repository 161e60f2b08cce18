"""Uncertainty selection arguments out of range (``passes`` 0, a dropout probability of 1, a budget of 0): a
ValueError naming the argument before any model runs, never torch.stack's RuntimeError; nothing written."""

from __future__ import annotations

import pytest
import torch

from seldepth.experiments.uncertainty import check_selection_args, mc_dropout, uncertainty_scores, write_selection
from seldepth.models import create_model


class _Pool(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        raise AssertionError("the pool must not be read when the arguments are wrong")


@pytest.mark.parametrize("kwargs, message", [
    ({"passes": 0}, r"passes: must be a whole number >= 1 \(dropout passes per image\), got 0"),
    ({"passes": -3}, "passes: must be a whole number >= 1"),
    ({"passes": 2.5}, "passes: must be a whole number >= 1"),
    ({"passes": True}, "passes: must be a whole number >= 1"),
    ({"passes": float("inf")}, "passes: must be a whole number >= 1"),
    ({"passes": float("nan")}, "passes: must be a whole number >= 1"),
    ({"p": 1.0}, r"p: the dropout probability must be in \[0, 1\), got 1.0"),
    ({"p": -0.1}, r"p: the dropout probability must be in \[0, 1\)"),
    ({"p": float("nan")}, r"p: the dropout probability must be in \[0, 1\)"),
    ({"batch_size": 0}, "batch_size: must be a whole number >= 1"),
])
def test_uncertainty_scores_checks_its_arguments_first(kwargs, message):
    model = create_model("realtime_depth")
    with pytest.raises(ValueError, match=message):
        uncertainty_scores([model], _Pool(), "mc-dropout", progress=False, **kwargs)


def test_budget_below_one_names_the_argument(tmp_path):
    for budget in (0, -1, 1.5):
        with pytest.raises(ValueError, match="budget: must be a whole number >= 1"):
            write_selection(torch.rand(3), _Pool(), budget, tmp_path / "chosen.txt")
        with pytest.raises(ValueError, match="budget: must be a whole number >= 1"):
            check_selection_args(budget=budget)
    assert list(tmp_path.iterdir()) == []


def test_dropout_probability_bounds_and_zero():
    model = create_model("realtime_depth")
    with pytest.raises(ValueError, match=r"p: the dropout probability must be in \[0, 1\)"):
        with mc_dropout(model, 1.0):
            pass
    check_selection_args(passes=1, p=0.0, budget=1)  # the edges that are allowed
    with torch.no_grad(), mc_dropout(model, 0.0):  # no dropout: every pass alike
        x = torch.rand(1, 3, 32, 32)
        assert torch.equal(model(x), model(x))
