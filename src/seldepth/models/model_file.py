"""Model files: safetensors weights plus the metadata needed to use them.

Metadata keys (all strings, JSON where structured):
    ``format``         ``seldepth-model-1``
    ``architecture``   registry name, e.g. ``meter_xxs``
    ``config``         the architecture's dataclass config
    ``preprocessing``  :class:`~seldepth.models.preprocessing.Preprocessing` as a dict
    ``output_unit``    always ``m``: models output metres (other units are folded in on import)
    ``provenance``     where the weights come from (source file, sha256, data set, ...)

``load_model`` also reads Lightning training checkpoints (``.ckpt``). It never executes code:
safetensors, or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from seldepth.atomic import atomic_path
from seldepth.models.base import DepthModel
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model

FORMAT = "seldepth-model-1"


def save_model_file(model: DepthModel, path: str | os.PathLike, preprocessing: Preprocessing, provenance: dict | None = None) -> Path:
    """Write ``model`` as a safetensors model file with metadata; atomic (temporary file, then rename)."""
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
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The decoded metadata of a model file."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors model file ({exc})") from None
    if raw.get("format") != FORMAT:
        raise ValueError(f"{path}: not a seldepth model file (metadata 'format' is {raw.get('format')!r}, expected {FORMAT!r})")
    meta = dict(raw)
    for key in ("config", "preprocessing", "provenance"):
        meta[key] = json.loads(raw.get(key, "{}"))
    return meta


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                            check_only: bool = False) -> None:
    """Load ``state`` strictly; on mismatch raise a ValueError listing missing, unexpected and mis-shaped keys.

    ``check_only``: compare names and shapes, load nothing (``state`` may hold meta tensors).
    """
    own = model.state_dict()
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


def load_model(path: str | os.PathLike, weights: bool = True) -> DepthModel:
    """Load a model file (``.safetensors``), a Lightning checkpoint (``.ckpt``) or an ONNX export (``.onnx``), in eval mode.

    The returned model carries ``preprocessing`` (:class:`Preprocessing`) and ``metadata`` (dict).

    Args:
        path: the file.
        weights: False builds the model on the ``meta`` device and checks the file's tensor names and
            shapes against it without reading their values: every check of a load, at the cost of
            reading a header (what a config is validated with before any work).

    Example:
        >>> model = load_model("meter_xxs_nyu.safetensors")
        >>> depth = model(model.preprocessing(image))   # metres
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix == ".ckpt":
        return _load_lightning_checkpoint(path, weights)
    if path.suffix == ".onnx":
        from seldepth.models.onnx_model import OnnxDepthModel  # onnxruntime is imported only when an ONNX file is read

        return OnnxDepthModel(path)
    meta = read_metadata(path)
    model = _create(meta["architecture"], meta["config"], weights)
    state = load_file(str(path)) if weights else _header_state(path)
    load_state_dict_checked(model, state, str(path), check_only=not weights)
    model.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    model.metadata = meta
    return model.eval()


def _create(architecture: str, config: dict, weights: bool) -> DepthModel:
    if weights:
        return create_model(architecture, **config)
    with torch.device("meta"):  # the structure only: nothing allocated or initialised, no random number drawn
        return create_model(architecture, **config)


def _header_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as meta tensors of their recorded shapes (only the header is read)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path}: not a readable safetensors model file ({exc})") from None


def _load_lightning_checkpoint(path: Path, weights: bool = True) -> DepthModel:
    try:
        ckpt = torch.load(path, map_location="cpu" if weights else "meta", weights_only=True)
    except Exception as exc:  # pickle errors carry many types
        raise ValueError(f"{path}: not a plain-tensor checkpoint ({type(exc).__name__}: {exc})") from None
    hparams = ckpt.get("hyper_parameters", {})
    arch = hparams.get("model")
    if not arch:
        raise ValueError(f"{path}: checkpoint has no 'hyper_parameters.model' naming the architecture")
    model = _create(arch, hparams.get("model_options") or {}, weights)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    load_state_dict_checked(model, state, str(path), check_only=not weights)
    model.preprocessing = Preprocessing.from_dict(hparams.get("preprocessing") or Preprocessing().to_dict())
    model.metadata = {"architecture": arch, "provenance": {"checkpoint": str(path)}}
    return model.eval()
