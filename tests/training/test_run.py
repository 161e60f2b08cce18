import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import REPO, tiny_train_args
from seldepth.cli import main
from seldepth.training.config import parse_train_args
from seldepth.training import AtomicCheckpointIO

SELDEPTH = [sys.executable, "-m", "seldepth.cli"]


def test_training_writes_a_complete_run(tiny_splits, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *tiny_train_args(tiny_splits, out, epochs=2)]) == 0
    for name in ("config.yaml", "model.safetensors", "results.json", "csv/metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    ckpt = torch.load(out / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["global_step"] == 2 * 12  # 24 train rows / batch 2, two epochs
    results = json.loads((out / "results.json").read_text())
    assert results["val"]["num_images"] == 3 and results["test"]["num_images"] == 1
    # the saved config reproduces the run's settings
    cfg, _ = parse_train_args(["--config", str(out / "config.yaml")])
    assert cfg.data.input_size == (64, 96) and cfg.trainer.epochs == 2
    # the model file is usable and validates like the checkpoint
    import seldepth

    model = seldepth.load_model(out / "model.safetensors")
    assert model.preprocessing.input_size == (64, 96)
    # refusing to overwrite a finished run without --resume
    assert main(["train", *tiny_train_args(tiny_splits, out, epochs=2)]) == 2


def test_sigkill_mid_epoch_then_resume_finishes_planned_epochs(tiny_splits, tmp_path):
    out = tmp_path / "run"
    args = [*SELDEPTH, "train", *tiny_train_args(tiny_splits, out, epochs=4)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert last.exists(), "the first epoch never finished"
    time.sleep(0.3)  # well inside the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "results.json").exists(), "the run finished before it was killed"
    killed_at = torch.load(last, weights_only=True, map_location="cpu")  # loadable: never half-written
    assert killed_at["global_step"] < 4 * 12
    done = subprocess.run([*args, "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = torch.load(last, weights_only=True, map_location="cpu")
    assert final["global_step"] == 4 * 12
    assert (out / "results.json").is_file()
    # metrics.csv keeps the epochs before the resume (Lightning's writer would delete them), each epoch once
    import csv

    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    val_epochs = [int(r["epoch"]) for r in rows if r.get("val/rmse")]
    assert val_epochs == [0, 1, 2, 3]
    # and each training step once: the interrupted epoch's rows logged before the kill are not kept beside the
    # resumed run's rows for the same steps
    train_steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert train_steps == sorted(set(train_steps)) and len(train_steps) == 4 * 12
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_checkpoint_write_failure_leaves_previous_file_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}


@pytest.mark.parametrize("argv, key", [
    (["--optim.lr", "-0.1"], "optim.lr"),
    (["--optim.lrr", "0.1"], "lrr"),
    (["--data.path", "nyu:/no/such/data"], "data.path"),
    (["--model", "meter_xxxs"], "model"),
    (["--data.batch_size", "0"], "data.batch_size"),
])
def test_bad_config_values_name_the_key_before_work(argv, key, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", "--trainer.out_dir", str(out), *argv]) == 2
    assert key in capsys.readouterr().err
    assert not out.exists()


def test_unknown_key_in_yaml_is_named(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: meter_xxs\ntrainer:\n  epochz: 3\n")
    assert main(["train", "--config", str(cfg)]) == 2
    assert "epochz" in capsys.readouterr().err


def test_two_process_ddp_validation_equals_one_process(tiny_splits, tmp_path):
    out = tmp_path / "run"
    assert main(["train", *tiny_train_args(tiny_splits, out, epochs=1), "--trainer.evaluate_test", "false"]) == 0
    script = tmp_path / "validate_ddp.py"
    script.write_text(
        "import json, sys\n"
        "from seldepth.training.config import parse_train_args\n"
        "from seldepth.training import validate_checkpoint\n"
        "cfg, _ = parse_train_args(sys.argv[3:])\n"
        "metrics = validate_checkpoint(cfg, sys.argv[1])\n"
        "import torch.distributed as dist\n"
        "if not dist.is_initialized() or dist.get_rank() == 0:\n"
        "    open(sys.argv[2], 'w').write(json.dumps(metrics))\n"
    )
    results = {}
    for devices, strategy in [(1, "auto"), (2, "ddp")]:
        target = tmp_path / f"metrics_{devices}.json"
        cmd = [sys.executable, str(script), str(out / "checkpoints/last.ckpt"), str(target), "--config", str(out / "config.yaml"),
               "--trainer.devices", str(devices), "--trainer.strategy", strategy, "--trainer.out_dir", str(tmp_path / "v")]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        results[devices] = json.loads(target.read_text())
    assert results[1].keys() == results[2].keys() and "val/rmse" in results[1]
    for key, value in results[1].items():
        assert results[2][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def test_last_checkpoint_is_the_latest_state_even_when_validation_gets_worse(tiny_splits, tmp_path, monkeypatch):
    from seldepth.training import DepthTrainingModule

    def worsening_validation(self):
        self.val_metrics.reset()
        self.log("val/rmse", float(self.current_epoch + 1))  # gets worse every epoch: best stays at epoch 0

    monkeypatch.setattr(DepthTrainingModule, "on_validation_epoch_end", worsening_validation)
    out = tmp_path / "run"
    assert main(["train", *tiny_train_args(tiny_splits, out, epochs=2), "--trainer.evaluate_test", "false"]) == 0
    best = torch.load(out / "checkpoints/best.ckpt", weights_only=True, map_location="cpu")
    last = torch.load(out / "checkpoints/last.ckpt", weights_only=True, map_location="cpu")
    assert best["global_step"] == 12
    assert last["global_step"] == 24
