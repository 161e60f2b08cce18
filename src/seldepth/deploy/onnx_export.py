"""Exporting a depth model to ONNX, checked against torch (INT8 quantisation: :mod:`seldepth.deploy.quantize`).

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
    ``intrinsics``      the source model file's camera intrinsics, when it records them

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
from seldepth.defaults import check_number, check_size, require
from seldepth.models.onnx_model import ONNX_FORMAT, ort_session
from seldepth.models.preprocessing import Preprocessing

EXPORT_FORMATS = ("onnx", "openvino", "best")  # what ``seldepth export --format`` writes
FP32_TOLERANCE_M = 1e-4


class ExportError(ValueError):
    """A bad export request (format, options) or an export that failed its check."""


def check_export_args(fmt: str, int8: bool = False, calibration: str | None = None, opset: int | None = None,
                      input_size: tuple[int, int] | None = None, precision: str | None = None,
                      out: str | os.PathLike | None = None, data: str | None = None) -> None:
    """Fail before any work on a bad export request: the one check of ``seldepth export``'s arguments.

    ``best`` (the fastest path within an RMSE budget, :func:`seldepth.deploy.bench.benchmark_and_pick`) needs
    ``data`` (the RMSE of each path) and takes neither ``precision`` nor ``int8``: it chooses them.

    Refused: a format not in :data:`EXPORT_FORMATS`; for ``onnx``, a ``precision`` (OpenVINO's) and ``int8``
    (ONNX Runtime's INT8) without calibration data; for ``openvino``, ``int8`` (use ``precision="int8"``), a
    ``precision`` not in ``f32``, ``bf16``, ``int8``, precision ``int8`` without calibration data, or an ``out``
    that does not end in ``.xml``; an ``opset`` the exporter does not write (:func:`check_opset`); an
    ``input_size`` that is not two integers >= 1.

    Raises:
        ExportError: naming the argument (as the command line spells it).
    """
    from seldepth.models.openvino_model import OPENVINO_PRECISIONS  # a constant: openvino itself is not imported

    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; available: {', '.join(EXPORT_FORMATS)}")
    if fmt == "best":
        if not data:
            raise ExportError("--format best needs --data DATA_SPEC (the RMSE of each path is measured on it)")
        if precision is not None or int8:
            raise ExportError("--format best chooses the precision itself; leave out --precision and --int8")
    elif fmt == "onnx":
        if precision is not None:
            raise ExportError(f"--precision {precision} is for --format openvino (f32, bf16, int8); an ONNX export is "
                              f"FP32, or INT8 with --int8")
        if int8 and not calibration:
            raise ExportError("--int8 needs --calibration DATA_SPEC (images to calibrate the activation ranges)")
    else:
        if int8:
            raise ExportError("--int8 is ONNX Runtime's INT8 (--format onnx); with --format openvino use --precision int8")
        if precision is not None and precision not in OPENVINO_PRECISIONS:
            raise ExportError(f"--precision must be one of {', '.join(OPENVINO_PRECISIONS)} with --format openvino, "
                              f"got {precision!r}")
        if precision == "int8" and not calibration:
            raise ExportError("--precision int8 needs --calibration DATA_SPEC (images to calibrate the activation ranges)")
        if out is not None and Path(out).suffix != ".xml":
            raise ExportError(f"--out {out}: an OpenVINO IR is an .xml file (its weights go beside it as .bin); "
                              f"name it NAME.xml")
    check_opset(opset)
    if input_size is not None:
        check_input_size(input_size)


def supported_opsets() -> tuple[int, int]:
    """The lowest and highest ONNX opsets (of the default ``ai.onnx`` domain) the installed exporter writes.

    torch's dynamo exporter builds every graph at the opset of its op library (torchlib: 18 in torch 2.5 to
    2.13) and converts it to the requested one. Conversion up works; conversion down fails for our models
    (torch says it "may not be successful") and then the file silently keeps opset 18, so 18 is the lowest.
    The highest is the newest that both torch (``ONNX_MAX_OPSET``) and the installed onnx package know.
    Neither bound is public API in torch: the fallbacks are torch 2.13's values.
    """
    import onnx

    try:
        from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as low
    except ImportError:
        low = 18
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET as high
    except ImportError:
        high = 23
    return int(low), int(min(high, onnx.defs.onnx_opset_version()))


def check_opset(opset: int | None) -> int | None:
    """``opset`` when the installed exporter writes it (:func:`supported_opsets`) or None (the exporter's default).

    Raises:
        ExportError: naming ``opset`` and the range.
    """
    if opset is None:
        return None
    low, high = supported_opsets()
    try:
        return check_number("opset", opset, low, high, integer=True)
    except ValueError as exc:
        raise ExportError(f"{exc} (torch {torch.__version__}'s ONNX exporter builds opset {low} graphs and converts "
                          f"them up to {high}, not down; null: the exporter's default)") from None


def check_input_size(input_size) -> tuple[int, int]:
    """``(h, w)`` of two integers >= 1, or an :class:`ExportError` naming ``input_size``."""
    try:
        return check_size("input_size", input_size)
    except ValueError as exc:
        raise ExportError(str(exc)) from None


def save_onnx_atomic(proto, path: Path) -> None:
    onnx = require("onnx")

    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp))
        os.chmod(tmp, 0o644)


def quiet_exporters():
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


def _preprocessing_of(model) -> Preprocessing:
    return getattr(model, "preprocessing", None) or Preprocessing()


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, input_size: tuple[int, int] | None = None,
                dynamic: bool = False, opset: int | None = None, check_images: list[torch.Tensor] | None = None,
                source: str | os.PathLike | None = None, verbose: bool = False, progress=None) -> dict:
    """Export a depth model to ONNX with the dynamo exporter and check it against torch with ONNX Runtime.

    Args:
        model: a :class:`~seldepth.models.base.DepthModel` (e.g. from ``load_model``; its
            ``preprocessing`` and ``metadata`` are recorded).
        path: output ``.onnx`` file (written atomically).
        input_size: (h, w) of the network input; default ``model.preprocessing.input_size``.
        dynamic: make batch, height and width dynamic. Height and width then must be multiples
            of ``model.size_multiple`` (64 for METER: its internal padding to 64 does not
            export with symbolic sizes); :class:`~seldepth.models.onnx_model.OnnxDepthModel` pads
            other sizes itself, as METER's ``forward`` does. Otherwise all sizes are fixed (batch 1).
        opset: ONNX opset, within :func:`supported_opsets` (default the exporter's); the file written has exactly it.
        check_images: optional (3, H, W) RGB images in [0, 1]; preprocessed and checked too.
        source: the model file the model came from (recorded in the provenance).
        progress: optional ``progress(message)`` called as each step starts (exporting, checking).

    Returns:
        ``{"path", "max_abs_diff_m", "checked_inputs", "input_size", "dynamic", "opset"}``.

    Raises:
        ExportError: a bad ``opset`` or ``input_size`` (before any work), the exporter wrote another opset than
            ``opset``, or the ONNX output differs from torch by more than 1e-4 m; nothing is written then.
    """
    onnx = require("onnx")  # optional parts, imported when an export is made
    require("onnxscript")

    path = Path(path)
    prep = _preprocessing_of(model)
    check_opset(opset)
    size = check_input_size(input_size if input_size is not None else (prep.input_size or (192, 256)))
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
            if progress:
                progress(f"exporting {getattr(model, 'name', '') or type(model).__name__} to ONNX "
                         f"({'dynamic' if dynamic else 'x'.join(map(str, size))} input, torch.export) ...")
            with (contextlib.nullcontext() if verbose else quiet_exporters()):
                torch.onnx.export(model, (example,), str(candidate), **kwargs)
            proto = onnx.load(str(candidate))
            written = _opset_of(proto)
            if opset is not None and written != int(opset):
                raise ExportError(f"opset: asked for opset {opset}, but torch {torch.__version__}'s exporter wrote opset "
                                  f"{written} (it could not convert this model); not written to {path}")
            if progress:
                progress(f"checking the ONNX graph against torch with ONNX Runtime on {len(inputs)} inputs ...")
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
        **({"intrinsics": json.dumps(meta["intrinsics"])} if meta.get("intrinsics") else {}),
    })
    opset_used = _opset_of(proto)
    save_onnx_atomic(proto, path)
    return {"path": str(path), "max_abs_diff_m": diff, "checked_inputs": len(inputs), "input_size": list(size),
            "dynamic": dynamic, "opset": opset_used}


def _opset_of(proto) -> int | None:
    """The version of the default (``ai.onnx``) opset an ONNX model imports."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


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
