"""DissectionResult.save then DissectionResult.load gives back the same result; missing files are named."""

import json
import re
import zipfile

import numpy as np
import pytest
import torch

from seldepth.selectivity.bins import BinScheme, parse_bins
from seldepth.selectivity.dissect import DissectionResult, LayerSelectivity


def _layer(name, module, edges, counts, responses, ds, defined) -> LayerSelectivity:
    counts = torch.tensor(counts, dtype=torch.float64)
    responses = torch.tensor(responses, dtype=torch.float64)
    return LayerSelectivity(name, module, torch.as_tensor(edges, dtype=torch.float64), responses * counts, counts,
                            responses, torch.tensor(ds, dtype=torch.float64), responses.abs().argmax(1),
                            torch.tensor(defined))


def _result() -> DissectionResult:
    """Two layers; enc_3's unit 1 has DS undefined (set to 0), dec_0 has an empty bin (bin 1)."""
    scheme = parse_bins("sid:4:alpha=0.5,beta=8")
    e3 = scheme.edges(3)
    enc = _layer("enc_3", "encoder.blocks.3", e3, [12.0, 7.0, 3.0],
                 [[0.25, -1.5, 0.125], [2.0, 2.0, 2.0], [-0.75, 0.5, 3.0]], [0.6, 0.0, 0.45], [True, False, True])
    dec = _layer("dec_0", "decoder.up0", scheme.edges(4), [4.0, 0.0, 9.0, 1.0],
                 [[1.0, 0.0, -0.5, 0.25], [0.0, 0.0, 0.75, 0.125]], [0.3, 0.7], [True, True])
    return DissectionResult({"enc_3": enc, "dec_0": dec}, scheme, (0.25, 9.5), 13,
                            {"model": "meter_xxs", "data": "nyu:/x", "note": [1, "two"]})


def _assert_same_layer(a: LayerSelectivity, b: LayerSelectivity):
    assert (a.name, a.module) == (b.name, b.module)
    for key in ("edges", "sums", "counts", "responses", "ds", "preferred_bin", "ds_defined"):
        x, y = getattr(a, key), getattr(b, key)
        assert x.dtype == y.dtype, key
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=key)


def test_save_then_load_gives_the_same_result(tmp_path):
    result = _result()
    paths = result.save(tmp_path / "dissect")
    loaded = DissectionResult.load(tmp_path / "dissect")
    assert list(loaded.layers) == ["enc_3", "dec_0"]  # probing order
    for name in result.layers:
        _assert_same_layer(loaded.layers[name], result.layers[name])
    assert loaded.layers["enc_3"].ds_defined.tolist() == [True, False, True]
    assert loaded.layers["dec_0"].empty_bins == [1] and loaded.layers["dec_0"].coverage == 0.75
    assert loaded.bins == result.bins and loaded.bins.spec() == "sid:4:alpha=0.5,beta=8"
    assert loaded.depth_range == (0.25, 9.5) and isinstance(loaded.depth_range, tuple)
    assert loaded.num_images == 13 and loaded.info == result.info
    assert loaded.mean_ds == pytest.approx(result.mean_ds, abs=0) and loaded.to_dict() == result.to_dict()
    # saving what was loaded writes the same files again
    again = loaded.save(tmp_path / "again")
    assert again["json"].read_text() == paths["json"].read_text()
    with np.load(paths["npz"]) as a, np.load(again["npz"]) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
            assert a[key].dtype == b[key].dtype


def test_load_accepts_a_str_path_and_a_quantile_scheme_keeps_its_edges(tmp_path):
    scheme = BinScheme("quantile", 3, {"min": 0.1, "max": 10.0}).fit(torch.linspace(0.2, 9.0, 100))
    layer = _layer("a", "a", scheme.edges(3), [3.0, 3.0, 3.0], [[1.0, 2.0, 3.0]], [0.5], [True])
    DissectionResult({"a": layer}, scheme, (0.1, 10.0), 2).save(tmp_path)
    loaded = DissectionResult.load(str(tmp_path))
    assert loaded.bins.kind == "quantile" and loaded.bins.sample is None and loaded.bins == scheme
    torch.testing.assert_close(loaded.layers["a"].edges, scheme.edges(3), rtol=0, atol=0)
    assert loaded.info == {}


def test_a_layer_missing_from_the_npz_is_left_out(tmp_path):
    paths = _result().save(tmp_path)
    with np.load(paths["npz"]) as arrays:
        kept = {k: arrays[k] for k in arrays.files if not k.startswith("dec_0/")}
    np.savez(paths["npz"], **kept)
    loaded = DissectionResult.load(tmp_path)
    assert list(loaded.layers) == ["enc_3"]


def test_load_of_a_missing_folder_names_the_file(tmp_path):
    missing = tmp_path / "no_dissection"
    with pytest.raises(ValueError, match=f"^{re.escape(str(missing / 'selectivity.json'))}: not a dissection"):
        DissectionResult.load(missing)


def test_load_without_the_npz_names_it(tmp_path):
    paths = _result().save(tmp_path)
    paths["npz"].unlink()
    with pytest.raises(ValueError, match=f"^{re.escape(str(paths['npz']))}: not readable"):
        DissectionResult.load(tmp_path)


@pytest.mark.parametrize("edit", [
    lambda doc: "{not json",
    lambda doc: json.dumps({k: v for k, v in doc.items() if k != "bins"}),
    lambda doc: json.dumps({**doc, "bins": {**doc["bins"], "kind": "cubic"}}),
    lambda doc: json.dumps({k: v for k, v in doc.items() if k != "depth_range"}),
    lambda doc: json.dumps([doc]),
])
def test_load_of_a_broken_json_names_it(tmp_path, edit):
    paths = _result().save(tmp_path)
    paths["json"].write_text(edit(json.loads(paths["json"].read_text())))
    with pytest.raises(ValueError, match=f"^{re.escape(str(paths['json']))}: not a dissection"):
        DissectionResult.load(tmp_path)


@pytest.mark.parametrize("cut", [0.5, 0.0])
def test_load_of_a_truncated_npz_names_it(tmp_path, cut):
    paths = _result().save(tmp_path)
    data = paths["npz"].read_bytes()
    paths["npz"].write_bytes(data[: int(len(data) * cut)])  # a copy cut short / an empty file
    with pytest.raises(ValueError, match=f"^{re.escape(str(paths['npz']))}: not readable"):
        DissectionResult.load(tmp_path)
