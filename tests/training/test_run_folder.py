"""RunFolder: the file names of a run folder, its checks, and readers that say which file is wrong."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seldepth.selectivity.bins import BinScheme
from seldepth.selectivity.dissect import DissectionResult, LayerSelectivity
from seldepth.training.run_folder import RunFolder, read_json, read_yaml


def _finished_run(root: Path, config: dict | None = None, results: dict | None = None) -> RunFolder:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config if config is not None else {"model": "meter_xxs"}))
    (root / "results.json").write_text(json.dumps(results if results is not None else {"test": {"rmse": 0.5}}))
    return RunFolder(root)


def test_paths_of_the_files_of_a_run(tmp_path):
    run = RunFolder(tmp_path / "baseline")
    r = tmp_path / "baseline"
    assert run.name == "baseline" and RunFolder(r, name="B").name == "B" and RunFolder(r, name="").name == ""
    assert run.config_path == r / "config.yaml"
    assert run.results_path == r / "results.json"
    assert run.model_file_path == r / "model.safetensors"
    assert run.pose_file_path == r / "pose.safetensors"
    assert run.checkpoint_dir == r / "checkpoints"
    assert run.best_checkpoint == r / "checkpoints" / "best.ckpt"
    assert run.last_checkpoint == r / "checkpoints" / "last.ckpt"
    assert run.metrics_csv_path == r / "csv" / "metrics.csv"
    assert run.dissection_dir == r / "dissect"
    assert run.ablation_dir == r / "ablation"
    assert run.ablation_path == r / "ablation" / "ablation.json"
    assert run.test_extra_path == r / "test_extra.json"
    assert run.done_path == r / "run_done.json"
    assert RunFolder(str(r)).config_path == r / "config.yaml"  # a str path works too
    assert not r.exists()  # paths only: nothing is created
    assert repr(run) == f"RunFolder({str(r)!r}, name='baseline')"


def test_check_names_the_folder_and_the_missing_file(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match=f"^run folder {re.escape(str(missing))} does not exist"):
        RunFolder(missing).check()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="does not exist \\(or is not a folder\\)"):
        RunFolder(tmp_path / "file").check()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(ValueError, match=f"^run folder {re.escape(str(run_dir))} has no config.yaml"):
        RunFolder(run_dir).check()
    (run_dir / "config.yaml").write_text("model: meter_xxs\n")
    with pytest.raises(ValueError, match=f"^run folder {re.escape(str(run_dir))} has no results.json"):
        RunFolder(run_dir).check()
    (run_dir / "results.json").mkdir()  # a folder of that name is not the file
    with pytest.raises(ValueError, match="has no results.json"):
        RunFolder(run_dir).check()
    (run_dir / "results.json").rmdir()
    (run_dir / "results.json").write_text("{}")
    run = RunFolder(run_dir)
    assert run.check() is run


def test_final_checkpoint_is_best_then_last(tmp_path):
    run = RunFolder(tmp_path)
    assert run.final_checkpoint() == run.last_checkpoint  # neither exists yet: where --resume would look
    run.checkpoint_dir.mkdir()
    run.last_checkpoint.write_bytes(b"last")
    assert run.final_checkpoint() == run.last_checkpoint
    run.best_checkpoint.write_bytes(b"best")
    assert run.final_checkpoint() == run.best_checkpoint
    run.last_checkpoint.unlink()
    assert run.final_checkpoint() == run.best_checkpoint


def test_state_of_a_run(tmp_path):
    run = _finished_run(tmp_path / "r")
    assert run.model_file is None and not run.is_done
    run.model_file_path.write_bytes(b"weights")
    run.done_path.write_text(json.dumps({"train_s": 12.5}))
    assert run.model_file == run.model_file_path and run.is_done and run.done() == {"train_s": 12.5}


def test_readers_return_none_for_missing_optional_files(tmp_path):
    run = _finished_run(tmp_path / "r")
    assert run.done() is None
    assert run.test_extra() is None
    assert run.metrics_log() is None
    assert run.dissection() is None
    assert run.dissection_result() is None
    assert run.layer_selectivity("enc_0") is None
    assert run.ablation() is None
    assert run.model_file is None


def test_readers_read_what_is_there(tmp_path):
    run = _finished_run(tmp_path / "r", config={"model": "realtime_depth", "data": {"path": "nyu:/d", "test_split": "val"}},
                        results={"val": {"rmse": 0.4}, "test": {"rmse": 0.5}})
    run.test_extra_path.write_text(json.dumps({"median_scaled": {"rmse": 0.45}}))
    run.ablation_dir.mkdir()
    run.ablation_path.write_text(json.dumps({"curves": []}))
    run.metrics_csv_path.parent.mkdir()
    run.metrics_csv_path.write_text("epoch,step,val/rmse\n0,10,0.9\n,11,\n")
    assert run.config["model"] == "realtime_depth" and run.model_name == "realtime_depth"
    assert run.results["test"]["rmse"] == 0.5
    assert run.data_spec == "nyu:/d" and run.test_split == "val"
    assert run.test_extra() == {"median_scaled": {"rmse": 0.45}} and run.ablation() == {"curves": []}
    log = run.metrics_log()
    np.testing.assert_array_equal(log["step"], [10, 11])
    assert log["val/rmse"][0] == 0.9 and np.isnan(log["val/rmse"][1])


def test_config_defaults_when_keys_are_absent(tmp_path):
    run = _finished_run(tmp_path / "r", config={"data": "not a mapping"})
    assert run.model_name == "?" and run.config_section("data") == {} and run.config_section("absent") == {}
    assert run.data_spec is None and run.test_split == "test" and run.regularised_layers == []


def test_config_and_results_of_a_folder_without_them_name_the_file(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "config.yaml")) + ": not readable YAML"):
        run.config
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "results.json")) + ": not readable JSON"):
        run.results


@pytest.mark.parametrize("text, message", [
    ("{\"rmse\": 0.5", "not readable JSON"),
    ("", "not readable JSON"),
    ("\xff\xfe", "not readable JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ("0.5", "expected a JSON object, got float"),
])
def test_broken_json_names_the_file(tmp_path, text, message):
    run = _finished_run(tmp_path / "r")
    for path, read in ((run.results_path, lambda: run.results), (run.done_path, run.done),
                       (run.test_extra_path, run.test_extra), (run.ablation_path, run.ablation),
                       (run.dissection_dir / "selectivity.json", run.dissection)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}"):
            read()
        with pytest.raises(ValueError, match=f"^{re.escape(str(path))}: {message}"):
            read_json(path)


@pytest.mark.parametrize("text, message", [
    ("model: [meter_xxs\n", "not readable YAML"),
    ("a: b: c\n", "not readable YAML"),
    ("- model\n- meter_xxs\n", "expected a mapping of config keys, got list"),
    ("", "expected a mapping of config keys, got NoneType"),
])
def test_broken_yaml_names_the_file(tmp_path, text, message):
    run = _finished_run(tmp_path / "r")
    run.config_path.write_text(text)
    with pytest.raises(ValueError, match=f"^{re.escape(str(run.config_path))}: {message}"):
        run.config
    with pytest.raises(ValueError, match=f"^{re.escape(str(run.config_path))}: {message}"):
        read_yaml(run.config_path)


@pytest.mark.parametrize("selectivity, layers", [
    ({"layers": ["enc_5", "dec_3"], "weight": 0.1}, ["enc_5", "dec_3"]),
    ({"layers": "enc_5, dec_3,,", "weight": 10}, ["enc_5", "dec_3"]),
    ({"layers": "enc_5"}, ["enc_5"]),  # no weight: the config's default, not 0
    ({"layers": [7, "decoder.up1"], "weight": 1.0}, ["7", "decoder.up1"]),
    ({"layers": ["enc_5"], "weight": 0}, []),  # weight 0: the regulariser did nothing
    ({"layers": "enc_5,dec_3", "weight": 0.0}, []),
    ({"layers": [], "weight": 0.1}, []),
    ({"layers": None, "weight": 0.1}, []),
    ({"layers": "", "weight": 0.1}, []),
    ({"weight": 0.1}, []),
    ("enc_5", []),  # not a mapping
    (None, []),
])
def test_regularised_layers(tmp_path, selectivity, layers):
    run = _finished_run(tmp_path / "r", config={"model": "meter_xxs", "selectivity": selectivity})
    assert run.regularised_layers == layers


def test_regularised_layers_of_a_saved_train_config(tmp_path):
    from seldepth.selectivity.regularizer import SelectivityConfig
    from seldepth.training.config import TrainConfig, dump_config

    cfg = TrainConfig(selectivity=SelectivityConfig(layers=("enc_5", "dec_3"), weight=10.0))
    run = _finished_run(tmp_path / "r", config=yaml.safe_load(dump_config(cfg)))
    assert run.regularised_layers == ["enc_5", "dec_3"]
    run = _finished_run(tmp_path / "off", config=yaml.safe_load(dump_config(TrainConfig())))
    assert run.regularised_layers == []


def _small_dissection() -> DissectionResult:
    edges = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    counts = torch.tensor([10.0, 0.0, 5.0], dtype=torch.float64)
    responses = torch.tensor([[1.0, 0.0, -3.0], [0.5, 0.0, 0.5]], dtype=torch.float64)
    layer = LayerSelectivity("enc_0", "encoder.blocks.0", edges, responses * counts, counts, responses,
                             torch.tensor([0.5, 0.0], dtype=torch.float64), torch.tensor([2, 0]),
                             torch.tensor([True, False]))
    return DissectionResult({"enc_0": layer}, BinScheme("linear", 3, {"min": 0.5, "max": 4.0}), (0.5, 4.0), 7)


def test_dissection_readers(tmp_path):
    run = _finished_run(tmp_path / "r")
    _small_dissection().save(run.dissection_dir)
    assert run.dissection()["num_images"] == 7
    result = run.dissection_result()
    assert list(result.layers) == ["enc_0"] and result.num_images == 7
    layer = run.layer_selectivity("enc_0")
    assert layer.module == "encoder.blocks.0" and layer.ds_defined.tolist() == [True, False]
    torch.testing.assert_close(layer.responses, _small_dissection().layers["enc_0"].responses, rtol=0, atol=0)
    assert run.layer_selectivity("dec_3") is None  # a layer that was not dissected
