"""Tuning measures beside DS on hand-built response curves: a ramp, a tuned bump, a flat line, a step, empty bins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seldepth.selectivity import DissectionResult, LayerSelectivity, format_table, parse_bins, selectivity_index
from seldepth.selectivity.tuning import tuning_of

EDGES = torch.tensor([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0], dtype=torch.float64)  # 8 bins, widening
ONES = torch.ones(8)


def test_a_ramp_a_bump_and_a_flat_line():
    ramp = torch.arange(1.0, 9.0)                                         # rises steadily, peaks in the last bin
    bump = torch.tensor([0.1, 0.2, 1.0, 3.0, 2.0, 0.3, 0.1, 0.1])          # tuned around bin 3 (2-3 m)
    flat = torch.tensor([1.0, 1.02, 0.98, 1.01, 1.0, 0.99, 1.03, 1.0])
    falling = -torch.arange(8.0, 0.0, -1.0)                                # signed: |R| falls with depth
    t = tuning_of(torch.stack([ramp, bump, flat, falling]), ONES, EDGES)
    assert t.kinds == ["ramp", "tuned", "flat", "ramp"]
    # ramp: |R| >= 4 in bins 3..7 -> 5 bins, 2.0 .. 10.0 m
    assert t.width_bins[0] == 5 and t.width_m[0] == pytest.approx(8.0)
    # bump: |R| >= 1.5 in bins 3 and 4 -> 2 bins, 2.0 .. 4.0 m
    assert t.width_bins[1] == 2 and t.width_m[1] == pytest.approx(2.0)
    assert t.peak_bin.tolist()[:2] == [7, 3] and t.peak_at_edge.tolist() == [True, False, False, True]
    assert t.monotonicity[0] == pytest.approx(1.0) and t.monotonicity[3] == pytest.approx(-1.0)
    assert t.counts() == {"tuned": 1, "ramp": 2, "flat": 1}


def test_a_step_at_the_far_end_is_tuned_not_a_ramp_and_empty_bins_are_left_out():
    step = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 5.0])
    counts = torch.tensor([10.0, 10, 10, 10, 10, 10, 0, 10])  # bin 6 empty: its R means nothing
    ramp_with_gap = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 99.0, 7.0])  # 99 sits in the empty bin
    t = tuning_of(torch.stack([step, ramp_with_gap]), counts, EDGES)
    assert t.kinds == ["tuned", "ramp"]
    assert t.width_bins[0] == 1 and t.width_m[0] == pytest.approx(2.0)  # 8..10 m
    assert t.peak_bin.tolist() == [7, 7]
    # |R| >= 3.5 in bins 3, 4, 5 and (skipping the empty 6) 7: 4 non-empty bins, 2.0 .. 10.0 m
    assert t.width_bins[1] == 4 and t.width_m[1] == pytest.approx(8.0)


def test_thresholds_and_the_ds_they_read():
    gentle = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.1, 1.3])  # DS = (1.3 - 1.0143) / (1.3 + 1.0143) = 0.1235
    ds = selectivity_index(gentle[None]).ds
    assert float(ds) == pytest.approx((1.3 - 7.1 / 7) / (1.3 + 7.1 / 7))
    t = tuning_of(gentle[None], ONES, EDGES)
    # ranks of |R|: six ties at 2.5, then 6 and 7; against positions 0..7: rho = 24.5 / sqrt(24.5 * 42)
    assert t.kinds == ["ramp"] and float(t.monotonicity[0]) == pytest.approx(24.5 / (24.5 * 42) ** 0.5)
    assert tuning_of(gentle[None], ONES, EDGES, flat_ds=0.13).kinds == ["flat"]
    assert tuning_of(gentle[None], ONES, EDGES, ramp_rho=0.9).kinds == ["tuned"]  # rho 0.764 < 0.9
    with pytest.raises(ValueError, match="counts and edges"):
        tuning_of(gentle[None], torch.ones(7), EDGES)


def test_the_dissection_outputs_count_the_kinds_per_layer():
    responses = torch.stack([torch.arange(1.0, 9.0), torch.tensor([0.1, 0.2, 1.0, 3.0, 2.0, 0.3, 0.1, 0.1]),
                             torch.ones(8)]).double()
    counts = torch.full((8,), 100.0, dtype=torch.float64)
    sel = selectivity_index(responses, counts > 0)
    layer = LayerSelectivity("enc_6", "encoder.enc_6", EDGES, responses * 100, counts, responses, sel.ds,
                             sel.preferred_bin, sel.defined)
    result = DissectionResult({"enc_6": layer}, parse_bins("sid:8"), (1e-3, 10.0), 4)
    doc = result.to_dict()["layers"]["enc_6"]["tuning"]
    assert doc["counts"] == {"tuned": 1, "ramp": 1, "flat": 1} and doc["kind"] == ["ramp", "tuned", "flat"]
    assert np.allclose(doc["width_m"][:2], [8.0, 2.0])
    table = format_table(result)
    assert "tuned" in table.splitlines()[1]
    row = table.splitlines()[2].split()
    assert row[0] == "enc_6" and row[-3:] == ["1", "1", "1"]
    assert table.splitlines()[-1].split()[-3:] == ["33%", "33%", "33%"]
