"""Size, cost and CPU latency of a depth model: eager torch, torch.compile, ONNX Runtime FP32 and INT8, side by side.

All backends run in one process on the same input, in alternating blocks: each round runs every
backend in turn for a block of ``BLOCK`` timed calls, after a pause of ``SETTLE_S`` and one
untimed call. Alternating keeps slow drifts of the machine fair to all; the pause lets the
previous backend's thread pool stop spinning (torch's OpenMP threads busy-wait for a while after
each call and took CPU from the next block: call-by-call interleaving made eager torch look 3x
slower than it is alone, and without the pause ONNX Runtime INT8 measured 1.02x FP32 where each
alone measures 0.75x). torch uses
``torch.set_num_threads(threads)`` and ONNX Runtime ``intra_op_num_threads = threads``.

Example:
    >>> result = benchmark("meter_xxs_nyu.safetensors", size=(192, 256), threads=2)
    >>> print(format_benchmark(result))
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from seldepth.data.spec import open_dataset
from seldepth.deploy.onnx_export import export_onnx
from seldepth.deploy.quantize import quantize_int8
from seldepth.models.base import with_head
from seldepth.models.model_file import load_model
from seldepth.models.onnx_model import OnnxDepthModel

BACKENDS = ("eager", "compile", "ort_fp32", "ort_int8")
FLOPS_NOTE = "FLOPs = 2 x multiply-adds (torch.utils.flop_counter; element-wise ops not counted)"


class BenchmarkError(ValueError):
    """A bad benchmark request (size, threads, runs, model file)."""


BLOCK = 10  # timed calls per backend in a row (see the module docstring)
SETTLE_S = 0.25  # pause before each block, for the previous backend's threads to go idle

def parse_size(text: str) -> tuple[int, int]:
    """``"192x256"`` -> (192, 256) (height x width)."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise BenchmarkError(f"--size must be HxW with two positive integers, e.g. 192x256; got {text!r}") from None
    if h < 1 or w < 1:
        raise BenchmarkError(f"--size must be HxW with two positive integers, e.g. 192x256; got {text!r}")
    return h, w


def check_benchmark_args(model_path, size, threads: int, runs: int, warmup: int) -> None:
    """Fail before any work on arguments that cannot be benchmarked."""
    if Path(model_path).suffix == ".onnx":
        raise BenchmarkError(f"{model_path}: bench takes a torch model file (.safetensors or .ckpt) and exports ONNX itself")
    if len(tuple(size)) != 2 or min(size) < 1:
        raise BenchmarkError(f"size must be (height, width) with positive sides, got {size}")
    if threads < 1 or runs < 1 or warmup < 0:
        raise BenchmarkError(f"threads and runs must be >= 1 and warmup >= 0; got threads={threads}, runs={runs}, warmup={warmup}")


class _Timeout(Exception):
    pass


def _with_time_budget(fn, seconds: float):
    """Run ``fn()``; raise :class:`_Timeout` after ``seconds`` (SIGALRM, main thread only; else no budget)."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        return fn()

    def handler(signum, frame):
        raise _Timeout(f"over the {seconds:g} s budget")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def time_calls(calls: dict, runs: int, warmup: int) -> dict:
    """p50 / p90 latency (ms) of each zero-argument call, in alternating blocks (see the module docstring).

    Returns:
        ``{name: {"p50": ms, "p90": ms}}``.
    """
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    times = {name: [] for name in calls}
    while len(next(iter(times.values()))) < runs:
        for name, fn in calls.items():
            time.sleep(SETTLE_S)  # the previous backend's threads stop spinning
            fn()  # untimed: wakes this backend's threads
            for _ in range(min(BLOCK, runs - len(times[name]))):
                start = time.perf_counter()
                fn()
                times[name].append(1000.0 * (time.perf_counter() - start))
    return {name: {"p50": float(np.percentile(t, 50)), "p90": float(np.percentile(t, 90))} for name, t in times.items()}


def benchmark(model_path: str | os.PathLike, size: tuple[int, int] = (192, 256), threads: int = 2, runs: int = 50,
              warmup: int = 10, int8_calibration: str | None = None, int8_images: int = 16, compile: bool = True,
              compile_budget_s: float = 180.0, work_dir: str | os.PathLike | None = None, progress: bool = False,
              head: str | None = None) -> dict:
    """Parameters, FLOPs and batch-1 latency (p50 / p90, ms) of a model under each backend.

    Args:
        model_path: a torch model file (``.safetensors``) or training checkpoint (``.ckpt``).
        size: (h, w) of the network input.
        threads: torch threads and ONNX Runtime intra-op threads.
        runs: timed calls per backend (in alternating blocks across backends).
        warmup: untimed calls per backend first.
        int8_calibration: data spec of calibration images; None skips ORT INT8.
        int8_images: calibration images used.
        compile: also time ``torch.compile`` (its first call must finish within ``compile_budget_s``).
        work_dir: where the ONNX files go (default a temporary folder, removed afterwards).
        head: output head of a multi-head model (``realtime_depth``: L, M, S, XS); None: the model as saved.

    Returns:
        ``{"model", "architecture", "size", "threads", "runs", "warmup", "parameters", "flops", "flops_note",
        "latency_ms": {backend: {"p50", "p90"} or {"error"}}, "ratios", "onnx": {...}}``; backends
        ``eager``, ``compile``, ``ort_fp32``, ``ort_int8`` (absent ones have an ``error`` or ``skipped``).
    """
    size = tuple(int(v) for v in size)
    check_benchmark_args(model_path, size, threads, runs, warmup)
    log = print if progress else (lambda *a, **k: None)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory()
        work_dir = tmp.name
    work_dir = Path(work_dir)
    try:
        model = with_head(load_model(model_path), head)
        result = {"model": str(model_path), "architecture": getattr(model, "name", ""), "head": head, "size": list(size),
                  "threads": threads, "runs": runs, "warmup": warmup, "batch": 1,
                  "parameters": int(model.num_parameters()), "flops": int(model.flops(*size)), "flops_note": FLOPS_NOTE,
                  "latency_ms": {}, "onnx": {}}
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        calls = {}

        def eager():
            with torch.inference_mode():
                return model(x)

        calls["eager"] = eager
        if compile:
            log("torch.compile ...")
            try:
                compiled = torch.compile(model)

                def compiled_call():
                    with torch.inference_mode():
                        return compiled(x)

                start = time.perf_counter()
                _with_time_budget(compiled_call, compile_budget_s)
                result["compile_first_call_s"] = round(time.perf_counter() - start, 1)
                calls["compile"] = compiled_call
            except (Exception, _Timeout) as exc:  # compile failures come in many types; report and go on
                result["latency_ms"]["compile"] = {"error": _short(exc)}
        else:
            result["latency_ms"]["compile"] = {"skipped": "compile=False"}

        log("ONNX export ...")
        fp32_path = work_dir / f"{Path(model_path).stem}_{size[0]}x{size[1]}.onnx"
        try:
            info = export_onnx(model, fp32_path, input_size=size, source=model_path)
            result["onnx"]["fp32_max_abs_diff_m"] = info["max_abs_diff_m"]
            fp32 = OnnxDepthModel(fp32_path, threads=threads)
            calls["ort_fp32"] = lambda: fp32(x)
        except Exception as exc:
            result["latency_ms"]["ort_fp32"] = {"error": _short(exc)}
            fp32_path = None
        if int8_calibration and fp32_path is not None:
            log("INT8 quantisation ...")
            try:
                dataset = open_dataset(int8_calibration, split="test", key="--calibration")
                q = quantize_int8(fp32_path, fp32_path.with_name(fp32_path.stem + "_int8.onnx"), dataset, num_images=int8_images)
                result["onnx"]["int8_max_abs_diff_m"] = q["max_abs_diff_m"]
                result["onnx"]["int8_mean_abs_diff_m"] = q["mean_abs_diff_m"]
                result["onnx"]["int8_settings"] = {k: v for k, v in q["settings"].items() if k != "nodes_excluded"}
                int8 = OnnxDepthModel(q["path"], threads=threads)
                calls["ort_int8"] = lambda: int8(x)
            except ValueError:
                raise
            except Exception as exc:
                result["latency_ms"]["ort_int8"] = {"error": _short(exc)}
        elif not int8_calibration:
            result["latency_ms"]["ort_int8"] = {"skipped": "no calibration data (--calibration)"}

        log(f"timing {', '.join(calls)}: {warmup} warm-up + {runs} runs each, in alternating blocks of {BLOCK} ...")
        result["latency_ms"].update(time_calls(calls, runs, warmup))
        lat = result["latency_ms"]
        if "p50" in lat.get("eager", {}):
            result["ratios"] = {f"eager/{name}": lat["eager"]["p50"] / v["p50"] for name, v in lat.items()
                                if name != "eager" and "p50" in v}
        if "p50" in lat.get("ort_fp32", {}) and "p50" in lat.get("ort_int8", {}):
            result.setdefault("ratios", {})["ort_int8/ort_fp32"] = lat["ort_int8"]["p50"] / lat["ort_fp32"]["p50"]
        result["latency_ms"] = {name: lat[name] for name in BACKENDS if name in lat}
        return result
    finally:
        torch.set_num_threads(before)
        if tmp is not None:
            tmp.cleanup()


def format_benchmark(result: dict) -> str:
    """A plain-text table of :func:`benchmark`'s result."""
    h, w = result["size"]
    lines = [f"{result['architecture']} ({result['model']}), batch 1, {h}x{w}, {result['threads']} threads, "
             f"{result['runs']} runs after {result['warmup']} warm-up, in alternating blocks of {BLOCK}",
             f"parameters {result['parameters']:,}   {result['flops'] / 1e9:.3f} GFLOPs ({FLOPS_NOTE})",
             f"{'backend':<10} {'p50 ms':>9} {'p90 ms':>9} {'vs eager':>9}"]
    eager = result["latency_ms"].get("eager", {}).get("p50")
    for name, v in result["latency_ms"].items():
        if "p50" in v:
            speed = f"{eager / v['p50']:8.2f}x" if eager else ""
            lines.append(f"{name:<10} {v['p50']:9.2f} {v['p90']:9.2f} {speed:>9}")
        else:
            lines.append(f"{name:<10} {'-':>9} {'-':>9}   {v.get('error') or v.get('skipped')}")
    onnx = result.get("onnx", {})
    if "fp32_max_abs_diff_m" in onnx:
        lines.append(f"ORT FP32 vs torch: max abs diff {onnx['fp32_max_abs_diff_m']:.2e} m")
    if "int8_max_abs_diff_m" in onnx:
        lines.append(f"ORT INT8 vs FP32 on the calibration images: max abs diff {onnx['int8_max_abs_diff_m']:.3f} m, "
                     f"mean {onnx['int8_mean_abs_diff_m']:.3f} m")
    if "ort_int8/ort_fp32" in result.get("ratios", {}):
        lines.append(f"INT8 / FP32 latency: {result['ratios']['ort_int8/ort_fp32']:.2f}")
    return "\n".join(lines)
