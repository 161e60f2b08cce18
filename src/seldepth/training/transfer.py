"""Starting a training run from another model's weights (transfer learning, cf. Yosinski et al., NIPS 2014; the fine-tuned schedule of Jiao et al., ECCV 2018).

``init_from`` names a model file (``.safetensors``, or a Lightning ``.ckpt``) or a pretrained model
(``meter_xxs_nyu``, :mod:`seldepth.models.pretrained`) whose tensors initialise the new run's model. Every tensor of the model must come from the file with the same
name and shape, except those under the name prefixes of ``init_skip`` (a new head, say), which
keep their fresh initial values; a tensor that does not fit is an error naming it, never a
silent partial start. The run keeps the file's normalisation (mean, std, resize method), with
which its weights were trained, at the run's own input size.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from seldepth.models.loading import resolve_model_file
from seldepth.models.model_file import read_metadata, read_model_file
from seldepth.models.preprocessing import Preprocessing


def _matches(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _model_file(path: str | os.PathLike, key: str) -> Path:
    """The model file ``path`` names (a pretrained model's name: its cached model file); errors name ``key``."""
    try:
        return resolve_model_file(path)
    except (ValueError, OSError) as exc:  # not found; a pretrained model not verified, or whose download failed
        raise type(exc)(f"{key}: {exc}") from None


def source_preprocessing(path: str | os.PathLike, input_size: tuple[int, int], key: str = "init_from") -> Preprocessing:
    """The normalisation recorded in the model file (or pretrained model) ``path``, at ``input_size``."""
    path = _model_file(path, key)
    try:
        recorded = (Preprocessing.from_dict(read_metadata(path)["preprocessing"]) if path.suffix == ".safetensors"
                    else read_model_file(path, weights=False).preprocessing)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{key}: {exc}") from None
    return Preprocessing(tuple(input_size), recorded.mean, recorded.std, recorded.resize)


def init_from_file(model: torch.nn.Module, path: str | os.PathLike, skip: tuple[str, ...] = (),
                   key: str = "init_from", weights: bool = True) -> list[str]:
    """Copy the weights of the model file ``path`` into ``model``; returns the names taken from the file.

    Args:
        model: the freshly built model (its architecture may differ from the file's in the
            ``skip`` parts only).
        path: a seldepth model file or Lightning checkpoint, or a pretrained model's name
            (:func:`~seldepth.models.pretrained.list_pretrained`).
        skip: name prefixes (``semantic_head``, ``decoder.output``) whose tensors keep their
            initial values (the file need not have them, or may have another shape).
        key: the configuration key named in errors.
        weights: False checks names and shapes only (the file's header; ``model`` may be on the
            ``meta`` device) and copies nothing: the check a config gets before any work.

    Raises:
        FileNotFoundError, ValueError: the file is missing or unreadable, or a tensor outside
            ``skip`` is missing from the file or has another shape (all of them are listed).
    """
    path = _model_file(path, key)
    try:
        loaded = read_model_file(path, weights=weights)
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{key}: {exc}") from None
    if not isinstance(loaded, torch.nn.Module):
        raise ValueError(f"{key}: {path} is an ONNX export, which holds no trainable weights; "
                         f"start from the model file it was exported from (.safetensors or .ckpt)")
    source = loaded.state_dict()
    own = model.state_dict()
    unused = [p for p in skip if not any(_matches(n, [p]) for n in own)]
    if unused:
        raise ValueError(f"{key}: init_skip names {', '.join(unused)}, which match no tensor of "
                         f"{getattr(model, 'name', type(model).__name__)}")
    wanted = [n for n in own if not _matches(n, skip)]
    missing = [n for n in wanted if n not in source]
    shapes = [f"{n}: file {tuple(source[n].shape)} vs model {tuple(own[n].shape)}"
              for n in wanted if n in source and source[n].shape != own[n].shape]
    if missing or shapes:
        parts = ([f"missing from the file ({len(missing)}): {', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}"]
                 if missing else [])
        parts += [f"other shapes ({len(shapes)}): {'; '.join(shapes[:12])}"] if shapes else []
        raise ValueError(f"{key}: {path} does not fit {getattr(model, 'name', type(model).__name__)}: {' | '.join(parts)}"
                         " (list the parts to start afresh in init_skip)")
    if weights:
        with torch.no_grad():
            for name in wanted:
                own[name].copy_(source[name])
    return wanted


def parts_named(model: torch.nn.Module, prefixes, key: str) -> dict[str, list[str]]:
    """The parameter names under each prefix (``encoder``, ``decoder.up3``); an unknown prefix is an error naming ``key``."""
    names = [n for n, _ in model.named_parameters()]
    found = {p: [n for n in names if _matches(n, [p])] for p in prefixes}
    unknown = [p for p, hit in found.items() if not hit]
    if unknown:
        tops = sorted({n.split(".")[0] for n in names})
        raise ValueError(f"{key}: {', '.join(unknown)} name no parameters of {getattr(model, 'name', type(model).__name__)}; "
                         f"its top-level parts are {', '.join(tops)} (a prefix may go deeper, e.g. {tops[0]}.0)")
    return found


def freeze(model: torch.nn.Module, prefixes) -> list[torch.nn.Module]:
    """Stop training the parts named by prefix: their parameters get ``requires_grad=False``.

    Returns the frozen modules, which the trainer keeps in eval mode so that their batch-norm
    statistics do not move either (a frozen part is unchanged by training, buffers included).
    """
    parts_named(model, prefixes, "freeze")
    frozen = [m for name, m in model.named_modules() if name and _matches(name, prefixes)]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


def parameter_groups(model: torch.nn.Module, lr: float, part_lr: dict[str, float]) -> list[dict]:
    """Optimiser groups: the parameters under each ``part_lr`` prefix at its rate, the rest at ``lr``.

    Frozen parameters (``requires_grad=False``) are left out. A parameter under two prefixes
    takes the longer (more specific) one's rate.

    Example:
        >>> groups = parameter_groups(create_model("meter_xxs"), 1e-3, {"encoder": 1e-4})
        >>> [(g["name"], g["lr"]) for g in groups]
        [('encoder', 0.0001), ('rest', 0.001)]
    """
    found = parts_named(model, part_lr, "optim.part_lr")
    owner = {}
    for prefix in sorted(part_lr, key=len):  # longer prefixes last: they win
        for name in found[prefix]:
            owner[name] = prefix
    groups: dict[str, list] = {p: [] for p in part_lr}
    rest = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (groups[owner[name]] if name in owner else rest).append(p)
    out = [{"name": prefix, "params": params, "lr": float(part_lr[prefix])} for prefix, params in groups.items() if params]
    if rest:  # unnamed when it is the only group, so that the logged learning rate keeps its plain name
        out.append({"name": "rest", "params": rest, "lr": float(lr)} if part_lr else {"params": rest, "lr": float(lr)})
    if not out:
        raise ValueError("freeze: every parameter is frozen; nothing would train")
    return out
