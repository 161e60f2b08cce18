"""Fuzzing model files: random safetensors metadata, corrupted safetensors headers and random ONNX metadata props.
Nothing but the documented errors (ValueError and its subclasses, FileNotFoundError) may come out, and every
error names the file."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from safetensors import safe_open
from safetensors.torch import save_file

from seldepth.models.model_file import read_model_file, save_model_file
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (ValueError, FileNotFoundError)

WORK = Path(tempfile.mkdtemp(prefix="fuzz_model_files_"))
GOOD = save_model_file(create_model("realtime_depth"), WORK / "good.safetensors", Preprocessing(input_size=(32, 32)))
with safe_open(str(GOOD), framework="pt") as _f:
    GOOD_META = dict(_f.metadata())
    GOOD_TENSORS = {k: _f.get_tensor(k) for k in _f.keys()}
GOOD_BYTES = GOOD.read_bytes()
HEADER_END = 8 + int.from_bytes(GOOD_BYTES[:8], "little")

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)
CONFIG_KEYS = ["channels", "expansion", "semantic_classes", "head", "min_depth", "max_depth", "width", ""]
PRE_KEYS = ["input_size", "mean", "std", "resize", "other"]
SMALL_INTS = st.integers(-3, 300)


def _plausible(keys):
    """JSON objects with the real keys, values near what they should be, or anything."""
    value = st.one_of(JSON, st.lists(SMALL_INTS, max_size=5), st.lists(st.floats(-2, 2), min_size=3, max_size=3))
    return st.dictionaries(st.sampled_from(keys), value, max_size=4)


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=True)


META_VALUE = st.one_of(
    st.text(max_size=30),
    JSON.map(_dumps),
    _plausible(CONFIG_KEYS).map(_dumps),
    _plausible(PRE_KEYS).map(lambda d: _dumps({**json.loads(GOOD_META["preprocessing"]), **d})),
)
META_KEYS = ["format", "architecture", "config", "preprocessing", "output_unit", "provenance", "intrinsics"]


@st.composite
def metadata(draw):
    meta = dict(GOOD_META)
    for key in draw(st.lists(st.sampled_from(META_KEYS + ["extra"]), max_size=4, unique=True)):
        action = draw(st.sampled_from(["drop", "replace", "replace"]))
        if action == "drop":
            meta.pop(key, None)
        else:
            meta[key] = draw(st.sampled_from(["m", "mm", "seldepth-model-1", "realtime_depth", "meter_xxs"])
                             if key in ("output_unit", "format", "architecture") and draw(st.booleans()) else META_VALUE)
    return meta


def _only_allowed(call, path: Path):
    try:
        call()
    except ALLOWED as exc:
        assert str(path) in str(exc), f"the error does not name the file: {exc}"


@FUZZ
@given(metadata(), st.booleans())
def test_random_safetensors_metadata(meta, weights):
    path = WORK / "meta.safetensors"
    save_file(GOOD_TENSORS, str(path), metadata=meta)
    _only_allowed(lambda: read_model_file(path, weights=weights), path)


@st.composite
def corrupted_header(draw):
    data = bytearray(GOOD_BYTES)
    kind = draw(st.sampled_from(["overwrite", "insert", "truncate", "length"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, HEADER_END + 64))])
    if kind == "length":  # the header's declared length
        data[:8] = draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little")
        return bytes(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, HEADER_END - 1))
        chunk = draw(st.one_of(st.binary(min_size=1, max_size=6), st.sampled_from([b"9", b"99999", b'"', b"]", b"}", b"F16", b"I64"])))
        if kind == "overwrite":
            data[pos: pos + len(chunk)] = chunk
        else:
            data[pos:pos] = chunk
    return bytes(data)


@FUZZ
@given(corrupted_header(), st.booleans())
def test_corrupted_safetensors_header(data, weights):
    path = WORK / "header.safetensors"
    path.write_bytes(data)
    _only_allowed(lambda: read_model_file(path, weights=weights), path)


def _tiny_onnx(props: dict[str, str]) -> bytes:
    """(B, 3, H, W) -> (B, 1, H, W): the channel mean, with ``props`` as metadata_props."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["B", 3, "H", "W"])
    y = helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["B", 1, "H", "W"])
    node = helper.make_node("ReduceMean", ["image"], ["depth"], axes=[1], keepdims=1)
    model = helper.make_model(helper.make_graph([node], "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    helper.set_model_props(model, props)
    return model.SerializeToString()


ONNX_GOOD = {"format": "seldepth-onnx-1", "architecture": "tiny", "preprocessing": GOOD_META["preprocessing"],
             "output_unit": "m", "size_multiple": "1", "config": "{}", "provenance": "{}"}
ONNX_KEYS = list(ONNX_GOOD) + ["intrinsics", "precision", "other"]


@st.composite
def onnx_props(draw):
    props = dict(ONNX_GOOD)
    for key in draw(st.lists(st.sampled_from(ONNX_KEYS), max_size=4, unique=True)):
        if draw(st.booleans()):
            props.pop(key, None)
        else:
            props[key] = draw(st.one_of(META_VALUE, st.integers(-5, 10**6).map(str), st.sampled_from(["m", "mm", "0", "64"])))
    return props


@FUZZ
@given(onnx_props())
def test_random_onnx_metadata_props(props):
    path = WORK / "tiny.onnx"
    path.write_bytes(_tiny_onnx(props))
    _only_allowed(lambda: OnnxDepthModel(path), path)


def test_fuzz_inputs_reach_the_error_paths_and_the_good_files_load():
    """Guard against fuzz tests that never reach an error, or whose base files do not load."""
    assert read_model_file(GOOD).metadata["architecture"] == "realtime_depth"
    path = WORK / "guard.onnx"
    path.write_bytes(_tiny_onnx(ONNX_GOOD))
    model = OnnxDepthModel(path)
    assert model.size_multiple == 1 and math.isclose(model.preprocessing.mean[0], 0.485)
    path.write_bytes(_tiny_onnx({**ONNX_GOOD, "preprocessing": "[]"}))
    with pytest.raises(ValueError, match=f"{path}: ONNX metadata 'preprocessing' must be a JSON object"):
        OnnxDepthModel(path)
    path.write_bytes(_tiny_onnx({**ONNX_GOOD, "size_multiple": "eight"}))
    with pytest.raises(ValueError, match=f"{path}: ONNX metadata 'size_multiple'"):
        OnnxDepthModel(path)
    assert onnx.load(str(path)).metadata_props
