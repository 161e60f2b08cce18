"""Loading a model from a file or by a pretrained model's name: :func:`load_model` (``seldepth.load_model``).

A source is a path (a model file ``.safetensors``, a Lightning checkpoint ``.ckpt``, an ONNX export ``.onnx`` or an
OpenVINO IR ``.xml``, read by :func:`~seldepth.models.model_file.read_model_file`) or the name of a pretrained model
(:mod:`seldepth.models.pretrained`: downloaded, checked and converted on first use, then read from the cache).
An existing path wins over a name. This module sits above both (``model_file`` knows no names; ``pretrained``
converts with the importer, which writes model files).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from seldepth.models.base import DepthModel
from seldepth.models.model_file import read_model_file
from seldepth.models.pretrained import PRETRAINED, pretrained_file


def _looks_like_name(source: str | os.PathLike) -> bool:
    """No folder and no suffix: what a pretrained model's name looks like (``meter_xxs_nyu``)."""
    text = str(source)
    return bool(text) and "/" not in text and os.sep not in text and not Path(text).suffix


def resolve_model_file(source: str | os.PathLike, allow_unverified: bool = False, progress: bool = True) -> Path:
    """The model file ``source`` stands for: an existing path as it is, a pretrained model's name as its cached
    model file (downloaded and converted on first use, :func:`~seldepth.models.pretrained.pretrained_file`).

    Args:
        source: a path, or a name of :func:`~seldepth.models.pretrained.list_pretrained`.
        allow_unverified: download a pretrained model whose checksum is not known.
        progress: show the download's progress bar.

    Raises:
        FileNotFoundError: neither an existing file nor a pretrained name; names the path and, when ``source``
            looks like a name (no folder, no suffix), the pretrained models.
        UnverifiedError, DownloadError, ChecksumError: see :func:`~seldepth.models.pretrained.pretrained_file`.
    """
    path = Path(source)
    if path.is_file():
        return path
    if str(source) in PRETRAINED:
        return pretrained_file(str(source), allow_unverified=allow_unverified, progress=progress)
    hint = (f" (nor the name of a pretrained model: {', '.join(PRETRAINED)})" if _looks_like_name(source) and not path.exists()
            else "")
    raise FileNotFoundError(f"model file not found: {source}{hint}")


def load_model(source: str | os.PathLike, weights: bool = True, device: str | torch.device | None = "cpu",
               allow_unverified: bool = False) -> DepthModel:
    """Load a model, in eval mode, from a file or by a pretrained model's name.

    The returned model carries ``preprocessing`` and ``metadata`` (see
    :func:`~seldepth.models.model_file.read_model_file`, which reads the file).

    Args:
        source: a model file (``.safetensors``), a Lightning checkpoint (``.ckpt``), an ONNX export (``.onnx``), an
            OpenVINO IR (``.xml``), or the name of a pretrained model (``meter_xxs_nyu``;
            :func:`~seldepth.models.pretrained.list_pretrained`),
            downloaded, checked and converted on first use, then read from the cache. An existing path wins.
        weights: False builds the model on the ``meta`` device and checks the file's tensor names and shapes
            without reading their values.
        device: where the model runs: ``cpu`` (default), ``auto``, ``cuda``, ``cuda:N`` or ``mps``.
        allow_unverified: download a pretrained model whose checksum is not known (its sha256 is recorded).

    Raises:
        FileNotFoundError: no such file and no such pretrained model (the known names are listed).
        ValueError: not a model file, weights that do not fit, a bad ``device``; a pretrained model without a known
            checksum, not cached, without ``allow_unverified``.
        DownloadError: (an OSError) a pretrained model's file could not be downloaded (or failed its checksum).

    Example:
        >>> model = load_model("meter_xxs_nyu")                    # pretrained: downloaded once, then cached
        >>> model = load_model("meter_xxs_nyu.safetensors")        # a model file
        >>> depth = model(model.preprocessing(image))              # metres
    """
    return read_model_file(resolve_model_file(source, allow_unverified=allow_unverified), weights=weights, device=device)
