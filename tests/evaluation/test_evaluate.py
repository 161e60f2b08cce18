import json

import pytest

from seldepth.cli import main


@pytest.mark.parametrize("flip, rmse, abs_rel, delta1", [(False, 0.5604, 0.1763, 0.7303), (True, 0.5535, 0.1732, 0.7407)])
def test_eval_of_official_meter_xxs_matches_spec(meter_nyu_file, nyu_sample, tmp_path, capsys, flip, rmse, abs_rel, delta1):
    out = tmp_path / "result.json"
    args = ["eval", "--model", str(meter_nyu_file), "--data", f"nyu:{nyu_sample}", "--json", str(out)]
    assert main(args + (["--flip"] if flip else [])) == 0
    result = json.loads(out.read_text())
    assert result["num_images"] == 10
    assert result["protocol"]["crop"] == "eigen_nyu" and result["protocol"]["max_depth"] == 10.0
    assert result["protocol"]["flip"] is flip
    m = result["metrics"]
    assert m["rmse"] == pytest.approx(rmse, abs=1.5e-3)
    assert m["abs_rel"] == pytest.approx(abs_rel, abs=1e-3)
    assert m["delta1"] == pytest.approx(delta1, abs=3e-3)
    printed = capsys.readouterr().out
    assert "protocol nyu: 0.001 < gt < 10 m, crop eigen_nyu" in printed
    assert f"flip {'on' if flip else 'off'}" in printed


def test_eval_with_caps_reports_capped_rows(meter_nyu_file, nyu_sample, tmp_path):
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(meter_nyu_file), "--data", f"nyu:{nyu_sample}", "--caps", "4,6", "--json", str(out)]) == 0
    m = json.loads(out.read_text())["metrics"]
    assert m["rmse@4m"] < m["rmse@6m"] < m["rmse"]


def test_eval_errors_name_the_argument(meter_nyu_file, capsys):
    assert main(["eval", "--model", "/no/model.safetensors", "--data", "nyu:/tmp"]) == 2
    assert "/no/model.safetensors" in capsys.readouterr().err
    assert main(["eval", "--model", str(meter_nyu_file), "--data", "nyu:/no/data"]) == 2
    assert "/no/data" in capsys.readouterr().err
