"""A model that outputs NaN: counted, warned about (NonFiniteDepthWarning with the count), reported by predict and
evaluate, and a ValueError naming the model when every prediction of a call is non-finite."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import seldepth
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol
from seldepth.inference import NonFiniteDepthWarning, predict_depth
from seldepth.models.preprocessing import Preprocessing
from seldepth.prediction import predict_paths


class NaNDepth(nn.Module):
    """Depth 2 m, except NaN in the first ``bad_rows`` rows (all rows: every value NaN)."""

    name = "nan_depth"

    def __init__(self, bad_rows: int | None = None):
        super().__init__()
        self.bad_rows = bad_rows
        self.preprocessing = Preprocessing(input_size=None)  # the image's own size: no resampling of the NaNs
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        out = torch.full((len(x), 1, *x.shape[-2:]), 2.0) * self.w
        out[:, :, : self.bad_rows] = float("nan")
        return out


class _Data(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"image": torch.rand(3, 8, 8), "depth": torch.full((1, 8, 8), 2.0), "valid": torch.ones(1, 8, 8, dtype=torch.bool),
                "K": torch.eye(3), "meta": {"index": i}}


def test_some_non_finite_values_are_warned_with_their_count():
    with pytest.warns(NonFiniteDepthWarning, match=r"model nan_depth predicted 16 non-finite \(NaN or infinite\) depth values of 64"):
        predict_depth(NaNDepth(bad_rows=2), torch.rand(1, 3, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonFiniteDepthWarning)
        predict_depth(NaNDepth(bad_rows=0), torch.rand(1, 3, 8, 8))  # all finite: no warning
    with pytest.warns(NonFiniteDepthWarning):
        out = seldepth.predict(NaNDepth(bad_rows=2), np.zeros((8, 8, 3), np.uint8))
    assert torch.isnan(out["predicted_depth"][:2]).all() and torch.isfinite(out["predicted_depth"][2:]).all()


def test_predict_refuses_an_all_nan_model_naming_it():
    with pytest.warns(NonFiniteDepthWarning), pytest.raises(ValueError, match=r"model nan_depth: all 64 values .* NaN or infinite"):
        seldepth.predict(NaNDepth(), np.zeros((8, 8, 3), np.uint8))
    with pytest.warns(NonFiniteDepthWarning), pytest.raises(ValueError, match="model nan_depth: all 128 values"):
        seldepth.predict(NaNDepth(), [np.zeros((8, 8, 3), np.uint8)] * 2)


def test_predict_paths_counts_and_fails_when_everything_is_nan(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.warns(NonFiniteDepthWarning):
        summary = predict_paths(NaNDepth(bad_rows=2), [tmp_path / "a.png"], tmp_path / "some", progress=False)
    assert summary.non_finite == 16 and summary.values == 64
    assert "16 of 64 predicted depth values are NaN or infinite" in summary.format()
    with pytest.warns(NonFiniteDepthWarning), pytest.raises(ValueError, match=r"model nan_depth: all 64 values of its 1 images"):
        predict_paths(NaNDepth(), [tmp_path / "a.png"], tmp_path / "all", progress=False)


def test_evaluate_reports_the_count_and_fails_when_everything_is_nan():
    protocol = get_protocol("nyu")
    with pytest.warns(NonFiniteDepthWarning):
        result = evaluate(NaNDepth(bad_rows=2), _Data(), protocol, progress=False, num_workers=0)
    assert result["non_finite"] == 2 * 16 and result["num_images"] == 2
    with pytest.warns(NonFiniteDepthWarning), pytest.raises(ValueError, match=r"model nan_depth: all 128 values"):
        evaluate(NaNDepth(), _Data(), protocol, progress=False, num_workers=0)
