"""Optional parts (pip extras): a missing one is named with the pip line that installs it."""

import sys

import pytest


from seldepth.defaults import EXTRAS, MissingExtraError, has_extra, require


def test_a_missing_extra_names_the_package_and_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(MissingExtraError, match=r"'onnx'.*pip install 'seldepth\[onnx\]'"):
        require("onnx")
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingExtraError, match=r"video input and output.*pip install 'seldepth\[video\]'"):
        require("av")
    assert isinstance(MissingExtraError("x"), ImportError)


def test_every_extra_of_pyproject_is_in_the_table():
    import tomllib

    from helpers import REPO

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {extra for extra, _ in EXTRAS.values()}
    assert named == set(extras) - {"all", "test"}
    for module, (extra, _) in EXTRAS.items():
        assert any(req.startswith(module) for req in extras[extra]), (module, extra)


def test_export_without_onnx_stops_with_the_pip_line(monkeypatch, tmp_path):
    from seldepth.deploy.onnx_export import export_onnx
    from seldepth.models import create_model

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingExtraError, match=r"seldepth\[onnx\]"):
        export_onnx(create_model("meter_xxs"), tmp_path / "m.onnx", input_size=(64, 64))
    assert not (tmp_path / "m.onnx").exists()


def test_training_logs_to_tensorboard_only_when_it_is_installed(monkeypatch, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    from seldepth.training import run
    from seldepth.training.config import TrainConfig, TrainerConfig

    cfg = TrainConfig(trainer=TrainerConfig(out_dir=str(tmp_path)))
    monkeypatch.setattr(run, "has_extra", lambda module: False)
    assert not any(isinstance(lg, TensorBoardLogger) for lg in run.build_trainer(cfg, tmp_path).loggers)
    monkeypatch.setattr(run, "has_extra", lambda module: True)
    assert any(isinstance(lg, TensorBoardLogger) for lg in run.build_trainer(cfg, tmp_path).loggers)
    assert has_extra("torch") and not has_extra("no_such_package_here")

