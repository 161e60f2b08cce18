import json

import pytest

from seldepth.cli import main


def test_quick_demo_trains_and_beats_the_trivial_predictor(tmp_path, monkeypatch, capsys):
    """The README's main job in its quick form (as CI runs it): data, training, evaluation, baseline."""
    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "demo.json").read_text())
    assert summary["test"]["num_images"] > 0
    model_rmse = summary["test"]["metrics"]["rmse"]
    base_rmse = summary["baseline"]["metrics"]["rmse"]
    # The baseline is the training set's mean depth; synthetic rooms span roughly 0.3-10 m.
    assert 1.0 < summary["baseline"]["mean_depth_m"] < 6.0
    assert model_rmse < 0.8 * base_rmse
    assert summary["rmse_reduction_vs_baseline"] == pytest.approx(1 - model_rmse / base_rmse)
    printed = capsys.readouterr().out
    assert "lower than the trivial predictor" in printed
    assert (out / "model.safetensors").is_file()
