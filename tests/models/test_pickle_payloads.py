"""A pickle that would run code (``__reduce__`` creating a marker file), named as a checkpoint (``.ckpt``, ``.pt``,
an official METER name, ``.onnx``), through every library entry that reads a model or checkpoint: the marker never
appears and a ValueError names the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from seldepth.models.import_meter import import_meter, read_official_state_dict
from seldepth.models.loading import load_model
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.models.registry import create_model
from seldepth.training.run_folder import checkpoint_step
from seldepth.training.teachers import TeacherConfig, TrainingTargets
from seldepth.training.transfer import init_from_file, source_preprocessing


class Payload:
    """Unpickling it opens (creates) ``marker`` for writing: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def hostile(path: Path, marker: Path) -> Path:
    """A checkpoint-like pickle (torch.save's format) holding the payload next to real-looking entries."""
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "global_step": 3,
                "hyper_parameters": {"model": "realtime_depth"}, "payload": Payload(marker)}, path)
    return path


NAMES = ["last.ckpt", "weights.pt", "build_model_best_nyu_xxs", "model.safetensors", "model.onnx"]


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path):
    """Guard: the payload does what the tests below check never happens."""
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def _entries(path: Path):
    student = create_model("realtime_depth")
    yield "load_model", lambda: load_model(path)
    yield "load_model(weights=False)", lambda: load_model(path, weights=False)
    yield "init_from_file", lambda: init_from_file(student, path)
    yield "init_from_file(weights=False)", lambda: init_from_file(student, path, weights=False)
    yield "source_preprocessing", lambda: source_preprocessing(path, (32, 32))
    yield "teachers", lambda: TrainingTargets(TeacherConfig(depth=str(path)))
    yield "teachers(weights=False)", lambda: TrainingTargets(TeacherConfig(depth=str(path)), weights=False)
    yield "import_meter", lambda: import_meter(path, "xxs", "nyu", path.parent / "out.safetensors")
    yield "read_official_state_dict", lambda: read_official_state_dict(path)
    yield "checkpoint_step", lambda: checkpoint_step(path)
    if path.suffix == ".onnx":
        yield "OnnxDepthModel", lambda: OnnxDepthModel(path)


@pytest.mark.parametrize("name", NAMES)
def test_no_entry_runs_the_payload(tmp_path, name):
    marker = tmp_path / "ran"
    path = hostile(tmp_path / name, marker)
    for entry, call in _entries(path):
        with pytest.raises(ValueError) as info:
            call()
        assert str(path) in str(info.value), entry
        assert not marker.exists(), f"{entry} ran the pickle's code"
        assert "Traceback" not in str(info.value)
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("name", ["last.ckpt", "weights.pt"])
def test_truncated_checkpoint_is_a_value_error_naming_it(tmp_path, name):
    path = tmp_path / name
    torch.save({"state_dict": {"model.x": torch.zeros(1000)}, "global_step": 3}, path)
    path.write_bytes(path.read_bytes()[:200])
    for call in (lambda: load_model(path), lambda: load_model(path, weights=False), lambda: checkpoint_step(path),
                 lambda: read_official_state_dict(path)):
        with pytest.raises(ValueError, match=str(path)):
            call()


def test_checkpoint_step_reads_a_plain_checkpoint_and_refuses_a_bad_step(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"global_step": 24, "state_dict": {}}, good)
    assert checkpoint_step(good) == 24
    bad = tmp_path / "bad.ckpt"
    torch.save({"global_step": "24", "state_dict": {}}, bad)
    with pytest.raises(ValueError, match=r"bad.ckpt: cannot be resumed from: no whole 'global_step'"):
        checkpoint_step(bad)
