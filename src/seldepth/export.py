"""Exporting a depth model to ONNX (checked against torch) and quantising it to INT8 with ONNX Runtime.

The ONNX graph takes the *preprocessed* image ``image: (B, 3, h, w)`` float32 and returns
``depth: (B, 1, h', w')`` in metres. Its ``metadata_props`` record what is needed to use it
(all strings, JSON where structured):

    ``format``          ``seldepth-onnx-1``
    ``architecture``    registry name of the source model, e.g. ``meter_xxs``
    ``config``          the architecture's dataclass config
    ``preprocessing``   :class:`~seldepth.models.preprocessing.Preprocessing` as a dict
    ``output_unit``     ``m``
    ``size_multiple``   input sides the graph accepts (dynamic export) without padding
    ``dynamic``         ``true`` if batch, height and width are dynamic
    ``precision``       ``fp32`` or ``int8``
    ``provenance``      the source model file's provenance plus the export's (source file, check)

Example:
    >>> info = export_onnx(load_model("meter_xxs_nyu.safetensors"), "meter.onnx")
    >>> info["max_abs_diff_m"] < 1e-4
    True
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from seldepth.atomic import atomic_path
from seldepth.models.base import pad_to_multiple
from seldepth.models.preprocessing import Preprocessing

ONNX_FORMAT = "seldepth-onnx-1"
EXPORT_FORMATS = ("onnx",)
FP32_TOLERANCE_M = 1e-4
# ONNX op types quantised by default (see quantize_int8)
INT8_OP_TYPES = ("Conv", "Relu", "Add", "Concat", "Gemm", "MatMul")


class ExportError(ValueError):
    """A bad export request (format, options) or an export that failed its check."""


def check_export_args(fmt: str, int8: bool = False, calibration: str | None = None) -> None:
    """Fail before any work on an unknown format or ``int8`` without calibration data."""
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; available: {', '.join(EXPORT_FORMATS)}")
    if int8 and not calibration:
        raise ExportError("--int8 needs --calibration DATA_SPEC (images to calibrate the activation ranges)")


def _save_onnx_atomic(proto, path: Path) -> None:
    import onnx

    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
        os.chmod(tmp, 0o644)


def _quiet():
    """Silence the exporter's progress lines and warnings (they go to stdout, stderr and logging)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        logger = logging.getLogger(name)
        old = logger.level
        logger.setLevel(logging.ERROR)
        stack.callback(logger.setLevel, old)
    return stack


def ort_session(path: str | os.PathLike, threads: int | None = None, optimization: str = "all"):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads (None: ORT's default)."""
    import onnxruntime as ort

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
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _preprocessing_of(model) -> Preprocessing:
    return getattr(model, "preprocessing", None) or Preprocessing()


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, input_size: tuple[int, int] | None = None,
                dynamic: bool = False, opset: int | None = None, check_images: list[torch.Tensor] | None = None,
                source: str | os.PathLike | None = None, verbose: bool = False) -> dict:
    """Export a depth model to ONNX with the dynamo exporter and check it against torch with ONNX Runtime.

    Args:
        model: a :class:`~seldepth.models.base.DepthModel` (e.g. from ``load_model``; its
            ``preprocessing`` and ``metadata`` are recorded).
        path: output ``.onnx`` file (written atomically).
        input_size: (h, w) of the network input; default ``model.preprocessing.input_size``.
        dynamic: make batch, height and width dynamic. Height and width then must be multiples
            of ``model.size_multiple`` (64 for METER: its internal padding to 64 does not
            export with symbolic sizes); :class:`~seldepth.onnx_model.OnnxDepthModel` pads
            other sizes itself, as METER's ``forward`` does. Otherwise all sizes are fixed (batch 1).
        opset: ONNX opset (default the exporter's).
        check_images: optional (3, H, W) RGB images in [0, 1]; preprocessed and checked too.
        source: the model file the model came from (recorded in the provenance).

    Returns:
        ``{"path", "max_abs_diff_m", "checked_inputs", "input_size", "dynamic", "opset"}``.

    Raises:
        ExportError: the ONNX output differs from torch by more than 1e-4 m.
    """
    import onnx

    path = Path(path)
    prep = _preprocessing_of(model)
    size = tuple(input_size or prep.input_size or (192, 256))
    if len(size) != 2 or min(size) < 1:
        raise ExportError(f"input_size must be (h, w) with positive sides, got {size}")
    multiple = int(getattr(model, "size_multiple", 1) or 1)
    if dynamic and (size[0] % multiple or size[1] % multiple):
        raise ExportError(f"a dynamic export traces at sides that are multiples of {multiple}; got input size {size}")
    was_training = model.training
    model.eval()
    batch = 2 if dynamic else 1
    example = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    kwargs = {"dynamo": True, "input_names": ["image"], "output_names": ["depth"], "verbose": False}
    if opset is not None:
        kwargs["opset_version"] = int(opset)
    if dynamic:
        from torch.export import Dim

        arg = "image" if "image" in _forward_arg_names(model) else _forward_arg_names(model)[0]
        if multiple > 1:
            hd = multiple * Dim("height_blocks", min=1, max=max(2, 4096 // multiple))
            wd = multiple * Dim("width_blocks", min=1, max=max(2, 4096 // multiple))
        else:
            hd, wd = Dim("height", min=2, max=4096), Dim("width", min=2, max=4096)
        kwargs["dynamic_shapes"] = {arg: {0: Dim("batch", min=1, max=1024), 2: hd, 3: wd}}
    # check against torch before anything lands at ``path``
    inputs = [example]
    if dynamic:
        other = (size[0] + multiple if multiple > 1 else size[0] + 8, size[1] + multiple if multiple > 1 else size[1] + 8)
        inputs.append(torch.randn(1, 3, *other, generator=torch.Generator().manual_seed(1)))
    else:
        inputs.append(torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1)))
    fixed_prep = Preprocessing(size, prep.mean, prep.std, prep.resize)
    for image in check_images or []:
        inputs.append(fixed_prep(image[None].float()))
    with tempfile.TemporaryDirectory() as tmpdir:
        candidate = Path(tmpdir) / "model.onnx"
        try:
            with (contextlib.nullcontext() if verbose else _quiet()):
                torch.onnx.export(model, (example,), str(candidate), **kwargs)
            proto = onnx.load(str(candidate))
            diff = max_abs_difference(model, candidate, inputs)
        finally:
            model.train(was_training)
    arch = getattr(model, "name", "") or type(model).__name__
    if not diff <= FP32_TOLERANCE_M:
        raise ExportError(f"ONNX export of {arch} differs from torch by {diff:.3g} m "
                          f"(> {FP32_TOLERANCE_M:g} m); not written to {path}")

    meta = getattr(model, "metadata", None) or {}
    provenance = dict(meta.get("provenance") or {})
    provenance["onnx_export"] = {"source_file": str(source) if source else None, "exporter": "torch.onnx.export(dynamo=True)",
                                 "torch": torch.__version__, "input_size": list(size), "dynamic": dynamic,
                                 "max_abs_diff_m": diff}
    onnx.helper.set_model_props(proto, {
        "format": ONNX_FORMAT,
        "architecture": arch,
        "config": json.dumps(model.config_dict() if hasattr(model, "config_dict") else meta.get("config", {})),
        "preprocessing": json.dumps((prep if dynamic else fixed_prep).to_dict()),  # a fixed export: its own input size
        "output_unit": "m",
        "size_multiple": str(multiple),
        "dynamic": "true" if dynamic else "false",
        "precision": "fp32",
        "provenance": json.dumps(provenance),
    })
    opset_used = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    _save_onnx_atomic(proto, path)
    return {"path": str(path), "max_abs_diff_m": diff, "checked_inputs": len(inputs), "input_size": list(size),
            "dynamic": dynamic, "opset": opset_used}


def _forward_arg_names(model) -> list[str]:
    import inspect

    return [p for p in inspect.signature(model.forward).parameters]


@torch.no_grad()
def max_abs_difference(model: torch.nn.Module, onnx_path: str | os.PathLike, inputs: list[torch.Tensor],
                       threads: int | None = None) -> float:
    """Largest |torch - ONNX Runtime| over preprocessed ``inputs`` (each (B, 3, h, w)), in metres."""
    session = ort_session(onnx_path, threads=threads)
    name = session.get_inputs()[0].name
    was_training = model.training
    model.eval()
    try:
        worst = 0.0
        for x in inputs:
            ref = model(x.float()).numpy()
            out = session.run(None, {name: x.float().numpy()})[0]
            if out.shape != ref.shape:
                raise ExportError(f"ONNX output shape {out.shape} differs from torch's {ref.shape} for input {tuple(x.shape)}")
            worst = max(worst, float(np.abs(out - ref).max()))
    finally:
        model.train(was_training)
    return worst


def read_onnx_props(path: str | os.PathLike) -> dict[str, str]:
    """The raw ``metadata_props`` of an ONNX file."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def calibration_inputs(dataset, preprocessing: Preprocessing, num_images: int, size_multiple: int = 1) -> list[np.ndarray]:
    """The first ``num_images`` images of ``dataset``, preprocessed as the model records: (1, 3, h, w) float32 arrays."""
    n = min(int(num_images), len(dataset))
    if n < 1:
        raise ExportError(f"calibration data set has no images (asked for {num_images})")
    out = []
    for i in range(n):
        image = dataset[i]["image"]
        x = preprocessing(image[None].float())
        out.append(pad_to_multiple(x, size_multiple).contiguous().numpy().astype(np.float32))
    return out


def quantize_int8(onnx_path: str | os.PathLike, out_path: str | os.PathLike, calibration_dataset, num_images: int = 16,
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
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
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
            with _quiet():
                quant_pre_process(str(onnx_path), str(source), skip_symbolic_shape=True)
        model = onnx.load(str(source))
        exclude = output_stage_nodes(model) if fp32_output_stage else []
        if fp32_slower_nodes:
            exclude += [n for n in int8_slower_nodes(model) if n not in exclude]
        settings["nodes_excluded"] = exclude
        qpath = Path(tmpdir) / "int8.onnx"
        with _quiet():
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
        _save_onnx_atomic(qmodel, out_path)
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
