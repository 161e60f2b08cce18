"""Model files: safetensors weights plus the metadata needed to use them.

Metadata keys (all strings, JSON where structured):
    ``format``         ``seldepth-model-1``
    ``architecture``   registry name, e.g. ``meter_xxs``
    ``config``         the architecture's dataclass config
    ``preprocessing``  :class:`~seldepth.models.preprocessing.Preprocessing` as a dict
    ``output_unit``    always ``m``: models output metres (other units are folded in on import)
    ``provenance``     where the weights come from (source file, sha256, data set, ...). Keys read back:
                       ``dataset`` (``nyu`` / ``kitti``: the data set of an imported official model; it picks
                       the evaluation protocol for ``folder:`` data), ``png_scale`` (values per metre of the
                       16-bit depth PNGs written for this model: 1000 = millimetres for indoor / NYU models,
                       256 for KITTI models; absent = 1000), ``intrinsics`` / ``intrinsics_note`` (what camera
                       the model was trained with, null when none is recorded)
    ``intrinsics``     optional: the camera of the training data, JSON ``{"fx", "fy", "cx", "cy", "height",
                       "width"}`` in pixels at height x width (imported NYU models: the Kinect camera);
                       point clouds use it when no camera is given

``read_model_file`` also reads Lightning training checkpoints (``.ckpt``). It never executes code:
safetensors, or ``torch.load(weights_only=True)``. It takes paths only; :func:`seldepth.load_model`
(:mod:`seldepth.models.loading`) also takes the name of a pretrained model.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from seldepth.atomic import atomic_path
from seldepth.models.base import DepthModel
from seldepth.models.devices import resolve_device
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import KINDS, create_model, list_models

FORMAT = "seldepth-model-1"


def save_model_file(model: DepthModel, path: str | os.PathLike, preprocessing: Preprocessing, provenance: dict | None = None,
                    intrinsics: dict | None = None) -> Path:
    """Write ``model`` as a safetensors model file with metadata; atomic (temporary file, then rename).

    ``intrinsics`` (``{"fx", "fy", "cx", "cy", "height", "width"}``) is recorded as the ``intrinsics`` key.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "architecture": model.name,
        "config": json.dumps(model.config_dict()),
        "preprocessing": json.dumps(preprocessing.to_dict()),
        "output_unit": "m",
        "provenance": json.dumps(provenance or {}),
    }
    if intrinsics is not None:
        metadata["intrinsics"] = json.dumps(intrinsics)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)
    return path


class OutputUnitError(ValueError):
    """A model file whose ``output_unit`` is not metres (``unit``): seldepth models output metres."""

    def __init__(self, message: str, unit):
        super().__init__(message)
        self.unit = unit


def _json_key(path: Path, raw: dict, key: str, required: bool, nullable: bool = False):
    """The JSON object of metadata ``key`` (None when absent and not required, or null and ``nullable``)."""
    if key not in raw:
        if required:
            raise ValueError(f"{path}: metadata {key!r} is missing (keys: {', '.join(sorted(raw)) or 'none'}); "
                             f"write model files with seldepth (save_model_file) so that it is recorded")
        return None
    try:
        value = json.loads(raw[key])
    except (json.JSONDecodeError, TypeError, RecursionError):
        raise ValueError(f"{path}: metadata {key!r} is not valid JSON: {str(raw[key])[:80]!r}") from None
    if value is None and nullable:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: metadata {key!r} must be a JSON object, got {type(value).__name__} {value!r:.80}")
    return value


def check_metadata(path: str | os.PathLike, raw: dict) -> dict:
    """The decoded, checked metadata of a model file from its raw (string) metadata.

    Checked: ``format``; ``architecture`` a registered model; ``config`` a JSON object whose keys and value
    types are those of the architecture's config; ``preprocessing`` present and valid; ``provenance`` and
    ``intrinsics`` JSON objects; ``output_unit`` metres.

    Raises:
        ValueError: naming ``path`` and the metadata key (:class:`OutputUnitError` for another unit).
    """
    path = Path(path)
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: not a seldepth model file (metadata 'format' is {raw.get('format')!r}, expected {FORMAT!r})")
    meta = dict(raw)
    arch = raw.get("architecture")
    known = [name for kind in KINDS for name in list_models(kind)]  # depth models and pose networks
    if arch not in known:
        raise ValueError(f"{path}: metadata 'architecture' is {arch!r}, not a seldepth model "
                         f"(available: {', '.join(known)})")
    meta["config"] = _json_key(path, raw, "config", required=False) or {}
    meta["preprocessing"] = _json_key(path, raw, "preprocessing", required=True)
    meta["provenance"] = _json_key(path, raw, "provenance", required=False) or {}
    if "intrinsics" in raw:
        meta["intrinsics"] = _json_key(path, raw, "intrinsics", required=False, nullable=True)
    unit = raw.get("output_unit", "m")
    if unit != "m":
        raise OutputUnitError(f"{path}: metadata 'output_unit' is {unit!r}; seldepth models output metres ('m') "
                              f"(import or export the model in metres)", unit)
    try:
        Preprocessing.from_dict(meta["preprocessing"])
    except ValueError as exc:
        raise ValueError(f"{path}: metadata {exc}") from None
    check_config(arch, meta["config"], f"{path}: metadata 'config'")
    return meta


def read_metadata(path: str | os.PathLike) -> dict:
    """The decoded metadata of a model file, checked (see :func:`check_metadata`).

    Raises:
        ValueError: naming the file and the metadata key at fault.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise _not_a_model_file(path, exc) from None
    return check_metadata(path, raw)


def _fits_type(value, hint) -> bool:
    """Whether a JSON value fits a config field's annotation (lists stand for tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in args
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return all(_fits_type(v, args[0]) for v in value)
        if origin is tuple and args:
            return len(value) == len(args) and all(_fits_type(v, a) for v, a in zip(value, args))
        return all(_fits_type(v, args[0]) for v in value) if args else True
    return True  # an annotation this check does not know: the model's own checks decide


def check_config(architecture: str, config: dict, where: str) -> None:
    """Check ``config``'s keys and value types against ``architecture``'s dataclass config (nothing is built but
    the structure, on the ``meta`` device).

    Raises:
        ValueError: starting with ``where`` and naming the key (``config.expansion``) and the type expected.
    """
    try:
        with torch.device("meta"):
            default = create_model(architecture)
    except Exception:  # an architecture that needs options: its factory checks them
        return
    cfg = getattr(default, "config", None)
    if not dataclasses.is_dataclass(cfg):
        return
    try:
        hints = typing.get_type_hints(type(cfg))
    except Exception:  # annotations that cannot be evaluated: the model's own checks decide
        return
    names = [f.name for f in dataclasses.fields(cfg)]
    for key, value in config.items():
        if key not in names:
            raise ValueError(f"{where}: {architecture} has no option {key!r} (it has {', '.join(names)})")
        if not _fits_type(value, hints.get(key)):
            hint = hints.get(key)
            expected = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ValueError(f"{where}: {key!r} must be {expected}, got {value!r:.80}")


# Key names only an official METER checkpoint has (models/import_meter.py maps them to seldepth's).
_OFFICIAL_METER_KEY = re.compile(r"^(encoder\.(mv2|mvit)\.\d+\.|encoder\.conv1\.0\.depthwise\.|decoder\.ups_block_\d\.)")


def is_official_meter_state(keys) -> bool:
    """Whether state_dict keys are those of an official METER checkpoint (its own names, e.g. ``encoder.mv2.0...``)."""
    return any(_OFFICIAL_METER_KEY.match(str(k).removeprefix("module.")) for k in keys)


def _not_a_model_file(path: Path, exc: Exception) -> ValueError:
    """The error for a file safetensors cannot read: an official METER checkpoint is named as such, with the
    command that converts it; another PyTorch checkpoint as such. Only ever read with ``weights_only=True``
    onto the ``meta`` device: no code is executed and no tensor data is loaded."""
    try:
        with warnings.catch_warnings():  # torch's notes on unusual pickle protocols: this is only a diagnosis
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="meta", weights_only=True)
    except Exception:  # not a torch file either (or one holding code, which is never unpickled)
        state = None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, dict) and is_official_meter_state(state):
        return ValueError(f"{path}: an official METER checkpoint (a PyTorch state_dict with the official key names), "
                          f"not a seldepth model file; convert it once with "
                          f"`seldepth import-meter {path} --out {path.stem}.safetensors` "
                          f"(in Python: seldepth.models.import_meter.import_meter(path, out=...)) and load that")
    if isinstance(state, dict):
        return ValueError(f"{path}: a PyTorch checkpoint, not a seldepth model file (.safetensors with metadata, "
                          f"Lightning .ckpt, .onnx or OpenVINO .xml); official METER weights are converted with `seldepth import-meter`")
    return ValueError(f"{path}: not a readable safetensors model file ({exc})")


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                            check_only: bool = False) -> None:
    """Load ``state`` strictly; on mismatch raise a ValueError listing missing, unexpected and mis-shaped keys.

    ``check_only``: compare names and shapes, load nothing (``state`` may hold meta tensors).
    """
    own = model.state_dict()
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise ValueError(f"{source}: entries that are not tensors: {', '.join(not_tensors[:20])}")
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
        if shapes:
            parts.append(f"wrong shapes ({len(shapes)}): {'; '.join(shapes[:20])}")
        raise ValueError(f"{source}: weights do not fit {getattr(model, 'name', type(model).__name__)}: " + " | ".join(parts))
    if not check_only:
        model.load_state_dict(state, strict=True)


def read_model_file(path: str | os.PathLike, weights: bool = True, device: str | torch.device | None = "cpu") -> DepthModel:
    """Load a model file (``.safetensors``), a Lightning checkpoint (``.ckpt``), an ONNX export (``.onnx``) or an
    OpenVINO IR (``.xml``, its ``.bin`` beside it), in eval mode.

    The returned model carries ``preprocessing`` (:class:`Preprocessing`) and ``metadata`` (dict).

    Args:
        path: the file.
        weights: False builds the model on the ``meta`` device and checks the file's tensor names and
            shapes against it without reading their values: every check of a load, at the cost of
            reading a header (what a config is validated with before any work).
        device: where the model runs: ``cpu`` (default), ``auto`` (CUDA, then MPS, then CPU), ``cuda``,
            ``cuda:N`` or ``mps`` (see :func:`~seldepth.models.devices.choose_device`). An ONNX or OpenVINO model
            runs on the CPU only (``auto`` gives it the CPU). Ignored with ``weights=False``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a model file (an official METER checkpoint is named as such, with the
            ``seldepth import-meter`` command that converts it), weights that do not fit, or a
            ``device`` that is unknown or not available.

    Example:
        >>> model = read_model_file("meter_xxs_nyu.safetensors")
        >>> depth = model(model.preprocessing(image))   # metres
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix == ".onnx":
        if device is not None and not (isinstance(device, str) and device.strip().lower() == "auto"):
            if resolve_device(device).type != "cpu":
                raise ValueError(f"device {str(device)!r}: {path} is an ONNX model, which seldepth runs on the CPU "
                                 f"only (onnxruntime's CPUExecutionProvider); use device 'cpu' or 'auto', or the "
                                 f".safetensors model file on the GPU")
        from seldepth.models.onnx_model import OnnxDepthModel  # onnxruntime is imported only when an ONNX file is read

        return OnnxDepthModel(path)
    if path.suffix == ".xml":
        if device is not None and not (isinstance(device, str) and device.strip().lower() == "auto"):
            if resolve_device(device).type != "cpu":
                raise ValueError(f"device {str(device)!r}: {path} is an OpenVINO model, which seldepth runs on the CPU "
                                 f"only (OpenVINO's CPU plugin); use device 'cpu' or 'auto', or the .safetensors model "
                                 f"file on the GPU")
        from seldepth.models.openvino_model import OpenVinoDepthModel  # openvino is imported only when an IR is read

        return OpenVinoDepthModel(path)
    target = resolve_device(device) if weights else None  # checked before the file is read
    if path.suffix == ".ckpt":
        model = _load_lightning_checkpoint(path, weights)
        return model.to(target) if target is not None else model
    meta = read_metadata(path)  # every key checked, the config's types included
    # the config's structure on the meta device against the tensors' shapes from the header, before anything is
    # allocated: a forged config (20,000 channels) is refused at the cost of reading a header
    model = _create(meta["architecture"], meta["config"], False, path)
    load_state_dict_checked(model, _header_state(path), f"{path}: metadata 'config' and tensors", check_only=True)
    if weights:
        model = _create(meta["architecture"], meta["config"], True, path)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path}: the tensors cannot be read ({exc})") from None
        load_state_dict_checked(model, state, str(path))
    model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    model.metadata = meta
    if target is not None:
        model.to(target)
    return model.eval()


def _create(architecture: str, config: dict, weights: bool, source: Path | str = "model file") -> DepthModel:
    """Build ``architecture`` with ``config`` (on the ``meta`` device unless ``weights``).

    Raises:
        ValueError: naming ``source`` and its config, for a config the model cannot be built from.
    """
    try:
        if weights:
            return create_model(architecture, **config)
        with torch.device("meta"):  # the structure only: nothing allocated or initialised, no random number drawn
            return create_model(architecture, **config)
    except Exception as exc:  # a config of the right types that still does not build (a wrong length, a 0 width)
        raise ValueError(f"{source}: metadata 'config' does not build {architecture}: "
                         f"{type(exc).__name__}: {str(exc)[:300]}") from None


def _header_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as meta tensors of their recorded shapes (only the header is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise _not_a_model_file(path, exc) from None


def _load_lightning_checkpoint(path: Path, weights: bool = True) -> DepthModel:
    try:
        with warnings.catch_warnings():  # torch's notes on unusual pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu" if weights else "meta", weights_only=True)
    except Exception as exc:  # pickle errors carry many types; code in the pickle is never run (weights_only)
        raise ValueError(f"{path}: not a plain-tensor checkpoint; refusing to unpickle code or a truncated file "
                         f"({type(exc).__name__}: {str(exc)[:300]})") from None
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ValueError(f"{path}: not a Lightning checkpoint (a dict with 'state_dict' and 'hyper_parameters')")
    arch = hparams.get("model")
    if not arch:
        raise ValueError(f"{path}: checkpoint has no 'hyper_parameters.model' naming the architecture")
    if arch not in list_models("depth"):
        raise ValueError(f"{path}: checkpoint 'hyper_parameters.model' is {arch!r}, not a seldepth depth model")
    options = hparams.get("model_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{path}: checkpoint 'hyper_parameters.model_options' must be a mapping, got {options!r:.80}")
    check_config(arch, options, f"{path}: checkpoint 'hyper_parameters.model_options'")
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if str(k).startswith("model.")}
    if weights:  # the structure against the shapes first, before anything is allocated
        load_state_dict_checked(_create(arch, options, False, path), state, str(path), check_only=True)
    model = _create(arch, options, weights, path)
    load_state_dict_checked(model, state, str(path), check_only=not weights)
    try:
        model.preprocessing = Preprocessing.from_dict(hparams.get("preprocessing") or Preprocessing().to_dict())
    except ValueError as exc:
        raise ValueError(f"{path}: checkpoint hyper_parameters: {exc}") from None
    model.metadata = {"architecture": arch, "provenance": {"checkpoint": str(path)}}
    return model.eval()
