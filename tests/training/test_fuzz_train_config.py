"""Fuzzing training configs: ``parse_train_config`` on random mappings (real keys with values of any type, unknown
keys, nesting in the wrong places). Nothing but the documented errors (ValueError and its subclasses such as
DatasetError, FileNotFoundError) may come out, and nothing is written."""

from __future__ import annotations

import dataclasses
import tempfile
import typing
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seldepth.training.config import TrainConfig, parse_train_config

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (ValueError, FileNotFoundError)
WORK = Path(tempfile.mkdtemp(prefix="fuzz_train_config_"))
(WORK / "garbage.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")


def _leaves(cls, prefix=()) -> dict[tuple[str, ...], object]:
    """Every leaf key of the config dataclasses, with its annotation."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)]
        if inner:
            out.update(_leaves(inner[0], (*prefix, f.name)))
        else:
            out[(*prefix, f.name)] = hint
    return out


LEAVES = _leaves(TrainConfig)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**33), 2**33), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=10))
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                    max_leaves=8)
PATHS = st.sampled_from(["synthetic:default:12", "synthetic:default:0", "synthetic:default:x", "nyu:/nonexistent/x",
                         f"folder:{WORK}?scale=abc", "kitti:", "synthetic:default:12?scale=1&scale=2", "",
                         str(WORK / "garbage.safetensors"), str(WORK / "missing.ckpt")])


def _value_for(key: tuple[str, ...], hint):
    plausible = {int: st.integers(-2, 70), float: st.floats(-1, 2), bool: st.booleans(), str: st.one_of(PATHS, st.text(max_size=8))}
    options = [JSON]
    for t in (hint, *typing.get_args(hint)):
        if t in plausible:
            options.append(plausible[t])
        if typing.get_origin(t) in (tuple, list):
            options.append(st.lists(st.one_of(st.integers(-2, 300), st.floats(-1, 2), st.text(max_size=5)), max_size=4))
    if key[-1] == "out_dir":
        return st.just(str(WORK / "runs" / "r"))  # never written: the config is only checked
    if key[-1] in ("path", "init_from", "depth", "semantic", "train_subset"):
        options.append(PATHS)
    if key == ("model",):
        options.append(st.sampled_from(["realtime_depth", "meter_xxs", "synergy_depth", "pose_net"]))
    if key == ("model_options",):
        options.append(st.dictionaries(st.sampled_from(["channels", "expansion", "semantic_classes", "head", "output", "x"]),
                                       st.one_of(JSON, st.lists(st.integers(-1, 400), max_size=11)), max_size=3))
    return st.one_of(*options)


@st.composite
def mappings(draw):
    mapping: dict = {}
    keys = draw(st.lists(st.sampled_from(sorted(LEAVES)), max_size=6, unique=True))
    for key in keys:
        node = mapping
        for part in key[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {} if draw(st.integers(0, 9)) else draw(JSON)
            node = node[part] if isinstance(node[part], dict) else {}
        node[key[-1]] = draw(_value_for(key, LEAVES[key]))
    if draw(st.booleans()):
        mapping[draw(st.text(max_size=6))] = draw(JSON)
    mapping.setdefault("trainer", {})
    if isinstance(mapping["trainer"], dict):
        mapping["trainer"]["out_dir"] = str(WORK / "runs" / "r")
    if "data" not in mapping or not isinstance(mapping["data"], dict) or "path" not in mapping["data"]:
        if isinstance(mapping.get("data", {}), dict):
            mapping.setdefault("data", {})["path"] = "synthetic:default:12"  # never generated: only checked
    return mapping


@FUZZ
@given(st.one_of(mappings(), JSON))
def test_random_training_configs(mapping):
    try:
        parse_train_config(mapping)
    except ALLOWED:
        pass
    assert not (WORK / "runs").exists()
