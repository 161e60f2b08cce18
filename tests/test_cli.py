"""The conventions every `seldepth` subcommand shares: --version, python -m seldepth, a fast --help without torch,
--config and --print_config, one spelling (HxW sizes, --num-workers), output paths checked first, exit codes
0 / 1 / 2 / 130, and Lightning's chatter only with --verbose."""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import yaml
from PIL import Image

from helpers import REPO
from seldepth import cli
from seldepth.cli import main

PYTHON = [sys.executable]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*PYTHON, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A small untrained depth model file (32x32 input): fast to load and run."""
    import torch

    from seldepth.models import create_model
    from seldepth.models.model_file import save_model_file
    from seldepth.models.preprocessing import Preprocessing

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return save_model_file(create_model("realtime_depth"), path, Preprocessing(input_size=(32, 32)))


# --- --version, python -m seldepth, start-up without torch ----------------------------------------------------

def test_version(capsys):
    import seldepth

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"seldepth {seldepth.__version__}"
    proc = _run("-m", "seldepth", "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"seldepth {seldepth.__version__}"


def test_python_dash_m_seldepth_runs_the_command():
    proc = _run("-m", "seldepth", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "predict" in proc.stdout and "--verbose" in proc.stdout
    proc = _run("-m", "seldepth", "eval", "--bogus")
    assert proc.returncode == 2 and "--bogus" in proc.stderr


def test_help_of_every_subcommand_imports_no_torch():
    names = [c.name for c in cli.COMMANDS if c.name != "train"]  # train's help is built from its torch dataclasses
    code = ("import contextlib, io, sys\n"
            "from seldepth.cli import main\n"
            f"for argv in [['--help'], ['--version']] + [[n, '--help'] for n in {names!r}]:\n"
            "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "        assert main(argv) == 0, argv\n"
            "    assert 'usage' in out.getvalue() or 'seldepth' in out.getvalue(), argv\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'lightning', 'PIL') if m in sys.modules)\n"
            "assert not heavy, heavy\n"
            "import seldepth\n"
            "assert 'torch' not in sys.modules\n"
            "print('ok')\n")
    proc = _run("-c", code)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
    # the console script and python -m, as a user types them: no torch in the import log
    for argv in ([str(Path(sys.executable).parent / "seldepth"), "--help"], [*PYTHON, "-m", "seldepth", "eval", "--help"]):
        if not Path(argv[0]).exists():
            continue
        proc = subprocess.run(argv, cwd=REPO, env=dict(ENV, PYTHONPROFILEIMPORTTIME="1"), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
        assert "seldepth.cli" in imported and "torch" not in imported, argv


def test_the_public_api_is_imported_on_first_use():
    proc = _run("-c", "import sys, seldepth\n"
                      "assert 'torch' not in sys.modules and 'load_model' in dir(seldepth)\n"
                      "from seldepth import load_model, list_models\n"
                      "assert 'torch' in sys.modules and 'meter_xxs' in seldepth.list_models()\n"
                      "assert seldepth.create_model('meter_xxs').num_parameters() > 0\n"
                      "print(load_model.__module__)\n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "seldepth.models.loading"


# --- typed arguments, defaults from the library, --config, --print_config -----------------------------------

def _defaults(name: str) -> dict:
    return dict(cli._subparser(cli.COMMANDS_BY_NAME[name]).get_defaults())


def _signature_defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def test_defaults_are_the_librarys():
    from seldepth import defaults
    from seldepth.data.spec import open_dataset
    from seldepth.data.synthetic import generate
    from seldepth.deploy.bench import benchmark
    from seldepth.deploy.quantize import quantize_int8
    from seldepth.evaluation import evaluate
    from seldepth.experiments.uncertainty import uncertainty_scores
    from seldepth.prediction import predict_paths
    from seldepth.report.html import write_report
    from seldepth.selectivity import DEFAULT_BINS, DEFAULT_DEPTH_RANGE, DEFAULT_FRACTIONS, ablate, dissect

    assert (DEFAULT_BINS, DEFAULT_DEPTH_RANGE, DEFAULT_FRACTIONS) == (
        defaults.DEFAULT_BINS, defaults.DEFAULT_DEPTH_RANGE, defaults.DEFAULT_FRACTIONS)
    lib = _signature_defaults(evaluate)
    d = _defaults("eval")
    assert (d["batch_size"], d["num_workers"], d["split"]) == (lib["batch_size"], lib["num_workers"],
                                                                _signature_defaults(open_dataset)["split"])
    lib, d = _signature_defaults(dissect), _defaults("dissect")
    assert d["bins"] == lib["bins"] and tuple(d["depth_range"]) == lib["depth_range"]
    assert (d["batch_size"], d["num_workers"]) == (lib["batch_size"], lib["num_workers"])
    lib, d = _signature_defaults(ablate), _defaults("ablate")
    assert tuple(d["fractions"]) == lib["fractions"] and d["seeds"] == lib["seeds"] and d["batch_size"] == lib["batch_size"]
    lib, d = _signature_defaults(benchmark), _defaults("bench")
    assert d["size"] == "x".join(map(str, lib["size"])) == "192x256"
    assert (d["threads"], d["runs"], d["warmup"], d["calibration_images"], d["compile_budget"]) == (
        lib["threads"], lib["runs"], lib["warmup"], lib["int8_images"], lib["compile_budget_s"])
    assert _defaults("export")["calibration_images"] == _signature_defaults(quantize_int8)["num_images"]
    lib, d = _signature_defaults(generate), _defaults("synth")
    assert d["size"] == "x".join(map(str, lib["size"])) and d["num"] == lib["num"]
    assert _defaults("predict")["batch_size"] == _signature_defaults(predict_paths)["batch_size"]
    lib, d = _signature_defaults(uncertainty_scores), _defaults("select")
    assert (d["passes"], d["dropout"]) == (lib["passes"], lib["p"])
    assert _defaults("report")["samples"] == _signature_defaults(write_report)["samples"]


def test_help_shows_the_defaults(capsys):
    assert main(["dissect", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "default: sid:64" in text and "default: 0.001,10" in text and "--num-workers" in text
    assert main(["ablate", "--help"]) == 0
    assert "default: 0,0.1,0.25,0.5,0.75" in " ".join(capsys.readouterr().out.split())
    assert main(["synth", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "HxW (height x width)" in text and "default: 192x256" in text


def test_print_config_then_config_reproduces_the_arguments(tmp_path, capsys):
    argv = ["dissect", "--model", "m.safetensors", "--data", "nyu:x", "--layers", "enc_0", "--depth-range", "0.5,8",
            "--num-workers", "2"]
    assert main([*argv, "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["bins"] == "sid:64" and printed["depth_range"] == [0.5, 8.0] and printed["num_workers"] == 2
    assert printed["model"] == "m.safetensors" and printed["batch_size"] == 4 and printed["device"] == "auto"
    config = tmp_path / "dissect.yaml"
    config.write_text(yaml.safe_dump(printed))
    assert main(["dissect", "--config", str(config), "--print_config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed
    assert main(["dissect", "--config", str(config), "--batch-size", "2", "--print_config"]) == 0  # options after it win
    assert yaml.safe_load(capsys.readouterr().out) == {**printed, "batch_size": 2}


def test_eval_reads_its_arguments_from_a_config_file(tiny_model, nyu_sample, tmp_path, capsys):
    result = tmp_path / "r.json"
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"model": str(tiny_model), "data": f"nyu:{nyu_sample}", "batch_size": 5,
                                      "caps": [4, 6], "json": str(result)}))
    assert main(["eval", "--config", str(config), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "images: 10" in captured.out and "caps 4/6 m" in captured.out
    assert "device cpu (requested: cpu)" in captured.err
    doc = json.loads(result.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON token {c}"))
    assert doc["num_images"] == 10 and doc["protocol"]["caps"] == [4.0, 6.0] and doc["model"] == str(tiny_model)
    # a value from the file is used: the file's missing model is named
    config.write_text(yaml.safe_dump({"model": str(tmp_path / "none.safetensors"), "data": f"nyu:{nyu_sample}"}))
    assert main(["eval", "--config", str(config)]) == 2
    assert str(tmp_path / "none.safetensors") in capsys.readouterr().err


def test_a_bad_value_is_a_usage_error_naming_the_option(capsys):
    assert main(["eval", "--model", "m", "--data", "nyu:x", "--batch-size", "0"]) == 2
    assert "batch_size" in capsys.readouterr().err
    assert main(["eval", "--model", "m", "--data", "nyu:x", "--caps", "4,x"]) == 2
    assert "caps" in capsys.readouterr().err
    assert main(["eval", "--model", "m", "--data", "nyu:x", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2
    assert "no-such-command" in capsys.readouterr().err


def test_old_spellings_say_the_new_one(tmp_path, capsys):
    assert main(["eval", "--model", "m", "--data", "nyu:x", "--workers", "2"]) == 2
    assert "--workers is spelt --num-workers" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "s"), "--size", "256x192"]) == 2
    assert "--size is HxW (height x width) since 0.2: did you mean 192x256?" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({"base": {"model": "meter_xxs"}, "runs": {"a": {}}}))
    assert main(["experiment", "--config", str(experiment), "--out", str(tmp_path / "o")]) == 2
    assert f"seldepth experiment {experiment} --out DIR" in capsys.readouterr().err


# --- sizes are HxW everywhere -------------------------------------------------------------------------------

def test_synth_size_is_height_by_width(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["synth", "--out", str(out), "--num", "1", "--size", "24x32", "--num-workers", "1"]) == 0
    assert "of 24x32 (HxW)" in capsys.readouterr().out
    image = Image.open(next(out.glob("*/*_colors.png")))
    assert image.size == (32, 24)  # PIL: (width, height)
    for bad in ("24by32", "0x32", "32"):
        assert main(["synth", "--out", str(out), "--size", bad]) == 2
        assert "--size must be HxW (height x width)" in capsys.readouterr().err
    assert main(["models", "--size", "0x5"]) == 2
    assert "--size must be HxW" in capsys.readouterr().err


# --- output paths are checked before any work ---------------------------------------------------------------

def test_impossible_output_paths_are_named_before_any_work(tiny_model, tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    cases = [
        (["predict", str(image), "--model", str(tmp_path / "missing.safetensors"), "--out", str(afile)],
         f"--out {afile} is an existing file; an output folder is expected"),
        (["eval", "--model", str(tmp_path / "missing.safetensors"), "--data", "nyu:x", "--json", str(tmp_path)],
         f"--json {tmp_path} is a folder; a file name is expected"),
        (["report", str(tmp_path), "--out", str(afile / "r.html")], f"--out {afile / 'r.html'}: {afile} is a file"),
        (["synth", "--out", str(afile / "s"), "--num", "1"], f"--out {afile / 's'}: {afile} is a file"),
        (["import-meter", str(tmp_path / "w"), "--out", str(tmp_path)], f"--out {tmp_path} is a folder"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "x.png"]  # nothing written


# --- exit codes -------------------------------------------------------------------------------------------------

def test_exit_1_when_every_input_is_skipped(tiny_model, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert main(["predict", str(broken), "--model", str(tiny_model), "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "predicted 0 images" in captured.out and "skipped 1 unreadable inputs" in captured.out
    assert "seldepth predict: no image or video was predicted (every input was skipped)" in captured.err
    image = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (90, 120, 200)).save(image)
    assert main(["predict", str(image), str(broken), "--model", str(tiny_model), "--out", str(tmp_path / "out")]) == 0


def test_exit_1_when_eval_scores_no_image(tiny_model, nyu_sample, tmp_path, capsys):
    root = tmp_path / "nyu"
    shutil.copytree(nyu_sample, root)
    for png in root.glob("nyu2_test/*_colors.png"):
        png.write_bytes(png.read_bytes()[:100])  # every image truncated
    json_out = tmp_path / "r.json"
    assert main(["eval", "--model", str(tiny_model), "--data", f"nyu:{root}", "--on-error", "skip",
                 "--json", str(json_out)]) == 1
    captured = capsys.readouterr()
    assert "skipped 10 bad samples" in captured.out
    assert f"seldepth eval: no image of nyu:{root} (split test) was scored" in captured.err
    assert not json_out.exists()


def test_library_errors_are_one_line_and_the_traceback_needs_verbose(tmp_path, capsys):
    argv = ["eval", "--model", str(tmp_path / "none.safetensors"), "--data", "nyu:x", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("seldepth eval: error:") and "Traceback" not in err and str(tmp_path) in err
    assert main([*argv, "--verbose"]) == 2
    assert "Traceback" in capsys.readouterr().err
    assert main(["eval", "--model", "m", "--data", "nyu:x", "--device", "tpu"]) == 2
    assert "'tpu'" in capsys.readouterr().err


def _replace_command(monkeypatch, name: str, run) -> None:
    monkeypatch.setitem(cli.COMMANDS_BY_NAME, name, dataclasses.replace(cli.COMMANDS_BY_NAME[name], run=run))


def test_exit_130_on_ctrl_c_with_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    _replace_command(monkeypatch, "models", interrupted)
    assert main(["models"]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "seldepth models: interrupted" and "Traceback" not in err


def test_exit_1_and_a_hint_for_an_unexpected_failure(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("the disk caught fire")

    _replace_command(monkeypatch, "models", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "seldepth models: error: the disk caught fire (RuntimeError; --verbose shows the traceback)" in err
    assert "Traceback" not in err


def _sigint_as_in_a_terminal():
    # A shell starts background jobs with SIGINT ignored, and Python then keeps ignoring it; the test
    # suite may run as such a job, so the child gets the default disposition, as under a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigint_during_work_exits_130_without_a_traceback(tmp_path):
    out = tmp_path / "synth"
    proc = subprocess.Popen([*PYTHON, "-m", "seldepth", "synth", "--out", str(out), "--num", "100000", "--size", "24x32",
                             "--num-workers", "1"], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_sigint_as_in_a_terminal)
    deadline = time.time() + 120
    while not list(out.glob("train/*_colors.png")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.rstrip().endswith("seldepth synth: interrupted") and "Traceback" not in err


# --- Lightning's tips and warnings only with --verbose ------------------------------------------------------

def _lightning_chatter(seen: dict):
    def run(argv):
        from lightning.fabric.utilities.warnings import PossibleUserWarning

        cli._quiet_lightning()
        seen["level"] = logging.getLogger("lightning.pytorch").level
        with warnings.catch_warnings(record=True) as caught:
            warnings.filterwarnings("always", message="a warning of seldepth's own")
            warnings.warn("The number of training batches (12) is smaller than the logging interval "
                          "Trainer(log_every_n_steps=50).", PossibleUserWarning)
            warnings.warn("Tip: try installing litlogger", UserWarning)
            warnings.warn("a warning of seldepth's own", UserWarning)
        seen["warnings"] = [str(w.message) for w in caught]
    return run


def test_lightning_chatter_is_filtered_unless_verbose(monkeypatch):
    import lightning.pytorch  # noqa: F401  (sets its loggers to INFO)

    seen = {}
    _replace_command(monkeypatch, "train", _lightning_chatter(seen))
    assert main(["train"]) == 0
    assert seen["level"] == logging.WARNING and seen["warnings"] == ["a warning of seldepth's own"]
    assert logging.getLogger("lightning.pytorch").level == logging.INFO  # restored after the command
    assert main(["train", "--verbose"]) == 0
    assert seen["level"] == logging.INFO and len(seen["warnings"]) == 3


def test_training_runs_on_the_accelerator_lightning_finds():
    from seldepth.training.config import TrainerConfig, parse_train_args

    assert TrainerConfig().accelerator == "auto"
    cfg, _ = parse_train_args(["--data.path", "synthetic:default:12", "--trainer.devices", "1",
                               "--trainer.precision", "bf16-mixed"], check_init=False)
    assert (cfg.trainer.accelerator, cfg.trainer.devices, cfg.trainer.precision) == ("auto", 1, "bf16-mixed")


# --- models: FLOP counts are cached -----------------------------------------------------------------------------

def test_models_counts_flops_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    assert main(["models", "--size", "32x32"]) == 0
    first = capsys.readouterr()
    assert "counting the FLOPs of meter_xxs at 32x32 (once: cached in" in first.err
    assert (tmp_path / "cache" / "flops.json").is_file()
    start = time.perf_counter()
    assert main(["models", "--size", "32x32"]) == 0
    second = capsys.readouterr()
    assert second.out == first.out and "counting" not in second.err
    assert "meter_xxs" in second.out and "GFLOPs at 32x32" in second.out
    assert time.perf_counter() - start < 30
