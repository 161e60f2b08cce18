"""Model files with forged metadata: a ValueError naming the file and the metadata key, through every loader
(load_model with and without weights, teachers, init_from), and a config checked against the tensors' shapes
before anything is allocated."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import seldepth.models.model_file as model_file
from seldepth.models.loading import load_model
from seldepth.models.model_file import read_metadata, save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model
from seldepth.training.teachers import TeacherConfig, TeacherError, TrainingTargets
from seldepth.training.transfer import init_from_file, source_preprocessing


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> tuple[dict, dict]:
    path = save_model_file(create_model("realtime_depth"), tmp_path_factory.mktemp("good") / "m.safetensors",
                           Preprocessing(input_size=(32, 32)))
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def _forge(good, path: Path, **changes) -> Path:
    meta, tensors = good
    meta = {k: v for k, v in meta.items() if k not in changes or changes[k] is not None}
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in changes.items() if v is not None})
    save_file(tensors, str(path), metadata=meta)
    return path


PRE = {"input_size": [32, 32], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": "bilinear-antialias"}
FORGERIES = {
    "no_preprocessing": ({"preprocessing": None}, "'preprocessing' is missing"),
    "config_not_json": ({"config": "{channels: (1, 2"}, "'config' is not valid JSON"),
    "config_not_object": ({"config": "[1, 2]"}, "'config' must be a JSON object"),
    "expansion_text": ({"config": {"expansion": "two"}}, "'config': 'expansion' must be int, got 'two'"),
    "unknown_option": ({"config": {"width": 3}}, "'config': realtime_depth has no option 'width'"),
    "input_size_text": ({"preprocessing": {**PRE, "input_size": "192x256"}}, r"'preprocessing.input_size' must be \[H, W\]"),
    "mean_missing": ({"preprocessing": {k: v for k, v in PRE.items() if k != "mean"}}, "'preprocessing.mean' is missing"),
    "std_zero": ({"preprocessing": {**PRE, "std": [0, 1, 1]}}, "'preprocessing.std' must be three positive numbers"),
    "resize_unknown": ({"preprocessing": {**PRE, "resize": "lanczos"}}, "'preprocessing.resize' must be one of"),
    "millimetres": ({"output_unit": "mm"}, "'output_unit' is 'mm'; seldepth models output metres"),
    "architecture": ({"architecture": "resnet"}, "'architecture' is 'resnet', not a seldepth model"),
    "provenance_list": ({"provenance": "[]"}, "'provenance' must be a JSON object"),
    "intrinsics_text": ({"intrinsics": '"kinect"'}, "'intrinsics' must be a JSON object"),
    "channels_short": ({"config": {"channels": [16, 32]}}, r"'config': 'channels' must be tuple\[int, int, int, int\]"),
}


@pytest.mark.parametrize("name", list(FORGERIES))
@pytest.mark.parametrize("weights", [True, False])
def test_forged_metadata_names_file_and_key(good, tmp_path, name, weights):
    changes, message = FORGERIES[name]
    path = _forge(good, tmp_path / f"{name}.safetensors", **changes)
    with pytest.raises(ValueError, match=message) as info:
        load_model(path, weights=weights)
    assert str(path) in str(info.value) and "metadata" in str(info.value)
    assert type(info.value).__name__ in ("ValueError", "OutputUnitError")


@pytest.mark.parametrize("name", ["no_preprocessing", "expansion_text", "input_size_text", "millimetres"])
def test_forged_metadata_through_teachers_and_init_from(good, tmp_path, name):
    changes, message = FORGERIES[name]
    path = _forge(good, tmp_path / f"{name}.safetensors", **changes)
    # a teacher in another unit is said in the student's terms
    teacher_message = "predicts depth in 'mm' but the student predicts metres" if name == "millimetres" else message
    for weights in (True, False):
        with pytest.raises(TeacherError, match=f"teacher.depth: .*{name}.safetensors.*") as info:
            TrainingTargets(TeacherConfig(depth=str(path)), weights=weights)
        assert re.search(teacher_message, str(info.value))
        student = create_model("realtime_depth")
        with pytest.raises(ValueError, match=f"init_from: .*{name}.safetensors.*{message}"):
            init_from_file(student, path, weights=weights)
    if name != "millimetres":
        with pytest.raises(ValueError, match=f"init_from: .*{name}.safetensors.*{message}"):
            source_preprocessing(path, (32, 32))
        with pytest.raises(ValueError, match=message):
            read_metadata(path)


@pytest.mark.parametrize("weights", [True, False])
def test_huge_config_is_refused_from_the_header_before_allocating(good, tmp_path, monkeypatch, weights):
    """20,000 channels: refused by comparing the structure built on the meta device with the header's shapes;
    no model is ever built on a real device."""
    path = _forge(good, tmp_path / "huge.safetensors", config={"channels": [20000, 32, 48, 96]})
    devices = []
    real_create = model_file.create_model

    def spy(*args, **kwargs):
        devices.append(torch.empty(0).device.type)
        return real_create(*args, **kwargs)

    monkeypatch.setattr(model_file, "create_model", spy)
    with pytest.raises(ValueError, match=r"huge.safetensors: metadata 'config' and tensors: weights do not fit realtime_depth: "
                                         r"wrong shapes .*\(20000, "):
        load_model(path, weights=weights)
    assert devices and set(devices) == {"meta"}


def test_good_file_still_loads(good, tmp_path):
    path = _forge(good, tmp_path / "same.safetensors")
    model = load_model(path)
    assert model.preprocessing == Preprocessing(input_size=(32, 32))
    assert load_model(path, weights=False).metadata["architecture"] == "realtime_depth"
