"""A depth model run by ONNX Runtime, usable wherever a torch depth model is (``predict_depth``, ``evaluate``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from seldepth.defaults import require
from seldepth.models.exported_model import ExportedDepthModel
from seldepth.models.preprocessing import Preprocessing

ONNX_FORMAT = "seldepth-onnx-1"  # the metadata_props format of seldepth's ONNX exports


def ort_session(path: str | os.PathLike, threads: int | None = None, optimization: str = "all", spinning: bool = True):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads (None: ORT's default).

    ``spinning`` (ORT's default) keeps the intra-op threads busy-waiting for work after each call: the lowest
    latency for back-to-back calls, but a core taken from any other thread of the process in the meantime.
    """
    ort = require("onnxruntime")  # an optional part, imported when an ONNX file is run

    levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    if optimization not in levels:
        raise ValueError(f"unknown graph optimisation level {optimization!r}; available: {', '.join(levels)}")
    so = ort.SessionOptions()
    so.graph_optimization_level = levels[optimization]
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def read_onnx_props(path: str | os.PathLike) -> dict[str, str]:
    """The raw ``metadata_props`` of an ONNX file."""
    onnx = require("onnx")

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def decode_export_metadata(path: Path, props: dict[str, str], kind: str = "ONNX") -> tuple[dict, Preprocessing, int]:
    """The checked metadata of a seldepth export, its preprocessing and its size multiple.

    ``props`` are the export's raw string key/values (ONNX ``metadata_props``, the ``seldepth`` section of an
    OpenVINO IR's runtime info); ``config``, ``preprocessing``, ``provenance`` and ``intrinsics`` are decoded
    from JSON. ``kind`` names the metadata in the errors (``ONNX``, ``OpenVINO``).

    Raises:
        ValueError: naming ``path`` and the key at fault (JSON that does not parse or is not an object, an
            ``output_unit`` other than metres, a bad preprocessing or ``size_multiple``).
    """
    meta = dict(props)
    for key in ("config", "preprocessing", "provenance") + (("intrinsics",) if "intrinsics" in props else ()):
        try:
            meta[key] = json.loads(props.get(key, "{}"))
        except (json.JSONDecodeError, RecursionError):
            raise ValueError(f"{path}: {kind} metadata {key!r} is not valid JSON") from None
        if not isinstance(meta[key], dict) and not (key == "intrinsics" and meta[key] is None):
            raise ValueError(f"{path}: {kind} metadata {key!r} must be a JSON object, got "
                             f"{type(meta[key]).__name__} {meta[key]!r:.80}")
    if meta.get("output_unit", "m") != "m":
        raise ValueError(f"{path}: {kind} metadata 'output_unit' is {meta['output_unit']!r}; "
                         f"seldepth models output metres ('m')")
    try:
        preprocessing = Preprocessing.from_dict(meta["preprocessing"])
    except ValueError as exc:
        raise ValueError(f"{path}: {kind} metadata {exc}") from None
    multiple = str(meta.get("size_multiple", "1") or "1").strip()
    if not multiple.isdigit() or not 1 <= int(multiple) <= 4096:
        raise ValueError(f"{path}: {kind} metadata 'size_multiple' must be a whole number in 1..4096, "
                         f"got {multiple!r:.80}")
    return meta, preprocessing, int(multiple)


class OnnxDepthModel(ExportedDepthModel):
    """An ONNX export of :func:`seldepth.deploy.onnx_export.export_onnx` behind the interface of a torch depth model.

    ``model(x)`` takes the preprocessed batch ``x: (B, 3, h, w)`` (torch, float) and returns depth
    ``(B, 1, h', w')`` in metres as a CPU torch tensor. ``preprocessing``, ``name`` and ``metadata``
    come from the file's metadata. It has no parameters or buffers, is always in eval mode, and
    ``eval()`` / ``train()`` return itself, so :func:`~seldepth.inference.predict_depth` and
    :func:`~seldepth.evaluation.evaluate` take it unchanged.

    A fixed-size export runs batches of any size (one run per fixed batch) but only its input size;
    a dynamic export (multiples of ``size_multiple``) pads other sizes (replicate, bottom and
    right) and crops the output back, as METER's ``forward`` does.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime intra-op threads (None: ORT's default, all cores).
        optimization: ORT graph optimisation level: ``disable``, ``basic``, ``extended``, ``all``.
        spinning: let ORT's threads busy-wait between calls (see :func:`ort_session`). Off by default: the
            threads sleep, so that the reader and writer threads of ``seldepth predict`` and the data loading
            of an evaluation get the cores; the latency benchmarks turn it on.

    Example:
        >>> model = OnnxDepthModel("meter_xxs_nyu.onnx", threads=2)
        >>> depth = predict_depth(model, images)   # (B, 1, H, W) metres
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, optimization: str = "all",
                 spinning: bool = False):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        try:
            self.session = ort_session(self.path, threads=threads, optimization=optimization, spinning=spinning)
        except Exception as exc:  # ORT raises its own exception types for unreadable files
            raise ValueError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        if "preprocessing" not in props:
            raise ValueError(f"{self.path}: the ONNX metadata has no 'preprocessing' (keys: {', '.join(sorted(props)) or 'none'}); "
                             f"export the model with `seldepth export` so that its preprocessing is recorded")
        self.metadata, self.preprocessing, self.size_multiple = decode_export_metadata(self.path, props, "ONNX")
        self.name = self.metadata.get("architecture") or self.path.stem
        self.threads = threads
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{self.path}: expected a graph with one (B, 3, H, W) input, got "
                             f"{[(i.name, i.shape) for i in inputs]}")
        inp = inputs[0]
        self.input_name = inp.name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inp.shape)

    def num_parameters(self) -> int:
        """Number of weights stored in the graph's initialisers (INT8 weights count once)."""
        onnx = require("onnx")
        proto = onnx.load(str(self.path), load_external_data=False)
        return int(sum(math.prod(t.dims) for t in proto.graph.initializer if len(t.dims) > 1 or
                       (len(t.dims) == 1 and t.dims[0] > 1 and t.data_type in (1, 3, 6))))

    def __repr__(self) -> str:
        return (f"OnnxDepthModel({str(self.path)!r}, {self.name}, {self.metadata.get('precision', 'fp32')}, "
                f"input {self.input_shape})")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]

def load_onnx_model(path: str | os.PathLike, threads: int | None = None) -> OnnxDepthModel:
    """Load an ONNX export as an :class:`OnnxDepthModel`."""
    return OnnxDepthModel(path, threads=threads)


__all__ = ["OnnxDepthModel", "load_onnx_model", "ONNX_FORMAT"]
