"""``seldepth prune``: the pruned model file and its provenance, the before/after table, and the refusals (one line,
exit status 2, nothing written) of what it cannot prune."""

import inspect
import json
import re

import numpy as np
import pytest
from PIL import Image

from seldepth import cli
from seldepth.cli import main
from seldepth.models import create_model
from seldepth.models.loading import load_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.pruning.pipeline import prune
from seldepth.pruning.plan import plan_pruning


@pytest.fixture
def ramp_folder(tmp_path):
    """folder: data of two 64x64 pairs whose depth ramps from 0.5 m to 5.5 m (16-bit PNG, millimetres)."""
    root = tmp_path / "ramp"
    root.mkdir()
    rng = np.random.default_rng(0)
    ramp = np.repeat(np.linspace(500, 5500, 64)[:, None], 64, axis=1).astype(np.uint16)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / f"{i:03d}_rgb.png")
        Image.fromarray(ramp if i == 0 else ramp[::-1].copy()).save(root / f"{i:03d}_depth.png")
    return root


def test_prune_by_ds_writes_a_model_file_with_its_provenance(meter_file, ramp_folder, tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    data = f"folder:{ramp_folder}?scale=1000"
    rc = main(["prune", "--model", str(meter_file), "--criterion", "ds", "--flops", "0.6", "--data", data,
               "--bins", "linear:16:min=0.5,max=5.5", "--depth-range", "0.4,5.6", "--num-workers", "0", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "pruned by ds to 0.5" in printed and "at 64x64" in printed and f"wrote {out}" in printed
    before, after = (line.split() for line in printed.splitlines() if line.startswith(("before", "after")))
    assert before[1] == "713,464" and int(after[1].replace(",", "")) < 713_464
    model = load_model(out)
    provenance = model.metadata["provenance"]
    assert provenance["dataset"] == "nyu" and provenance["png_scale"] == 1000  # read back by eval and predict
    assert provenance["pruned_from"] == str(meter_file) and provenance["source_provenance"]["source"] == "test"
    pruning = provenance["pruning"]
    assert pruning["criterion"] == "ds" and pruning["data"] == data and pruning["flops_fraction"] == 0.6
    assert pruning["achieved_flops_fraction"] == pytest.approx(0.6, rel=0.05)
    assert pruning["flops_after"] == model.flops(64, 64) and pruning["parameters_after"] == model.num_parameters()
    assert json.loads(json.dumps(pruning)) == pruning
    assert model.preprocessing.input_size == (64, 64)


def test_prune_by_l1_counts_flops_at_the_size_asked(meter_file, tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    rc = main(["prune", "--model", str(meter_file), "--criterion", "l1", "--flops", "0.8", "--size", "128x128",
               "--out", str(out)])
    assert rc == 0
    assert re.search(r"pruned by l1 to 0\.(7\d\d|800) of its FLOPs at 128x128", capsys.readouterr().out)
    pruning = load_model(out).metadata["provenance"]["pruning"]
    assert pruning["size"] == [128, 128] and pruning["data"] is None and pruning["criterion"] == "l1"
    assert pruning["achieved_flops_fraction"] == pytest.approx(0.8, rel=0.05)


@pytest.fixture
def synergy_file(tmp_path):
    return save_model_file(create_model("synergy_depth"), tmp_path / "syn.safetensors", Preprocessing(input_size=(32, 32)))


@pytest.mark.parametrize("options, message", [
    (["--criterion", "l1", "--flops", "0"], "flops_fraction must be a number in (0, 1]"),
    (["--criterion", "l1", "--flops", "1.5"], "flops_fraction must be a number in (0, 1]"),
    (["--criterion", "l1", "--flops", "0.05"], "flops_fraction 0.05 cannot be reached"),
    (["--criterion", "l2", "--flops", "0.6"], "criterion must be one of ds, ds-inverse, l1, random, got 'l2'"),
    (["--criterion", "ds", "--flops", "0.6"], "--data is needed by --criterion ds"),
    (["--criterion", "l1", "--flops", "0.6", "--out", "x.onnx"], "path: a pruned model is written as a .safetensors"),
    (["--criterion", "l1", "--flops", "0.6", "--normalise", "zscore"], "zscore"),
])
def test_bad_arguments_are_refused_before_any_work(meter_file, tmp_path, capsys, options, message):
    out = tmp_path / "pruned.safetensors"
    argv = ["prune", "--model", str(meter_file), "--out", str(out), *options]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]
    assert not out.exists() and not (tmp_path / "x.onnx").exists()


def test_models_it_cannot_prune_are_named(synergy_file, tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    assert main(["prune", "--model", str(synergy_file), "--criterion", "l1", "--flops", "0.6", "--out", str(out)]) == 2
    assert "structured pruning supports METER models (meter_xxs, meter_xs, meter_s) and realtime_depth" in capsys.readouterr().err
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    assert main(["prune", "--model", str(onnx), "--criterion", "l1", "--flops", "0.6", "--out", str(out)]) == 2
    assert "is an exported graph; structured pruning needs the PyTorch model" in capsys.readouterr().err
    assert not out.exists()


def test_data_without_depth_spread_is_refused(meter_file, pair_folder, tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    with pytest.warns(UserWarning):  # every bin but one is empty
        rc = main(["prune", "--model", str(meter_file), "--criterion", "ds-inverse", "--flops", "0.6",
                   "--data", f"folder:{pair_folder}?scale=1000", "--num-workers", "0", "--out", str(out)])
    assert rc == 2
    assert "no unit with a defined depth selectivity" in capsys.readouterr().err and not out.exists()


def test_cli_defaults_are_the_librarys():
    defaults = dict(cli._subparser(cli.COMMANDS_BY_NAME["prune"]).get_defaults())
    lib = {k: p.default for k, p in inspect.signature(plan_pruning).parameters.items() if p.default is not p.empty}
    assert (defaults["min_keep"], defaults["min_channels"], defaults["normalise"]) == (
        lib["min_keep"], lib["min_channels"], lib["normalise"])
    assert defaults["draw"] == inspect.signature(prune).parameters["draw"].default


def test_a_pruned_model_file_goes_through_every_command_unchanged(meter_file, ramp_folder, tmp_path, capsys):
    pruned = tmp_path / "pruned.safetensors"
    assert main(["prune", "--model", str(meter_file), "--criterion", "l1", "--flops", "0.6", "--out", str(pruned)]) == 0
    data = f"folder:{ramp_folder}?scale=1000"
    evaluated = tmp_path / "eval.json"
    assert main(["eval", "--model", str(pruned), "--data", data, "--num-workers", "0", "--json", str(evaluated)]) == 0
    direct = load_model(str(pruned))
    assert json.loads(evaluated.read_text())["num_images"] == 2 and direct.num_parameters() < load_model(str(meter_file)).num_parameters()
    dissected = tmp_path / "dissect"
    assert main(["dissect", "--model", str(pruned), "--data", data, "--bins", "linear:8:min=0.5,max=5.5",
                 "--depth-range", "0.4,5.6", "--num-workers", "0", "--out", str(dissected)]) == 0
    assert (dissected / "selectivity.json").is_file()
    predicted = tmp_path / "pred"
    assert main(["predict", str(ramp_folder / "000_rgb.png"), "--model", str(pruned), "--out", str(predicted)]) == 0
    assert any(predicted.iterdir())
    for fmt, name in (("onnx", "pruned.onnx"), ("openvino", "pruned.xml")):
        assert main(["export", "--model", str(pruned), "--format", fmt, "--out", str(tmp_path / name)]) == 0
        assert (tmp_path / name).is_file()
    bench = tmp_path / "bench.json"
    assert main(["bench", "--model", str(pruned), "--size", "64x64", "--runs", "2", "--warmup", "0", "--no-compile",
                 "--json", str(bench)]) == 0
    assert bench.is_file()
