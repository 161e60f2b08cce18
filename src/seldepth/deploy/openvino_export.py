"""Converting a checked ONNX export to an OpenVINO IR (FP32, BF16 or INT8), checked against ONNX Runtime.

The IR (``NAME.xml`` with its weights in ``NAME.bin`` beside it) is converted from the FP32 ONNX file of
:func:`seldepth.deploy.onnx_export.export_onnx` with ``openvino.convert_model``; it takes the same preprocessed
input and returns depth in metres. The ONNX file's ``metadata_props`` are copied into the IR's runtime info
(section ``seldepth``, read back by :class:`~seldepth.models.openvino_model.OpenVinoDepthModel`) with
``format`` = ``seldepth-openvino-1``, ``precision``, ``num_parameters`` and the conversion in ``provenance``.

Precisions:

``f32``
    FP32 weights, computed in FP32 (``INFERENCE_PRECISION_HINT`` f32, which has to be set: on CPUs with
    AVX-512 BF16 or AMX OpenVINO computes in BF16 unless told otherwise).
``bf16``
    The same FP32 weights; BF16 is the precision the file compiles with by default (a hint: CPUs without BF16
    compute in FP32).
``int8``
    NNCF post-training quantisation calibrated on images, activation ranges from the minimum and maximum seen
    (OpenVINO's default range estimator clips outliers, which added 9% to METER-xxs's NYU RMSE). The output
    stage stays FP32 as in ONNX Runtime's INT8 (:func:`seldepth.deploy.quantize.output_stage_nodes`: from the
    output back to the decoder's last skip Concat): quantising it shifts the depth of every pixel (the output
    convolution sums large activations of opposite sign). The file compiles with the f32 hint, so that the layers
    kept out of quantisation run in FP32.

Example:
    >>> export_onnx(load_model("meter_xxs_nyu"), "meter.onnx")
    >>> info = export_openvino("meter.onnx", "meter_bf16.xml", precision="bf16")
    >>> model = load_model("meter_bf16.xml")   # an OpenVinoDepthModel
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import tempfile
from pathlib import Path

import numpy as np
import torch

from seldepth.defaults import DEFAULT_CALIBRATION_IMAGES, require
from seldepth.deploy.onnx_export import FP32_TOLERANCE_M, ExportError, quiet_exporters
from seldepth.deploy.quantize import calibration_inputs, check_calibration_images, output_stage_nodes
from seldepth.models.base import pad_to_multiple
from seldepth.models.onnx_model import OnnxDepthModel, read_onnx_props
from seldepth.models.openvino_model import (
    OPENVINO_FORMAT,
    OPENVINO_PRECISIONS,
    OpenVinoDepthModel,
    OpenVinoError,
    write_openvino_props,
)
from seldepth.models.preprocessing import Preprocessing


def check_openvino_args(precision: str, calibration=None, num_images: int = DEFAULT_CALIBRATION_IMAGES) -> None:
    """Fail before any work on a ``precision`` not in ``f32``, ``bf16``, ``int8``, ``int8`` without ``calibration``,
    or a ``num_images`` that is not an integer in 1..len(calibration) (when calibration data is given).

    Raises:
        ExportError: naming the argument.
    """
    if precision not in OPENVINO_PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(OPENVINO_PRECISIONS)}, got {precision!r}")
    if precision == "int8" and calibration is None:
        raise ExportError("calibration: precision int8 needs calibration data (a data set of images to calibrate "
                          "the activation ranges)")
    check_calibration_images(num_images, calibration)


def openvino_output_stage(onnx_model, ov_model) -> list[str]:
    """The OpenVINO operation names of the output stage of an ONNX graph (:func:`~seldepth.deploy.quantize.output_stage_nodes`)
    in ``ov_model``, converted from it.

    ``openvino.convert_model`` keeps an ONNX node's name as the operation's friendly name, except for the node
    producing a graph output, which takes the output's name (``depth``): each node is found by the name of the
    tensor it produces, else by its own name.

    Raises:
        ExportError: a node of the output stage that has no operation in ``ov_model`` (it would be quantised).
    """
    producer_output = {n.name: n.output[0] for n in onnx_model.graph.node if n.output}
    by_tensor: dict[str, str] = {}
    friendly = set()
    for op in ov_model.get_ordered_ops():
        friendly.add(op.get_friendly_name())
        for output in op.outputs():
            for name in output.get_names():
                by_tensor.setdefault(name, op.get_friendly_name())
    names, missing = [], []
    for node in output_stage_nodes(onnx_model):
        name = by_tensor.get(producer_output.get(node, "")) or (node if node in friendly else None)
        (names if name else missing).append(name or node)
    if missing or not names:
        raise ExportError(f"the output stage's nodes {', '.join(missing) or '(none found)'} have no operation in the "
                          f"OpenVINO model; they would be quantised")
    return names


@contextlib.contextmanager
def quiet_nncf():
    """Silence NNCF's log lines and progress bars (its logger writes to stdout, its progress bars through rich)."""
    logger = logging.getLogger("nncf")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with quiet_exporters(), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(old)


def _preprocessed(images, preprocessing: Preprocessing, multiple: int) -> list[np.ndarray]:
    """(3, H, W) images in [0, 1], preprocessed and padded to ``multiple``: (1, 3, h, w) float32 arrays."""
    return [pad_to_multiple(preprocessing(image[None].float()), multiple).contiguous().numpy().astype(np.float32)
            for image in images]


def _random_input(shape: tuple, preprocessing: Preprocessing, multiple: int) -> np.ndarray:
    """A standard normal (1, 3, h, w) input (the same every time) of the graph's fixed size, else of the preprocessing's."""
    if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:]):
        h, w = shape[2], shape[3]
    else:
        h, w = preprocessing.input_size or (192, 256)
        h, w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0)).numpy()


def export_openvino(onnx_path: str | os.PathLike, out: str | os.PathLike, precision: str = "f32", calibration=None,
                    num_images: int = DEFAULT_CALIBRATION_IMAGES, check_images: list[torch.Tensor] | None = None) -> dict:
    """Convert an FP32 ONNX export to an OpenVINO IR and check it against ONNX Runtime FP32.

    Args:
        onnx_path: an FP32 export of :func:`~seldepth.deploy.onnx_export.export_onnx` (checked against torch).
        out: the ``.xml`` file written (its weights go beside it as ``.bin``); both are written to temporary
            names in the same folder first, then renamed (the ``.bin`` first), so that a run killed at any
            moment leaves no half-written file.
        precision: ``f32``, ``bf16`` or ``int8`` (see the module's notes); the IR records it, and compiles with
            it by default (``int8``: with ``f32``).
        calibration: a data set of sample dicts (``image`` (3, H, W) in [0, 1]), e.g. from
            :func:`seldepth.data.spec.open_dataset`; needed for ``int8``. Its first ``num_images`` images are
            preprocessed with the ONNX file's preprocessing.
        num_images: calibration images (the first ones of ``calibration``).
        check_images: (3, H, W) images in [0, 1] on which the IR is compared to ONNX Runtime FP32; default the
            calibration images, or one random input when no calibration data is given.

    Returns:
        ``{"path", "weights", "precision", "num_images", "ignored", "max_abs_diff_m", "mean_abs_diff_m",
        "checked_inputs"}``: ``num_images`` calibration images (0 without calibration), ``ignored`` the OpenVINO
        operations kept in FP32 (``int8``; else empty), the differences of the compiled IR (at its default
        precision) to ONNX Runtime FP32, in metres, over ``checked_inputs`` inputs.

    Raises:
        ExportError: a bad ``precision``, ``int8`` without ``calibration``, a bad ``num_images``, an ``out`` not
            ending in ``.xml`` (all before any work), an ONNX file without seldepth metadata or not FP32, or an
            ``f32`` IR that differs from ONNX Runtime by more than 1e-4 m; nothing is written then.
        FileNotFoundError: no ``onnx_path``.
        MissingExtraError: openvino (or, for ``int8``, nncf) is not installed.
        OpenVinoError: OpenVINO could not compile the IR on this CPU; nothing is written.
    """
    check_openvino_args(precision, calibration, num_images)
    onnx_path, out = Path(onnx_path), Path(out)
    if out.suffix != ".xml":
        raise ExportError(f"out: {out}: an OpenVINO IR is an .xml file (its weights go beside it as .bin)")
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    ov = require("openvino")  # optional parts, imported when an IR is written
    nncf = require("nncf") if precision == "int8" else None
    onnx = require("onnx")

    props = read_onnx_props(onnx_path)
    if "preprocessing" not in props:
        raise ExportError(f"{onnx_path}: no 'preprocessing' in the ONNX metadata; export it with seldepth export")
    if props.get("precision", "fp32") != "fp32":
        raise ExportError(f"{onnx_path}: an ONNX export of precision {props['precision']!r}; convert the FP32 export")
    reference = OnnxDepthModel(onnx_path)  # ONNX Runtime FP32: the reference of the check; its metadata checked
    prep, multiple = reference.preprocessing, reference.size_multiple
    calib = calibration_inputs(calibration, prep, num_images, multiple) if calibration is not None else []
    if check_images:
        inputs = _preprocessed(check_images, prep, multiple)
    else:
        inputs = calib or [_random_input(reference.input_shape, prep, multiple)]

    model = ov.convert_model(str(onnx_path))
    ignored: list[str] = []
    if precision == "int8":
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        ignored = openvino_output_stage(onnx.load(str(onnx_path), load_external_data=False), model)
        with quiet_nncf():
            model = nncf.quantize(model, nncf.Dataset(calib), subset_size=len(calib),
                                  ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
                                  advanced_parameters=AdvancedQuantizationParameters(
                                      activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX))

    provenance = dict(reference.metadata.get("provenance") or {})
    conversion = {"source_file": str(onnx_path), "converter": "openvino.convert_model",
                  "openvino": ov.get_version(), "precision": precision}
    if precision == "int8":
        conversion.update({"quantizer": "nncf.quantize", "nncf": nncf.__version__, "calibration_images": len(calib),
                           "activation_ranges": "min-max", "fp32_nodes": ignored})
    meta = {**props, "format": OPENVINO_FORMAT, "precision": precision,
            "num_parameters": str(reference.num_parameters())}

    # the IR as it will be read back (runtime info included), checked before anything lands at ``out``
    with tempfile.TemporaryDirectory() as tmpdir:
        candidate = Path(tmpdir) / "model.xml"
        write_openvino_props(model, {**meta, "provenance": json.dumps({**provenance, "openvino_export": conversion})})
        ov.save_model(model, str(candidate), compress_to_fp16=False)
        try:
            compiled = OpenVinoDepthModel(candidate)
        except OpenVinoError as exc:
            raise OpenVinoError(f"{out}: not written: {str(exc).removeprefix(f'{candidate}: ')}") from None
        diffs = []
        for x in inputs:
            a = reference(torch.from_numpy(x)).numpy()
            b = compiled(torch.from_numpy(x)).numpy()
            diffs.append(np.abs(a - b))
        del compiled
    max_diff = float(max(d.max() for d in diffs))
    mean_diff = float(np.mean([d.mean() for d in diffs]))
    if precision == "f32" and not max_diff <= FP32_TOLERANCE_M:
        raise ExportError(f"OpenVINO f32 conversion of {onnx_path} differs from ONNX Runtime by {max_diff:.3g} m "
                          f"(> {FP32_TOLERANCE_M:g} m); not written to {out}")
    conversion.update({"max_abs_diff_m": max_diff, "mean_abs_diff_m": mean_diff, "checked_inputs": len(inputs)})
    write_openvino_props(model, {"provenance": json.dumps({**provenance, "openvino_export": conversion})})
    save_ir_atomic(ov, model, out)
    return {"path": str(out), "weights": str(out.with_suffix(".bin")), "precision": precision, "num_images": len(calib),
            "ignored": ignored, "max_abs_diff_m": max_diff, "mean_abs_diff_m": mean_diff, "checked_inputs": len(inputs)}


def save_ir_atomic(ov, model, out: Path) -> None:
    """Write ``model`` as ``out`` (``.xml``) and ``out.with_suffix(".bin")``, FP32 weights kept as they are.

    Both go to hidden temporary names in the same folder first (``.NAME.PID-TOKEN.xml`` / ``.bin``, as
    :mod:`seldepth.atomic` names them), then are renamed into place, the ``.bin`` first: a run killed at any
    moment leaves the old pair, the new pair, or the new weights beside the old graph, never a half-written file.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.stem}.{os.getpid()}-{secrets.token_hex(4)}.xml")
    try:
        ov.save_model(model, str(staged), compress_to_fp16=False)
        for path in (staged, staged.with_suffix(".bin")):
            os.chmod(path, 0o644)
        os.replace(staged.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
        staged.with_suffix(".bin").unlink(missing_ok=True)


__all__ = ["export_openvino", "check_openvino_args", "openvino_output_stage", "save_ir_atomic"]
