"""Choosing the inference path: the fastest within an accuracy budget, never slower than ONNX Runtime FP32.

:func:`pick_backend` works on the latency and RMSE that :func:`seldepth.deploy.bench.benchmark` recorded:
a path is eligible when it ran, when its RMSE on the benchmark data is at most ``1 + max_rmse_increase``
times ORT FP32's, and when it is not slower than ORT FP32; the eligible path with the lowest p50 latency
is chosen. ORT FP32 itself is always eligible, so a machine where OpenVINO fails or INT8 is slow still
gets a pick.

Example:
    >>> pick_backend({"ort_fp32": {"p50": 3.1}, "ov_bf16": {"p50": 1.8}}, {"ort_fp32": 0.56, "ov_bf16": 0.562})
    {'backend': 'ov_bf16', ...}
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from seldepth.atomic import atomic_path
from seldepth.defaults import DEFAULT_MAX_RMSE_INCREASE, check_number

PICKABLE = ("ort_fp32", "ort_int8", "ov_fp32", "ov_bf16", "ov_int8")  # paths that give a file to deploy
REFERENCE = "ort_fp32"


def pick_backend(latency_ms: dict, rmse: dict, max_rmse_increase: float = DEFAULT_MAX_RMSE_INCREASE) -> dict:
    """The fastest path of :data:`PICKABLE` within the RMSE budget and no slower than ORT FP32.

    Args:
        latency_ms: ``{backend: {"p50": ms, ...}}``; a backend without ``p50`` (an error, skipped) did not run.
        rmse: ``{backend: RMSE in metres}`` on the benchmark data.
        max_rmse_increase: the RMSE a path may add, relative to ORT FP32's (0.01: 1%).

    Returns:
        ``{"backend", "p50", "rmse", "rmse_increase", "speedup" (ORT FP32 p50 / the pick's), "max_rmse_increase",
        "rejected": {backend: why}}``.

    Raises:
        ValueError: ``max_rmse_increase`` not a finite number >= 0; ORT FP32 without a latency or an RMSE (the
            reference the budget and the speed are measured against).
    """
    check_number("max_rmse_increase", max_rmse_increase, 0)
    reference = latency_ms.get(REFERENCE, {})
    if "p50" not in reference:
        raise ValueError(f"pick: {REFERENCE} did not run ({reference.get('error') or reference.get('skipped') or 'no latency'}): "
                         "it is the reference of the pick")
    if not _finite(rmse.get(REFERENCE)):
        raise ValueError(f"pick: no RMSE of {REFERENCE}; the pick needs the RMSE of each path on benchmark data")
    base_p50, base_rmse = float(reference["p50"]), float(rmse[REFERENCE])
    rejected: dict[str, str] = {}
    best = REFERENCE
    for name in PICKABLE:
        entry = latency_ms.get(name, {})
        if "p50" not in entry:
            rejected[name] = f"did not run ({entry.get('error') or entry.get('skipped') or 'not timed'})"
            continue
        if not _finite(rmse.get(name)):
            rejected[name] = "no RMSE"
            continue
        increase = float(rmse[name]) / base_rmse - 1 if base_rmse > 0 else 0.0
        if increase > max_rmse_increase:
            rejected[name] = f"RMSE {100 * increase:+.2f}%, over the {100 * max_rmse_increase:g}% budget"
        elif entry["p50"] > base_p50:
            rejected[name] = f"slower than {REFERENCE} ({entry['p50']:.2f} vs {base_p50:.2f} ms)"
        elif entry["p50"] < latency_ms[best]["p50"]:
            best = name
    for name in PICKABLE:  # the faster eligible paths that lost to the pick
        if name not in rejected and name != best:
            rejected[name] = f"eligible, slower than {best}"
    p50, chosen_rmse = float(latency_ms[best]["p50"]), float(rmse[best])
    return {"backend": best, "p50": p50, "rmse": chosen_rmse,
            "rmse_increase": chosen_rmse / base_rmse - 1 if base_rmse > 0 else 0.0,
            "speedup": base_p50 / p50, "max_rmse_increase": float(max_rmse_increase), "rejected": rejected}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def picked_path(out: str | os.PathLike, backend: str) -> Path:
    """Where the pick is written: ``out`` with the suffix of the chosen path's file (``.onnx``; OpenVINO ``.xml``)."""
    out = Path(out)
    return out.with_suffix(".xml" if backend.startswith("ov_") else ".onnx")


def save_picked(files: dict, pick: dict, out: str | os.PathLike) -> list[Path]:
    """Copy the file of the picked path (``files[pick["backend"]]``, and an OpenVINO file's ``.bin``) to
    :func:`picked_path` of ``out``, each atomically.

    Returns:
        The files written.
    """
    source = Path(files[pick["backend"]])
    target = picked_path(out, pick["backend"])
    target.parent.mkdir(parents=True, exist_ok=True)
    pairs = [(source, target)]
    if source.suffix == ".xml":
        pairs.append((source.with_suffix(".bin"), target.with_suffix(".bin")))
    for src, dst in reversed(pairs):  # the .bin first: an .xml is never there without its weights
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return [dst for _, dst in pairs]

