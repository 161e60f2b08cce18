"""Quantising an ONNX export to INT8 with ONNX Runtime's static quantisation, calibrated on images.

The output stage (the last convolutions before the depth) stays in FP32 by default: any INT8
tensor there shifts the depth by several percent. :func:`int8_slower_nodes` lists the nodes whose
INT8 kernels run slower than FP32 on CPUs (narrow convolutions), which are left in FP32 too.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from seldepth.defaults import DEFAULT_CALIBRATION_IMAGES, check_number, require
from seldepth.deploy.onnx_export import ExportError, quiet_exporters, save_onnx_atomic
from seldepth.models.base import pad_to_multiple
from seldepth.models.onnx_model import ort_session, read_onnx_props
from seldepth.models.preprocessing import Preprocessing

# ONNX op types quantised by default (see quantize_int8)
INT8_OP_TYPES = ("Conv", "Relu", "Add", "Concat", "Gemm", "MatMul")


def check_calibration_images(num_images: int, dataset=None) -> int:
    """``num_images`` when it is an integer >= 1 and ``dataset`` (if given) has that many images.

    Raises:
        ExportError: naming ``num_images``; never fewer images silently.
    """
    try:
        check_number("num_images", num_images, 1, integer=True)
    except ValueError as exc:
        raise ExportError(f"{exc} (calibration images)") from None
    if dataset is not None and num_images > len(dataset):
        raise ExportError(f"num_images: asked for {num_images} calibration images, but the calibration data has "
                          f"{len(dataset)}; ask for at most {len(dataset)}" if len(dataset) else
                          "num_images: the calibration data set has no images")
    return int(num_images)


def calibration_inputs(dataset, preprocessing: Preprocessing, num_images: int, size_multiple: int = 1) -> list[np.ndarray]:
    """The first ``num_images`` images of ``dataset``, preprocessed as the model records: (1, 3, h, w) float32 arrays.

    Raises:
        ExportError: naming ``num_images`` (:func:`check_calibration_images`).
    """
    n = check_calibration_images(num_images, dataset)
    out = []
    for i in range(n):
        image = dataset[i]["image"]
        x = preprocessing(image[None].float())
        out.append(pad_to_multiple(x, size_multiple).contiguous().numpy().astype(np.float32))
    return out


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, calibration_dataset, num_images: int = DEFAULT_CALIBRATION_IMAGES,
                  per_channel: bool = True, quant_format: str = "QOperator", calibrate_method: str = "MinMax",
                  op_types: tuple[str, ...] | None = INT8_OP_TYPES, fp32_output_stage: bool = True, reduce_range: bool = False,
                  activation_type: str = "QUInt8", pre_process: bool = True, fp32_slower_nodes: bool = True) -> dict:
    """Static INT8 quantisation with ONNX Runtime, calibrated on images of a data set.

    Each calibration image is preprocessed with the preprocessing recorded in ``onnx_path``.
    Defaults (measured on x64, ``benchmarks/bench_inference.py``): QOperator format (QLinearConv),
    weights signed INT8 per output channel, activations unsigned INT8 (the U8S8 kernels);
    ``INT8_OP_TYPES``: convolutions with their ReLUs folded in, residual Adds and skip Concats
    (so activations stay INT8 between convolutions instead of being dequantised around every
    ReLU), and the transformer's weight MatMul/Gemm (attention products, LayerNorm and Softmax
    stay FP32). Activation ranges from ``calibrate_method`` (``MinMax``, ``Entropy``, ``Percentile``).
    The model is first run through ``quant_pre_process`` (shape inference and ORT graph optimisation).

    ``fp32_output_stage`` keeps the output stage in FP32: the nodes from the output back to
    the last Concat (the last skip connection) of the decoder (:func:`output_stage_nodes`).
    For METER-xxs this stage decides the accuracy: quantising any tensor in it shifts the
    predicted depth by -4.5% on NYU (the output conv sums large activations of opposite sign),
    while the whole rest of the network in INT8 costs 0.1% (measured per-tensor, see the
    README).

    Args:
        onnx_path: an FP32 export of :func:`export_onnx`.
        out_path: output ``.onnx`` (written atomically), with the FP32 file's metadata
            (``precision`` = ``int8``, quantisation settings in ``provenance``).
        calibration_dataset: a data set of sample dicts (``image`` (3, H, W) in [0, 1]).
        num_images: calibration images (the first ones of the data set).
        quant_format: ``QDQ`` (QuantizeLinear/DequantizeLinear pairs) or ``QOperator`` (QLinearConv ...).
        op_types: op types to quantise (None: all that ORT supports).
        fp32_output_stage: keep :func:`output_stage_nodes` in FP32.
        fp32_slower_nodes: keep :func:`int8_slower_nodes` in FP32 (the stem convolution,
            attention's activation products and the projections feeding them).
        activation_type: ``QInt8`` (asymmetric, signed) or ``QUInt8`` (the x64 U8S8 kernels' input type).

    Returns:
        ``{"path", "num_images", "max_abs_diff_m", "mean_abs_diff_m", "settings"}``: the difference
        to the FP32 model on the calibration images.
    """
    onnx = require("onnx")
    require("onnxruntime")  # an optional part: a clear error with the pip line when it is missing
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    props = read_onnx_props(onnx_path)
    if "preprocessing" not in props:
        raise ExportError(f"{onnx_path}: no 'preprocessing' in the ONNX metadata; export it with seldepth export")
    formats = {"QDQ": QuantFormat.QDQ, "QOperator": QuantFormat.QOperator}
    methods = {"MinMax": CalibrationMethod.MinMax, "Entropy": CalibrationMethod.Entropy,
               "Percentile": CalibrationMethod.Percentile}
    if quant_format not in formats:
        raise ExportError(f"unknown quant_format {quant_format!r}; available: {', '.join(formats)}")
    if activation_type not in ("QInt8", "QUInt8"):
        raise ExportError(f"unknown activation_type {activation_type!r}; available: QInt8, QUInt8")
    if calibrate_method not in methods:
        raise ExportError(f"unknown calibrate_method {calibrate_method!r}; available: {', '.join(methods)}")
    prep = Preprocessing.from_dict(json.loads(props["preprocessing"]))
    multiple = int(props.get("size_multiple", "1"))
    inputs = calibration_inputs(calibration_dataset, prep, num_images, multiple)
    input_name = ort_session(onnx_path).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    settings = {"per_channel": per_channel, "quant_format": quant_format, "calibrate_method": calibrate_method,
                "op_types": list(op_types) if op_types else None, "fp32_output_stage": fp32_output_stage,
                "fp32_slower_nodes": fp32_slower_nodes,
                "reduce_range": reduce_range, "activation_type": activation_type, "weight_type": "QInt8",
                "calibration_images": len(inputs), "pre_process": pre_process}
    with tempfile.TemporaryDirectory() as tmpdir:
        source = onnx_path
        if pre_process:
            source = Path(tmpdir) / "pre.onnx"
            with quiet_exporters():
                quant_pre_process(str(onnx_path), str(source), skip_symbolic_shape=True)
        model = onnx.load(str(source))
        exclude = output_stage_nodes(model) if fp32_output_stage else []
        if fp32_slower_nodes:
            exclude += [n for n in int8_slower_nodes(model) if n not in exclude]
        settings["nodes_excluded"] = exclude
        qpath = Path(tmpdir) / "int8.onnx"
        with quiet_exporters():
            quantize_static(str(source), str(qpath), Reader(), quant_format=formats[quant_format],
                            op_types_to_quantize=list(op_types) if op_types else None, per_channel=per_channel,
                            reduce_range=reduce_range, activation_type=getattr(QuantType, activation_type), weight_type=QuantType.QInt8,
                            nodes_to_exclude=exclude, calibrate_method=methods[calibrate_method],
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "MatMulConstBOnly": True})
        qmodel = onnx.load(str(qpath))
        fp32 = ort_session(onnx_path)
        int8 = ort_session(qpath)
        diffs = []
        for x in inputs:
            a = fp32.run(None, {input_name: x})[0]
            b = int8.run(None, {input_name: x})[0]
            diffs.append(np.abs(a - b))
        max_diff = float(max(d.max() for d in diffs))
        mean_diff = float(np.mean([d.mean() for d in diffs]))
        provenance = json.loads(props.get("provenance", "{}"))
        provenance["int8_quantization"] = {**settings, "source_file": str(onnx_path), "max_abs_diff_m": max_diff,
                                           "mean_abs_diff_m": mean_diff}
        del qmodel.metadata_props[:]
        onnx.helper.set_model_props(qmodel, {**props, "precision": "int8", "provenance": json.dumps(provenance)})
        save_onnx_atomic(qmodel, out_path)
    return {"path": str(out_path), "num_images": len(inputs), "max_abs_diff_m": max_diff, "mean_abs_diff_m": mean_diff,
            "settings": settings}


# Ops that only move or split values: a path through them keeps a tensor's quantisation.
_SHAPE_OPS = ("Reshape", "Transpose", "Split", "Squeeze", "Unsqueeze", "Slice", "Gather", "Flatten")


def int8_slower_nodes(model, min_channels: int = 8) -> list[str]:
    """Names of the nodes of an ONNX graph that make ONNX Runtime's INT8 model slower on x64 when quantised.

    Measured on METER-xxs (ORT's per-node profiler and isolated latencies, 192x256, 1 and 2 threads):

    * convolutions with fewer than ``min_channels`` input channels (the 3-channel stem: 0.26 ms in
      INT8 against 0.15 ms in FP32, plus quantising and transposing the input image);
    * attention's products of two activations (Q K^T, A V) and the projections that feed them
      (a constant-weight MatMul / Gemm whose output reaches such a product through reshapes,
      transposes and splits only). Quantised, Q K^T runs as an integer product followed by an
      unfused scale (0.30 against 0.17 ms for the three blocks); excluding only the product does
      not work, because ORT fuses the DequantizeLinear in front of it back into an integer MatMul.

    Depthwise convolutions are also slower in INT8 (0.16 against 0.11 ms for the 32-channel one at
    96x128) but are left in: ORT fuses an excluded node between INT8 neighbours back into
    QLinearConv, and keeping it FP32 by other means costs more in layout changes than it saves.
    """
    constants = {t.name: t for t in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def activation_product(node) -> bool:
        return node.op_type == "MatMul" and not any(i in constants for i in node.input)

    def feeds_activation_product(node) -> bool:
        frontier, seen = list(node.output), set()
        while frontier:
            for nxt in consumers.get(frontier.pop(), []):
                if nxt.name in seen:
                    continue
                seen.add(nxt.name)
                if activation_product(nxt):
                    return True
                if nxt.op_type in _SHAPE_OPS:
                    frontier.extend(nxt.output)
        return False

    names = []
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in constants:
            w = constants[node.input[1]].dims  # (out, in / group, kh, kw)
            group = next((a.i for a in node.attribute if a.name == "group"), 1)
            if w[1] * group < min_channels:
                names.append(node.name)
        elif activation_product(node):
            names.append(node.name)
        elif node.op_type in ("MatMul", "Gemm") and len(node.input) > 1 and node.input[1] in constants \
                and feeds_activation_product(node):
            names.append(node.name)
    return names


def output_stage_nodes(model, max_nodes: int = 12) -> list[str]:
    """Names of the nodes of the output stage of an ONNX graph: from the node producing the first
    output back, through each node's first non-constant input, up to and including the first
    Concat met (the decoder's last skip connection); at most ``max_nodes`` nodes (a graph with no
    Concat near the output gives its last ``max_nodes`` nodes on that path)."""
    constants = {t.name for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    names, tensor = [], model.graph.output[0].name
    while tensor in producer and len(names) < max_nodes:
        node = producer[tensor]
        names.append(node.name)
        if node.op_type == "Concat":
            break
        tensor = next((i for i in node.input if i and i not in constants), None)
    return names
