"""Size, cost, CPU latency and accuracy of a depth model under each backend, side by side: eager torch,
torch.compile, ONNX Runtime FP32 and INT8, OpenVINO FP32, BF16 and INT8.

All backends run in one process on the same input, in alternating blocks: each round runs every
backend in turn for a block of ``BLOCK`` timed calls, after a pause of ``SETTLE_S`` and one
untimed call. Alternating keeps slow drifts of the machine fair to all; the pause lets the
previous backend's thread pool stop spinning (torch's OpenMP threads busy-wait for a while after
each call and took CPU from the next block: call-by-call interleaving made eager torch look 3x
slower than it is alone, and without the pause ONNX Runtime INT8 measured 1.02x FP32 where each
alone measures 0.75x). torch uses
``torch.set_num_threads(threads)``, ONNX Runtime ``intra_op_num_threads = threads`` and OpenVINO
``INFERENCE_NUM_THREADS = threads``. With data, each path's RMSE is measured too, and
:func:`seldepth.deploy.pick.pick_backend` chooses the fastest within an RMSE budget.

Example:
    >>> result = benchmark("meter_xxs_nyu.safetensors", size=(192, 256), threads=2)
    >>> print(format_benchmark(result))
"""

from __future__ import annotations

import copy
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from seldepth.atomic import write_json_atomic
from seldepth.data.spec import cache_dir, open_dataset
from seldepth.data.synthetic.writer import parse_size as _parse_size
from seldepth.defaults import (DEFAULT_CALIBRATION_IMAGES, DEFAULT_COMPILE_BUDGET_S, DEFAULT_RUNS, DEFAULT_SIZE,
                               DEFAULT_MAX_RMSE_INCREASE, DEFAULT_THREADS, DEFAULT_WARMUP, MissingExtraError,
                               check_number, check_size, require)
from seldepth.deploy.cpu import cpu_features, describe_cpu
from seldepth.deploy.onnx_export import export_onnx
from seldepth.deploy.openvino_export import export_openvino
from seldepth.deploy.pick import pick_backend, save_picked
from seldepth.deploy.probe import export_in_child
from seldepth.deploy.quantize import check_calibration_images, quantize_int8
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol, protocol_for_data
from seldepth.models import create_model
from seldepth.models.base import with_head
from seldepth.models.devices import resolve_device
from seldepth.models.loading import load_model, resolve_model_file
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.models.openvino_model import OpenVinoDepthModel

OPENVINO_BACKENDS = ("ov_fp32", "ov_bf16", "ov_int8")
BACKENDS = ("eager", "compile", "ort_fp32", "ort_int8", *OPENVINO_BACKENDS)
FLOPS_NOTE = "FLOPs = 2 x multiply-adds (torch.utils.flop_counter; element-wise ops not counted)"


class BenchmarkError(ValueError):
    """A bad benchmark request (size, threads, runs, model file)."""


BLOCK = 10  # timed calls per backend in a row (see the module docstring)
SETTLE_S = 0.25  # pause before each block, for the previous backend's threads to go idle

def parse_size(text: str, key: str = "--size") -> tuple[int, int]:
    """``"192x256"`` -> (192, 256) (height x width): :func:`seldepth.data.synthetic.parse_size`, as a
    :class:`BenchmarkError`."""
    try:
        return _parse_size(text, key=key)
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None


def model_costs(name: str, size: tuple[int, int] = DEFAULT_SIZE, options: dict | None = None,
                cache: bool = True, progress: bool = False) -> dict:
    """Parameters and FLOPs of registered model ``name`` (built with ``options``) on a (1, 3, H, W) input.

    The model is built on the ``meta`` device (no weights allocated). FLOP counts are cached in
    ``cache_dir()/flops.json`` (:func:`seldepth.data.spec.cache_dir`), keyed by architecture, config, size and
    torch version, so that listing the models a second time costs no forward passes. ``progress`` says on
    stderr when a count starts (seconds per model).

    Returns:
        ``{"name", "parameters", "flops", "size", "cached"}`` (``cached``: the FLOPs came from the cache).
    """
    with torch.device("meta"):  # structure only: counting needs shapes, not values
        model = create_model(name, **(options or {}))
    config = model.config_dict() if hasattr(model, "config_dict") else {}
    key = json.dumps([name, config, list(size), torch.__version__], sort_keys=True, default=str)
    path = cache_dir() / "flops.json"
    table = {}
    if cache and path.is_file():
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}  # a damaged cache is counted again and rewritten
    cached = key in table
    if not cached:
        if progress:
            print(f"counting the FLOPs of {name} at {size[0]}x{size[1]} (once: cached in {path}) ...", file=sys.stderr,
                  flush=True)
        table[key] = int(model.flops(*size))
        if cache:
            try:
                write_json_atomic(path, table)
            except OSError:
                pass  # a read-only cache folder: count again next time
    return {"name": name, "parameters": int(model.num_parameters()), "flops": int(table[key]), "size": list(size),
            "cached": cached}


def check_benchmark_args(model_path, size, threads: int, runs: int, warmup: int,
                         int8_images: int = DEFAULT_CALIBRATION_IMAGES,
                         compile_budget_s: float | None = DEFAULT_COMPILE_BUDGET_S) -> None:
    """Fail before any work on arguments that cannot be benchmarked; each error names the argument.

    Nothing is clamped or replaced: ``size`` is two integers >= 1, ``threads`` and ``runs`` integers >= 1,
    ``warmup`` an integer >= 0, ``int8_images`` an integer >= 1, ``compile_budget_s`` a finite number of
    seconds > 0 or None (no budget).
    """
    if Path(model_path).suffix in (".onnx", ".xml"):
        raise BenchmarkError(f"{model_path}: bench takes a torch model file (.safetensors or .ckpt) or a pretrained "
                             f"model's name, and exports ONNX and OpenVINO itself")
    try:
        check_size("size", size)
        check_number("threads", threads, 1, integer=True)
        check_number("runs", runs, 1, integer=True)
        check_number("warmup", warmup, 0, integer=True)
        check_number("int8_images", int8_images, 1, integer=True)
        check_number("compile_budget_s", compile_budget_s, 0, low_open=True, optional=True)
    except ValueError as exc:
        raise BenchmarkError(str(exc)) from None


class _Timeout(Exception):
    pass


def _with_time_budget(fn, seconds: float):
    """Run ``fn()``; raise :class:`_Timeout` after ``seconds`` (SIGALRM, main thread only; None or elsewhere: no budget)."""
    if seconds is None or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
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


def benchmark(model_path: str | os.PathLike, size: tuple[int, int] = DEFAULT_SIZE, threads: int = DEFAULT_THREADS,
              runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP, int8_calibration: str | None = None,
              int8_images: int = DEFAULT_CALIBRATION_IMAGES, compile: bool = True,
              compile_budget_s: float = DEFAULT_COMPILE_BUDGET_S, work_dir: str | os.PathLike | None = None,
              progress: bool = False, head: str | None = None, device: str | torch.device = "cpu",
              allow_unverified: bool = False, data: str | None = None, openvino: bool = True,
              probe: bool = True) -> dict:
    """Parameters, FLOPs, batch-1 latency (p50 / p90, ms) and, with ``data``, the RMSE of a model under each backend.

    Backends: ``eager`` and ``compile`` (torch), ``ort_fp32`` and ``ort_int8`` (ONNX Runtime), ``ov_fp32``,
    ``ov_bf16`` and ``ov_int8`` (OpenVINO, from the same checked FP32 ONNX export). A backend that cannot be
    built or run is recorded with an ``error`` (OpenVINO missing, a compile failure, a crash on a CPU it does
    not support: each OpenVINO file is first run once in a child process, see :mod:`seldepth.deploy.probe`)
    and the others go on; ONNX Runtime FP32 is the fallback.

    Args:
        model_path: a torch model file (``.safetensors``) or training checkpoint (``.ckpt``), or a pretrained
            model's name (:func:`~seldepth.models.pretrained.list_pretrained`; downloaded on first use).
        size: (h, w) of the network input.
        threads: torch threads, ONNX Runtime intra-op threads and OpenVINO inference threads.
        runs: timed calls per backend (in alternating blocks across backends).
        warmup: untimed calls per backend first.
        int8_calibration: data spec of calibration images; None: ``data``, and without it no INT8 paths.
        int8_images: calibration images used.
        compile: also time ``torch.compile`` (its first call must finish within ``compile_budget_s`` seconds,
            > 0; None: no budget).
        work_dir: where the ONNX and OpenVINO files go (default a temporary folder, removed afterwards);
            ``result["files"]`` names them.
        head: output head of a multi-head model (``realtime_depth``: L, M, S, XS); None: the model as saved.
        device: where the torch backends (eager, compile) run: ``cpu``, ``cuda[:N]``, ``mps`` or ``auto``
            (:func:`~seldepth.models.devices.resolve_device`); ONNX Runtime and OpenVINO run on the CPU.
        allow_unverified: download a pretrained model whose checksum is not known.
        data: data spec on which each backend's RMSE is measured (the protocol from the data's kind, else the
            model's; the network input must be the model's own size); None: no RMSE.
        openvino: also build and time the OpenVINO paths (the ``openvino`` extra).
        probe: convert and first run each OpenVINO file in a child process (a crash there is a note).

    Returns:
        ``{"model", "architecture", "device", "size", "threads", "runs", "warmup", "parameters", "flops", "flops_note",
        "cpu", "latency_ms": {backend: {"p50", "p90"} or {"error"} or {"skipped"}}, "rmse": {backend: m},
        "protocol", "data", "ratios", "onnx": {...}, "openvino": {...}, "files": {backend: path}, "notes": [...]}``.
    """
    check_benchmark_args(model_path, size, threads, runs, warmup, int8_images, compile_budget_s)
    model_file = resolve_model_file(model_path, allow_unverified=allow_unverified)  # a name: its cached model file
    size = tuple(int(v) for v in size)
    calibration = dataset = None
    if data:  # opened (and its layout checked) before any timing
        dataset = open_dataset(data, split="test", key="--data")
    if int8_calibration or data:
        calibration = (open_dataset(int8_calibration, split="test", key="--calibration") if int8_calibration
                       else dataset)
        check_calibration_images(int8_images, calibration)
    device = resolve_device(device)
    log = print if progress else (lambda *a, **k: None)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory()
        work_dir = tmp.name
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        model = with_head(load_model(model_file), head)
        if dataset is not None and tuple(model.preprocessing.input_size or size) != size:
            raise BenchmarkError(f"data: the RMSE needs the model's own input size "
                                 f"{'x'.join(map(str, model.preprocessing.input_size))}; size is {size[0]}x{size[1]}")
        result = {"model": str(model_path), "architecture": getattr(model, "name", ""), "head": head,
                  "device": str(device), "size": list(size),
                  "threads": threads, "runs": runs, "warmup": warmup, "batch": 1,
                  "parameters": int(model.num_parameters()), "flops": int(model.flops(*size)), "flops_note": FLOPS_NOTE,
                  "cpu": cpu_features(), "latency_ms": {}, "rmse": {}, "onnx": {}, "openvino": {}, "files": {},
                  "notes": []}
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        calls, models = {}, {"eager": model}
        # the torch backends run on ``device``; the ONNX export below reads the CPU model
        torch_model = model if device.type == "cpu" else copy.deepcopy(model).to(device)
        x_torch = x.to(device)

        def sync(out):
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # kernels run asynchronously: time them to their end
            elif device.type == "mps":
                torch.mps.synchronize()
            return out

        def eager():
            with torch.inference_mode():
                return sync(torch_model(x_torch))

        calls["eager"] = eager
        if compile:
            log("torch.compile ...")
            try:
                compiled = torch.compile(torch_model)

                def compiled_call():
                    with torch.inference_mode():
                        return sync(compiled(x_torch))

                start = time.perf_counter()
                _with_time_budget(compiled_call, compile_budget_s)
                result["compile_first_call_s"] = round(time.perf_counter() - start, 1)
                calls["compile"] = compiled_call
            except (Exception, _Timeout) as exc:  # compile failures come in many types; report and go on
                result["latency_ms"]["compile"] = {"error": _short(exc)}
        else:
            result["latency_ms"]["compile"] = {"skipped": "compile=False"}

        fp32_path = _onnx_paths(model, model_path, size, threads, work_dir, calibration, int8_images, log, result,
                                models)
        if not openvino:
            for name in OPENVINO_BACKENDS:
                result["latency_ms"][name] = {"skipped": "openvino=False"}
        elif fp32_path is not None:
            _openvino_paths(fp32_path, size, threads, work_dir, calibration, int8_calibration or data, int8_images, probe,
                            log, result, models)
        for name, m in models.items():
            if name != "eager":
                calls[name] = (lambda m=m: m(x))

        log(f"timing {', '.join(calls)}: {warmup} warm-up + {runs} runs each, in alternating blocks of {BLOCK} ...")
        result["latency_ms"].update(time_calls(calls, runs, warmup))
        if dataset is not None:
            protocol_name, reason = protocol_for_data(data, model)
            protocol = get_protocol(protocol_name)
            result["protocol"], result["data"] = protocol_name, str(data)
            log(f"RMSE of each path on {data} ({len(dataset)} images, protocol {protocol_name}: {reason}) ...")
            for name, m in models.items():
                result["rmse"][name] = float(evaluate(m, dataset, protocol, progress=False)["metrics"]["rmse"])
        lat = result["latency_ms"]
        if "p50" in lat.get("eager", {}):
            result["ratios"] = {f"eager/{name}": lat["eager"]["p50"] / v["p50"] for name, v in lat.items()
                                if name != "eager" and "p50" in v}
        if "p50" in lat.get("ort_fp32", {}):
            for name in ("ort_int8", *OPENVINO_BACKENDS):
                if "p50" in lat.get(name, {}):
                    result.setdefault("ratios", {})[f"{name}/ort_fp32"] = lat[name]["p50"] / lat["ort_fp32"]["p50"]
        result["latency_ms"] = {name: lat[name] for name in BACKENDS if name in lat}
        return result
    finally:
        torch.set_num_threads(before)
        if tmp is not None:
            tmp.cleanup()


def benchmark_and_pick(model_path: str | os.PathLike, out: str | os.PathLike, data: str,
                       max_rmse_increase: float = DEFAULT_MAX_RMSE_INCREASE, **options) -> dict:
    """:func:`benchmark` every path on ``data``, pick the fastest within the RMSE budget and no slower than ORT FP32
    (:func:`~seldepth.deploy.pick.pick_backend`), and write its file to ``out`` (``.onnx``, or ``.xml`` + ``.bin``
    for OpenVINO: :func:`~seldepth.deploy.pick.picked_path`).

    Args:
        model_path, options: as :func:`benchmark` (not ``work_dir``, ``data``).
        out: the file to write; its suffix is the picked path's.
        data: data spec of the RMSE (and, without ``int8_calibration``, of the INT8 calibration).
        max_rmse_increase: the RMSE a path may add to ORT FP32's (0.01: 1%).

    Returns:
        :func:`benchmark`'s result with ``pick`` (the choice, why the others were not chosen) and ``written``.

    Raises:
        ValueError: naming the argument, for no ``data`` or a bad ``max_rmse_increase``, before any work.
    """
    if not data:
        raise BenchmarkError("data: the pick needs data on which the RMSE of each path is measured (e.g. nyu:PATH)")
    check_number("max_rmse_increase", max_rmse_increase, 0)
    with tempfile.TemporaryDirectory() as work_dir:
        result = benchmark(model_path, data=data, work_dir=work_dir, **options)
        result["pick"] = pick_backend(result["latency_ms"], result["rmse"], max_rmse_increase)
        result["written"] = [str(p) for p in save_picked(result["files"], result["pick"], out)]
    return result


def format_pick(result: dict) -> str:
    """What :func:`benchmark_and_pick` chose, and why not the others."""
    pick = result["pick"]
    lines = [f"pick: {pick['backend']}, {pick['p50']:.2f} ms p50 ({pick['speedup']:.2f}x ORT FP32), RMSE "
             f"{pick['rmse']:.4f} m ({100 * pick['rmse_increase']:+.2f}%; budget {100 * pick['max_rmse_increase']:g}%)"]
    lines += [f"  not {name}: {why}" for name, why in pick["rejected"].items()]
    lines.append(f"wrote {', '.join(result['written'])}")
    return "\n".join(lines)


def _onnx_paths(model, model_path, size, threads, work_dir: Path, calibration, int8_images, log, result: dict,
                models: dict) -> Path | None:
    """Export the checked FP32 ONNX file and, with calibration data, the ORT INT8 one; add their models."""
    log("ONNX export ...")
    fp32_path = work_dir / f"{Path(model_path).stem}_{size[0]}x{size[1]}.onnx"
    try:
        info = export_onnx(model, fp32_path, input_size=size, source=model_path)
        result["onnx"]["fp32_max_abs_diff_m"] = info["max_abs_diff_m"]
        models["ort_fp32"] = OnnxDepthModel(fp32_path, threads=threads, spinning=True)
        result["files"]["ort_fp32"] = str(fp32_path)
    except Exception as exc:
        result["latency_ms"]["ort_fp32"] = {"error": _short(exc)}
        return None
    if calibration is None:
        result["latency_ms"]["ort_int8"] = {"skipped": "no calibration data (--calibration or --data)"}
        return fp32_path
    log("ONNX Runtime INT8 quantisation ...")
    try:
        q = quantize_int8(fp32_path, fp32_path.with_name(fp32_path.stem + "_int8.onnx"), calibration,
                          num_images=int8_images)
        result["onnx"]["int8_max_abs_diff_m"] = q["max_abs_diff_m"]
        result["onnx"]["int8_mean_abs_diff_m"] = q["mean_abs_diff_m"]
        result["onnx"]["int8_settings"] = {k: v for k, v in q["settings"].items() if k != "nodes_excluded"}
        models["ort_int8"] = OnnxDepthModel(q["path"], threads=threads, spinning=True)
        result["files"]["ort_int8"] = str(q["path"])
    except ValueError:
        raise
    except Exception as exc:
        result["latency_ms"]["ort_int8"] = {"error": _short(exc)}
    return fp32_path


def _openvino_paths(fp32_path: Path, size, threads, work_dir: Path, calibration, calibration_spec: str | None,
                    int8_images, probe: bool, log, result: dict, models: dict) -> None:
    """Convert the FP32 ONNX file to OpenVINO IR at each precision; a path that fails is a one-line note.

    With ``probe`` each conversion (and INT8 calibration) and a first run happen in a child process
    (:func:`~seldepth.deploy.probe.export_in_child`): a crash there leaves this process running.
    """
    precisions = {"ov_fp32": "f32", "ov_bf16": "bf16", "ov_int8": "int8"}
    try:
        require("openvino")
        require("nncf")
    except MissingExtraError as exc:
        for name in precisions:
            result["latency_ms"][name] = {"skipped": str(exc).splitlines()[0]}
        result["notes"].append(f"OpenVINO paths skipped: {str(exc).splitlines()[0]}")
        return
    for name, precision in precisions.items():
        if precision == "int8" and calibration is None:
            result["latency_ms"][name] = {"skipped": "no calibration data (--calibration or --data)"}
            continue
        log(f"OpenVINO {precision} ...")
        path = work_dir / f"{fp32_path.stem}_ov_{precision}.xml"
        try:
            if probe:
                info = export_in_child(fp32_path, path, precision, size, calibration_spec if precision == "int8" else None,
                                       num_images=int8_images)
            else:
                info = export_openvino(fp32_path, path, precision=precision, calibration=calibration,
                                       num_images=int8_images)
            models[name] = OpenVinoDepthModel(path, threads=threads)
            result["files"][name] = str(path)
            result["openvino"][name] = {k: v for k, v in info.items() if k not in ("path", "weights")}
        except Exception as exc:  # OpenVINO may not support this CPU: fall back to ONNX Runtime
            result["latency_ms"][name] = {"error": _short(exc)}
            result["notes"].append(f"{name} failed ({_short(exc)}); ONNX Runtime FP32 remains the fallback")


def format_benchmark(result: dict) -> str:
    """A plain-text table of :func:`benchmark`'s result: latency, the ratio to eager and to ORT FP32, the RMSE."""
    h, w = result["size"]
    where = f", torch on {result['device']}" if result.get("device", "cpu") != "cpu" else ""
    lines = [f"{result['architecture']} ({result['model']}), batch 1, {h}x{w}, {result['threads']} threads{where}, "
             f"{result['runs']} runs after {result['warmup']} warm-up, in alternating blocks of {BLOCK}",
             f"parameters {result['parameters']:,}   {result['flops'] / 1e9:.3f} GFLOPs ({FLOPS_NOTE})"]
    if result.get("cpu"):
        lines.append(f"CPU: {describe_cpu(result['cpu'])}")
    rmse = result.get("rmse") or {}
    lines.append(f"{'backend':<10} {'p50 ms':>9} {'p90 ms':>9} {'vs eager':>9} {'/ ORT FP32':>10}"
                 + (f" {'RMSE m':>8} {'vs FP32':>8}" if rmse else ""))
    eager = result["latency_ms"].get("eager", {}).get("p50")
    base = result["latency_ms"].get("ort_fp32", {}).get("p50")
    base_rmse = rmse.get("ort_fp32")
    for name, v in result["latency_ms"].items():
        if "p50" in v:
            speed = f"{eager / v['p50']:8.2f}x" if eager else ""
            ratio = f"{v['p50'] / base:10.2f}" if base else ""
            line = f"{name:<10} {v['p50']:9.2f} {v['p90']:9.2f} {speed:>9} {ratio:>10}"
            if name in rmse:
                change = f"{100 * (rmse[name] / base_rmse - 1):+7.2f}%" if base_rmse else ""
                line += f" {rmse[name]:8.4f} {change:>8}"
            lines.append(line)
        else:
            lines.append(f"{name:<10} {'-':>9} {'-':>9}   {v.get('error') or v.get('skipped')}")
    if rmse:
        lines.append(f"RMSE on {result.get('data')} (protocol {result.get('protocol')})")
    onnx = result.get("onnx", {})
    if "fp32_max_abs_diff_m" in onnx:
        lines.append(f"ORT FP32 vs torch: max abs diff {onnx['fp32_max_abs_diff_m']:.2e} m")
    if "int8_max_abs_diff_m" in onnx:
        lines.append(f"ORT INT8 vs FP32 on the calibration images: max abs diff {onnx['int8_max_abs_diff_m']:.3f} m, "
                     f"mean {onnx['int8_mean_abs_diff_m']:.3f} m")
    for name, info in result.get("openvino", {}).items():
        if "max_abs_diff_m" in info:
            lines.append(f"{name} vs ORT FP32: max abs diff {info['max_abs_diff_m']:.3g} m, mean "
                         f"{info.get('mean_abs_diff_m', float('nan')):.3g} m")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)
