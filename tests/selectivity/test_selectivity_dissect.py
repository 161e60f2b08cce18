"""Dissection end to end: reference figures of the official NYU METER-xxs, CLI, files, errors, warnings, DDP."""

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from seldepth.cli import main
from seldepth.models import create_model
from seldepth.selectivity.dissect import Dissector, EmptyBinWarning, dissect, format_table, resolve_layers

# Layer mean DS (You et al., ICCV 2021) measured with a plain reference loop: official NYU METER-xxs on data/nyu_test_sample, SID, N_b = min(64, K).
REFERENCE_DS = {"enc_0": 0.260, "enc_1": 0.315, "enc_2": 0.133, "enc_3": 0.170, "enc_4": 0.220, "enc_5": 0.259,
                "enc_6": 0.330, "enc_7": 0.421, "enc_8": 0.398, "enc_9": 0.484, "enc_10": 0.463, "enc_out": 0.552,
                "dec_0": 0.562, "dec_1": 0.479, "dec_2": 0.410, "dec_3": 0.352}
REFERENCE_MEAN = 0.363


def test_cli_dissect_reproduces_the_reference_figures(meter_nyu_file, nyu_sample, tmp_path, capsys):
    out = tmp_path / "dissect"
    with pytest.warns(EmptyBinWarning, match=r"enc_0 \(N_b=16\): \[0\]"):  # bin (0, 0.75] is empty on these images
        rc = main(["dissect", "--model", str(meter_nyu_file), "--data", f"nyu:{nyu_sample}", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mean DS" in printed and "coverage" in printed
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split() and line.split()[0] in REFERENCE_DS}
    assert list(rows) == list(REFERENCE_DS)
    summary = json.loads((out / "selectivity.json").read_text())
    assert summary["num_images"] == 10 and summary["bins"]["spec"] == "sid:64:alpha=0.75,beta=10"
    for name, expected in REFERENCE_DS.items():
        layer = summary["layers"][name]
        assert layer["mean_ds"] == pytest.approx(expected, abs=1e-3), name
        assert float(rows[name][3]) == pytest.approx(expected, abs=1e-3)
        assert layer["num_bins"] == min(64, layer["num_units"])
        assert 0 in layer["empty_bins"] and len(layer["ds"]) == len(layer["preferred_bin"]) == layer["num_units"]
        assert all(math.isfinite(v) for v in layer["ds"])
    assert summary["mean_ds"] == pytest.approx(REFERENCE_MEAN, abs=1e-3)
    assert summary["layers"]["dec_3"]["num_units"] == 8 and summary["layers"]["enc_out"]["num_units"] == 160
    arrays = np.load(out / "selectivity.npz")
    assert arrays["enc_out/R"].shape == (160, 64) and arrays["dec_3/counts"].shape == (8,)
    assert np.isfinite(arrays["enc_7/R"]).all() and np.isfinite(arrays["enc_7/ds"]).all()
    for name in ("mean_ds.png", "ds_histograms.png", "responses_enc_0.png", "responses_dec_3.png"):
        assert (out / name).stat().st_size > 10_000, name


def test_unknown_layers_list_the_available_names(tmp_path, capsys, meter_nyu_file, nyu_sample):
    model = create_model("meter_xxs")
    with pytest.raises(ValueError, match=r"layers: no layer 'enc_99'.*available: enc_0, enc_1, .*dec_3"):
        resolve_layers(model, ["enc_0", "enc_99"])
    with pytest.raises(ValueError, match="no layer 'nope'"):
        Dissector(model, "nope")
    assert list(resolve_layers(model, "enc_0,decoder.up1")) == ["enc_0", "decoder.up1"]
    plain = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match="available: 0"):
        resolve_layers(plain, ["1"])
    with pytest.raises(ValueError, match="declares no selectivity_layers"):
        resolve_layers(plain)
    rc = main(["dissect", "--model", str(meter_nyu_file), "--data", f"nyu:{nyu_sample}", "--layers", "enc_0,bogus",
               "--out", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "no layer 'bogus'" in err and "enc_out" in err
    assert not (tmp_path / "x").exists()


def _dataset(n=3, size=(24, 32), gt=(30, 40), lo=0.3, hi=9.9, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = []
    for i in range(n):
        depth = torch.rand(1, *gt, generator=g) * (hi - lo) + lo
        data.append({"image": torch.rand(3, *size, generator=g), "depth": depth, "valid": depth > 0, "meta": {"index": i}})
    return data


class TwoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 4, 3, stride=2, padding=1)
        self.selectivity_layers = {"a": "a", "b": "b"}

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_empty_bins_warn_and_never_give_nan(tmp_path):
    data = _dataset(lo=1.0, hi=3.0)  # only a few SID bins get pixels
    with pytest.warns(EmptyBinWarning, match="without any valid pixel"):
        result = dissect(TwoConv().eval(), data, bins="sid:8", progress=False, preprocess=lambda x: x)
    for layer in result.layers.values():
        assert layer.empty_bins and 0 < layer.coverage < 1
        assert torch.isfinite(layer.ds).all() and torch.isfinite(layer.responses).all()
        assert (layer.responses[:, layer.counts == 0] == 0).all()
    paths = result.save(tmp_path)
    text = paths["json"].read_text()
    assert "NaN" not in text and "Infinity" not in text
    # one non-empty bin only: DS undefined, set to 0, with a warning
    one = _dataset(lo=5.0, hi=5.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = dissect(TwoConv().eval(), one, bins="sid:4", progress=False, preprocess=lambda x: x)
    assert any("DS undefined" in str(w.message) and w.category is EmptyBinWarning for w in caught)
    assert all((layer.ds == 0).all() for layer in result.layers.values())


def test_probed_layer_must_output_a_feature_map():
    model = create_model("meter_xxs").eval()
    d = Dissector(model, ["encoder"], "sid:8")  # the encoder returns a tuple
    with pytest.raises(ValueError, match="'encoder'.*outputs tuple"):
        d.update(torch.randn(1, 3, 64, 64), torch.rand(1, 1, 20, 20) * 5)


def test_argument_errors():
    model = TwoConv()
    with pytest.raises(ValueError, match="depth_range"):
        Dissector(model, bins="sid:8", depth_range=(5.0, 1.0))
    with pytest.raises(ValueError, match="depth_range"):
        dissect(model, _dataset(), depth_range=(1.0,), progress=False)
    with pytest.raises(ValueError, match="dtype"):
        Dissector(model, bins="sid:8", dtype=torch.float16)
    with pytest.raises(ValueError, match="fitted"):
        Dissector(model, bins="quantile:8")
    with pytest.raises(ValueError, match="depth"):
        Dissector(model, bins="sid:8").update(torch.randn(1, 3, 8, 8), torch.rand(1, 2, 8, 8))


def test_quantile_bins_are_fitted_on_the_data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = dissect(TwoConv().eval(), _dataset(n=4), bins="quantile:8", progress=False, preprocess=lambda x: x)
    counts = result.layers["a"].counts
    assert counts.min() > 0.9 * counts.max()  # equal pixel counts, up to the fit's sampling
    assert "quantile:8" in format_table(result)


def test_streamed_batches_equal_one_batch():
    data = _dataset(n=5)
    model = TwoConv().eval()
    out = []
    for bs in (1, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(dissect(model, data, bins="sid:8", batch_size=bs, progress=False, preprocess=lambda x: x))
    for name in ("a", "b"):
        torch.testing.assert_close(out[0].layers[name].sums, out[1].layers[name].sums, atol=1e-9, rtol=1e-6)
        assert out[0].layers[name].sums.dtype == torch.float64


def test_two_processes_give_the_same_ds_as_one(tmp_path):
    script = Path(__file__).with_name("ddp_dissect_worker.py")
    out = tmp_path / "ddp.npz"
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    d = np.load(out)
    assert int(d["single/num_images"]) == int(d["ddp/num_images"]) == 5
    for name in ("a", "b"):
        np.testing.assert_array_equal(d[f"single/{name}/counts"], d[f"ddp/{name}/counts"])
        np.testing.assert_allclose(d[f"ddp/{name}/sums"], d[f"single/{name}/sums"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(d[f"ddp/{name}/ds"], d[f"single/{name}/ds"], atol=1e-6, rtol=0)


def test_observing_a_callers_forward_pass_equals_update(nyu_sample):
    """Training validation dissects inside predict_depth's own pass; it must equal a separate update()."""
    from seldepth.data.spec import open_dataset
    from seldepth.inference import model_input, predict_depth

    model = create_model("meter_xxs").eval()
    sample = open_dataset(f"nyu:{nyu_sample}", "test")[0]
    images, depth, valid = sample["image"][None], sample["depth"][None], sample["valid"][None]
    separate = Dissector(model, ["enc_7", "dec_3"], bins="sid:16")
    separate.update(model_input(model, images), depth, valid)
    inside = Dissector(model, ["enc_7", "dec_3"], bins="sid:16")
    with inside.observing(depth, valid):
        predict_depth(model, images, size=tuple(depth.shape[-2:]))
    assert inside.num_images == separate.num_images == 1
    for name in ("enc_7", "dec_3"):
        torch.testing.assert_close(inside.sums[name], separate.sums[name], rtol=0, atol=0)
        assert inside.sums[name].abs().sum() > 0
    with pytest.raises(RuntimeError), inside.observing(depth, valid):  # a failed pass is not counted
        raise RuntimeError("boom")
    assert inside.num_images == 1
