import json

import pytest

from seldepth.cli import main


def test_quick_demo_trains_and_beats_the_trivial_predictor(tmp_path, monkeypatch, capsys):
    """The README's main job in its quick form (as CI runs it): data, two trainings, evaluation, baseline,
    dissection, ablation, report."""
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
    assert "lower than the trivial predictor" in printed and "top-k minus random-k" in printed
    for run in ("baseline", "regularised"):
        assert (out / run / "model.safetensors").is_file()
        assert (out / run / "dissect" / "selectivity.json").is_file()
        assert (out / run / "ablation" / "ablation.json").is_file()
    reg = summary["regularised"]["test"]["metrics"]["rmse"]
    assert reg < 0.9 * base_rmse  # the regularised model learns depth too
    sel = summary["selectivity"]
    assert set(sel) == {"baseline", "regularised"} and all(0 <= v["ds_enc_6"] <= 1 for v in sel.values())
    html = (out / "report.html").read_text()
    assert "baseline" in html and "regularised" in html and "data:image/png;base64," in html
