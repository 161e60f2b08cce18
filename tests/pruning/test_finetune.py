"""Fine-tuning after pruning (``seldepth prune --finetune-epochs``): a training run of the pruned widths started from the
pruned weights, the fine-tuned model file and its provenance, and the refusals before any work."""

import re

import pytest
import torch
import yaml
from safetensors.torch import load_file

from seldepth.cli import main
from seldepth.models.loading import load_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.pruning.finetune import (
    PRUNED_FILE,
    check_finetune_args,
    finetune_config,
    finetune_run_dir,
    recorded_train_config,
    width_options,
)
from seldepth.pruning.pipeline import prune

SIZE = (64, 64)  # the size of the pruning fixtures' model file


def tiny_config(splits) -> dict:
    """One short epoch on the tiny NYU splits at METER's smallest input (2 training images, 1 validation batch)."""
    return {"protocol": "nyu", "optim": {"lr": 1e-3},
            "data": {"path": f"nyu:{splits}", "input_size": list(SIZE), "batch_size": 2, "num_workers": 0,
                     "limit_train": 2, "limit_val": 1},
            "trainer": {"accelerator": "cpu", "progress_bar": False, "log_every_n_steps": 1, "evaluate_test": False}}


@pytest.fixture
def train_yaml(tmp_path, tiny_splits):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_splits)))
    return path


def test_prune_then_finetune_writes_a_trained_model_of_the_pruned_widths(meter_file, train_yaml, tmp_path, capsys):
    out = tmp_path / "pruned.safetensors"
    rc = main(["prune", "--model", str(meter_file), "--criterion", "l1", "--flops", "0.6", "--finetune-epochs", "1",
               "--train-config", str(train_yaml), "--out", str(out)])
    assert rc == 0
    run = finetune_run_dir(out)
    assert run == tmp_path / "pruned_finetune" and f"wrote {out}" in capsys.readouterr().out
    before, after = load_model(run / PRUNED_FILE), load_model(out)
    assert after.config == before.config and after.config.mv2_widths is not None  # the pruned widths
    pruning = after.metadata["provenance"]["pruning"]
    assert pruning["criterion"] == "l1" and pruning["fine_tuned_epochs"] == 1 and pruning["flops_fraction"] == 0.6
    assert before.metadata["provenance"]["pruning"]["fine_tuned_epochs"] == 0
    provenance = after.metadata["provenance"]
    assert provenance["pruned_from"] == str(meter_file) and provenance["dataset"] == "nyu"
    tuning = provenance["fine_tuning"]
    assert tuning["run"] == str(run) and tuning["epochs"] == 1 and tuning["config"]["init_from"] == str(run / PRUNED_FILE)
    assert tuning["config"]["model_options"] == width_options(before) and "rmse" in tuning["val_metrics"]
    assert (run / "config.yaml").is_file() and (run / "results.json").is_file()
    start, end = load_file(str(run / PRUNED_FILE)), load_file(str(out))
    assert start.keys() == end.keys()
    assert any(not torch.equal(start[k], end[k]) for k in start if k.endswith("weight"))  # trained


def test_the_config_gets_the_pruned_widths_the_start_and_the_epochs(meter, tiny_splits, tmp_path):
    pruned = prune(meter, "l1", 0.6, size=SIZE).model
    cfg = finetune_config(pruned, tmp_path / "p.safetensors", tiny_config(tiny_splits), 3, tmp_path / "run",
                          check_init=False)
    assert cfg.model == "meter_xxs" and cfg.init_from == str(tmp_path / "p.safetensors")
    assert cfg.trainer.epochs == 3 and cfg.trainer.out_dir == str(tmp_path / "run") and cfg.optim.lr == 1e-3
    assert {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model_options.items()} == {
        k: getattr(pruned.config, k) for k in ("channels", "decoder_in", "decoder_widths", "mv2_widths", "meter_widths",
                                               "up_widths")}
    with pytest.raises(ValueError, match="model_options build meter_xxs with output 'softplus', but the pruned model "
                                         "has output 'linear'"):
        finetune_config(pruned, "p.safetensors", {**tiny_config(tiny_splits), "model_options": {"output": "softplus"}},
                        1, tmp_path / "run", check_init=False)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        finetune_config(pruned, "p.safetensors", tiny_config(tiny_splits), 0, tmp_path / "run", check_init=False)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="out_dir: .*run already holds a training run"):
        check_finetune_args(pruned, tiny_config(tiny_splits), 1, tmp_path / "run")


def test_without_a_config_the_one_the_model_was_trained_with(meter, tiny_splits, tmp_path, capsys):
    config = tiny_config(tiny_splits)
    trained = save_model_file(meter, tmp_path / "trained.safetensors", Preprocessing(input_size=SIZE),
                              {"trained_by": "seldepth train", "config": config})
    model = load_model(trained)
    assert recorded_train_config(model) == config
    cfg = check_finetune_args(model, recorded_train_config(model), 2, tmp_path / "run")
    assert cfg.data.path == f"nyu:{tiny_splits}" and cfg.trainer.epochs == 2
    untrained = save_model_file(meter, tmp_path / "untrained.safetensors", Preprocessing(input_size=SIZE))
    out = tmp_path / "p.safetensors"
    rc = main(["prune", "--model", str(untrained), "--criterion", "l1", "--flops", "0.6", "--finetune-epochs", "1",
               "--out", str(out)])
    assert rc == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "--train-config is needed by --finetune-epochs" in errors[0]
    assert not out.exists() and not finetune_run_dir(out).exists()


@pytest.mark.parametrize("change, message", [
    ({"optim": {"lrr": 1}}, "train_config .*train.yaml: Group 'optim' does not accept option 'lrr'"),
    ({"data": {"batch_size": "x"}}, 'Parser key "data.batch_size": Expected'),
    ({"data": {"path": "nyu:/no/such/folder"}}, "data.path: data spec 'nyu:/no/such/folder': .* does not exist"),
    ({"model": "realtime_depth"}, "model is 'realtime_depth', but the pruned model is a meter_xxs"),
    (None, "finetune_epochs must be an integer >= 0, got -1"),
    ("missing", "--train-config: .*missing.yaml not found"),
])
def test_bad_fine_tuning_arguments_are_refused_before_any_work(meter_file, tiny_splits, tmp_path, capsys, change,
                                                               message):
    config = tiny_config(tiny_splits)
    for key, value in (change or {}).items() if isinstance(change, dict) else ():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    path = tmp_path / ("missing.yaml" if change == "missing" else "train.yaml")
    if change != "missing":
        path.write_text(yaml.safe_dump(config))
    out = tmp_path / "p.safetensors"
    epochs = "-1" if change is None else "1"
    rc = main(["prune", "--model", str(meter_file), "--criterion", "l1", "--flops", "0.6", "--finetune-epochs", epochs,
               "--train-config", str(path), "--out", str(out)])
    assert rc == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert sum("error:" in line for line in lines) == 1 and "error:" in lines[-1]  # one line, the last
    assert re.search(message, lines[-1]), lines[-1]
    assert not out.exists() and not finetune_run_dir(out).exists()
