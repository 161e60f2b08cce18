"""A depth model run by OpenVINO on the CPU, usable wherever a torch depth model is (``predict_depth``, ``evaluate``).

An OpenVINO IR is an ``.xml`` graph with its weights in a ``.bin`` file beside it, written by
:func:`seldepth.deploy.openvino_export.export_openvino` from a checked ONNX export. seldepth's metadata lives in
the IR's runtime info, in a ``seldepth`` section holding the keys of the ONNX export's ``metadata_props``
(:mod:`seldepth.deploy.onnx_export`: ``architecture``, ``config``, ``preprocessing``, ``provenance``,
``output_unit``, ``size_multiple``, ``intrinsics``, ...) with ``format`` = ``seldepth-openvino-1`` and
``precision``: ``f32``, ``bf16`` (the same FP32 weights; the precision OpenVINO computes in by default) or
``int8`` (quantised by NNCF; its layers kept out of quantisation run in FP32).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from seldepth.defaults import check_number, require
from seldepth.models.exported_model import ExportedDepthModel
from seldepth.models.onnx_model import decode_export_metadata

OPENVINO_FORMAT = "seldepth-openvino-1"  # the ``format`` of the seldepth section of an IR's runtime info
RT_INFO_SECTION = "seldepth"  # the runtime-info section holding seldepth's metadata
OPENVINO_PRECISIONS = ("f32", "bf16", "int8")  # what an IR records as its ``precision``
INFERENCE_PRECISIONS = ("f32", "bf16")  # OpenVINO's INFERENCE_PRECISION_HINT values seldepth sets


class OpenVinoError(RuntimeError):
    """OpenVINO could not compile or run an IR on this CPU; the message names the file and the precision.

    OpenVINO's CPU plugin targets Intel's instruction sets; on other CPUs (some AMD ones) or without BF16
    support a model may fail to compile, and the benchmarks fall back to ONNX Runtime on this error.
    """


def default_inference_precision(precision: str) -> str:
    """The INFERENCE_PRECISION_HINT an IR of ``precision`` compiles with by default: ``f32`` for ``int8`` (the layers
    kept out of quantisation stay FP32; OpenVINO would otherwise run them in BF16 where the CPU has it), else itself."""
    return "f32" if precision == "int8" else precision


def read_openvino_props(model) -> dict[str, str]:
    """The ``seldepth`` section of an OpenVINO model's runtime info as strings (empty when it has none).

    Args:
        model: an ``openvino.Model`` (e.g. from ``openvino.Core().read_model``).
    """
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info([RT_INFO_SECTION]).value
    if not isinstance(section, dict):
        return {}
    return {str(k): str(v) for k, v in section.items()}


def write_openvino_props(model, props: dict[str, str]) -> None:
    """Set ``props`` (string keys and values) as the ``seldepth`` section of an OpenVINO model's runtime info."""
    for key, value in props.items():
        model.set_rt_info(str(value), [RT_INFO_SECTION, str(key)])


class OpenVinoDepthModel(ExportedDepthModel):
    """An OpenVINO IR of :func:`seldepth.deploy.openvino_export.export_openvino` behind the interface of a torch
    depth model, compiled for the CPU.

    ``model(x)`` takes the preprocessed batch ``x: (B, 3, h, w)`` (torch, float) and returns depth
    ``(B, 1, h', w')`` in metres as a CPU float32 torch tensor. ``preprocessing``, ``name`` and ``metadata``
    come from the IR's runtime info. It has no parameters or buffers, is always in eval mode, and
    ``eval()`` / ``train()`` / ``to()`` return itself, so :func:`~seldepth.inference.predict_depth` and
    :func:`~seldepth.evaluation.evaluate` take it unchanged, as they take an
    :class:`~seldepth.models.onnx_model.OnnxDepthModel`.

    A fixed-size IR runs batches of any size (one run per fixed batch) but only its input size; a dynamic one
    (multiples of ``size_multiple``) pads other sizes (replicate, bottom and right) and crops the output back.

    It compiles with ``PERFORMANCE_HINT`` = ``LATENCY`` and ``INFERENCE_PRECISION_HINT`` = ``precision``, always
    set: on CPUs with AVX-512 BF16 or AMX, OpenVINO's own default is BF16.

    Args:
        path: the ``.xml`` file (its weights, ``.bin``, beside it).
        threads: OpenVINO inference threads (``INFERENCE_NUM_THREADS``; None: OpenVINO's default, all cores).
        precision: ``f32`` or ``bf16`` (None: the file's default, :func:`default_inference_precision` of its
            recorded ``precision``: ``f32`` for an ``int8`` file).

    Raises:
        FileNotFoundError: no ``.xml`` or no ``.bin`` beside it.
        ValueError: not an IR, no seldepth metadata, bad metadata, a bad ``threads`` or ``precision``.
        OpenVinoError: OpenVINO could not compile the model for this CPU at ``precision``.

    Example:
        >>> model = OpenVinoDepthModel("meter_xxs_nyu.xml", threads=2)
        >>> depth = predict_depth(model, images)   # (B, 1, H, W) metres
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, precision: str | None = None):
        ov = require("openvino")  # an optional part, imported when an IR is read

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"OpenVINO model not found: {self.path}")
        weights = self.path.with_suffix(".bin")
        if not weights.is_file():
            raise FileNotFoundError(f"{self.path}: its weights file {weights} is missing (an OpenVINO IR is an .xml "
                                    f"with its .bin beside it)")
        check_number("threads", threads, 1, integer=True, optional=True)
        if precision is not None and precision not in INFERENCE_PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(INFERENCE_PRECISIONS)} or None (the file's default), "
                             f"got {precision!r}")
        core = ov.Core()
        try:
            model = core.read_model(str(self.path), str(weights))
        except Exception as exc:  # OpenVINO raises RuntimeError (or its own types) for unreadable files
            raise ValueError(f"{self.path}: not a loadable OpenVINO IR ({type(exc).__name__}: {str(exc)[:300]})") from None
        props = read_openvino_props(model)
        if "preprocessing" not in props:
            raise ValueError(f"{self.path}: the OpenVINO IR has no seldepth metadata (runtime info section "
                             f"{RT_INFO_SECTION!r} with 'preprocessing'; keys: {', '.join(sorted(props)) or 'none'}); "
                             f"export the model with `seldepth export --format openvino`")
        self.metadata, self.preprocessing, self.size_multiple = decode_export_metadata(self.path, props, "OpenVINO")
        stored = self.metadata.setdefault("precision", "f32")
        if stored not in OPENVINO_PRECISIONS:
            raise ValueError(f"{self.path}: OpenVINO metadata 'precision' must be one of {', '.join(OPENVINO_PRECISIONS)}, "
                             f"got {stored!r:.80}")
        self.name = self.metadata.get("architecture") or self.path.stem
        self.threads = threads
        self.precision = precision or default_inference_precision(stored)
        if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.get_length() != 4:
            raise ValueError(f"{self.path}: expected a graph with one (B, 3, H, W) input, got "
                             f"{[str(i.get_partial_shape()) for i in model.inputs]}")
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape())
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = core.compile_model(model, "CPU", config)
            self.request = self.compiled.create_infer_request()
        except Exception as exc:  # the CPU plugin raises RuntimeError for what this CPU cannot run
            raise OpenVinoError(f"{self.path}: OpenVINO could not compile the model for the CPU at precision "
                                f"{self.precision} ({type(exc).__name__}: {str(exc)[:300]})") from None

    def num_parameters(self) -> int:
        """Number of weights of the FP32 model exported (recorded at export; INT8 weights count once), else the
        elements of the IR's float weight constants (matrices, kernels and vectors of more than one value)."""
        recorded = str(self.metadata.get("num_parameters", "")).strip()
        if recorded.isdigit():
            return int(recorded)
        ov = require("openvino")
        model = ov.Core().read_model(str(self.path))
        total = 0
        for op in model.get_ordered_ops():
            if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real():
                shape = list(op.get_output_shape(0))
                if len(shape) > 1 or (len(shape) == 1 and shape[0] > 1):
                    total += math.prod(shape)
        return int(total)

    def __repr__(self) -> str:
        return (f"OpenVinoDepthModel({str(self.path)!r}, {self.name}, {self.metadata.get('precision')} file, "
                f"{self.precision} inference, input {self.input_shape})")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            self.request.infer({0: batch})
        except Exception as exc:  # the CPU plugin's RuntimeError
            raise OpenVinoError(f"{self.path}: OpenVINO failed to run the model at precision {self.precision} "
                                f"({type(exc).__name__}: {str(exc)[:300]})") from None
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)  # the request reuses it

def load_openvino_model(path: str | os.PathLike, threads: int | None = None, precision: str | None = None) -> OpenVinoDepthModel:
    """Load an OpenVINO IR export as an :class:`OpenVinoDepthModel`."""
    return OpenVinoDepthModel(path, threads=threads, precision=precision)


__all__ = ["OpenVinoDepthModel", "OpenVinoError", "load_openvino_model", "read_openvino_props", "write_openvino_props",
           "default_inference_precision", "OPENVINO_FORMAT", "OPENVINO_PRECISIONS", "INFERENCE_PRECISIONS"]
