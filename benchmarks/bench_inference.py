"""CPU inference of METER-xxs under every backend, side by side, with each path's accuracy and the pick.

Imports the official NYU METER-xxs (or takes --model) and runs :func:`seldepth.deploy.bench.benchmark`:
eager torch, ONNX Runtime FP32 and INT8 (``quantize_int8`` defaults), OpenVINO FP32, BF16 and INT8 (NNCF,
output stage kept in FP32), all from one checked FP32 ONNX export, in one process, in alternating
blocks, with --threads threads each; INT8 calibrated on --calibration (default --data). Prints the
CPU's features, p50 / p90 latency, each path's NYU RMSE on --data, the pick within 1% RMSE, and the
targets:

- ORT FP32 >= 3x faster than eager; ORT INT8 <= 0.7x ORT FP32;
- with AMX or AVX-512 BF16: the best reduced-precision path <= 0.6x ORT FP32 at RMSE within 1% of FP32,
  OpenVINO INT8 <= 0.6x at RMSE within 2%; without them, the pick no slower than ORT FP32.

``--int8-variants`` also times each ONNX Runtime INT8 setting (format, weights, activations, which ops)
against FP32, side by side, with its RMSE: the evidence behind ``quantize_int8``'s defaults.

    python benchmarks/bench_inference.py [--model M.safetensors] [--runs 300] [--threads 2] [--int8-variants]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from seldepth.data.spec import open_dataset
from seldepth.deploy.bench import benchmark, format_benchmark, parse_size, time_calls
from seldepth.deploy.cpu import has_bf16
from seldepth.deploy.pick import pick_backend
from seldepth.deploy.quantize import quantize_int8
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol
from seldepth.models.onnx_model import OnnxDepthModel

from official_model import latency_parser, model_path_or_official

# name -> quantize_int8 keyword arguments (the defaults where not named)
INT8_VARIANTS = {
    "default (QOperator)": {},
    "QDQ format": {"quant_format": "QDQ"},
    "per-tensor weights": {"per_channel": False},
    "S8 activations": {"activation_type": "QInt8"},
    "reduce_range": {"reduce_range": True},
    "no FP32 slower nodes": {"fp32_slower_nodes": False},
    "Conv only": {"op_types": ("Conv",)},
    "no Gemm/MatMul": {"op_types": ("Conv", "Relu", "Add", "Concat")},
}


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_targets(result: dict) -> None:
    lat, rmse = result["latency_ms"], result["rmse"]
    p50 = {name: v["p50"] for name, v in lat.items() if "p50" in v}
    base, base_rmse = p50.get("ort_fp32"), rmse.get("ort_fp32")
    if base is None:
        print("ORT FP32 did not run: no targets")
        return
    if "eager" in p50:
        print(f"eager / ORT FP32 latency: {p50['eager'] / base:.2f}x faster (target >= 3x): "
              f"{verdict(p50['eager'] / base >= 3)}")
    if "ort_int8" in p50:
        print(f"ORT INT8 / ORT FP32 latency: {p50['ort_int8'] / base:.2f} (target <= 0.7): "
              f"{verdict(p50['ort_int8'] / base <= 0.7)}")
    change = {name: rmse[name] / base_rmse - 1 for name in rmse if base_rmse}
    if has_bf16(result["cpu"]):
        reduced = [n for n in ("ort_int8", "ov_bf16", "ov_int8") if n in p50 and n in change and change[n] <= 0.01]
        if reduced:
            best = min(reduced, key=p50.get)
            ratio = p50[best] / base
            print(f"best reduced-precision path within 1% RMSE: {best}, {ratio:.2f}x ORT FP32 "
                  f"(RMSE {100 * change[best]:+.2f}%; target <= 0.6x): {verdict(ratio <= 0.6)}")
        else:
            print("no reduced-precision path within 1% RMSE (target: one at <= 0.6x ORT FP32): NOT met")
        if "ov_int8" in p50 and "ov_int8" in change:
            ratio = p50["ov_int8"] / base
            print(f"OpenVINO INT8: {ratio:.2f}x ORT FP32, RMSE {100 * change['ov_int8']:+.2f}% (target <= 0.6x "
                  f"within 2%): {verdict(ratio <= 0.6 and change['ov_int8'] <= 0.02)}")
    else:
        print("the CPU has neither AMX nor AVX-512 BF16: the reduced-precision targets do not apply")
    pick = pick_backend(lat, rmse, 0.01)
    print(f"pick within 1% RMSE: {pick['backend']}, {pick['speedup']:.2f}x ORT FP32 (never slower than ORT FP32: "
          f"{verdict(pick['p50'] <= base)})")


def int8_variants(fp32_path: Path, data, size, threads: int, runs: int, warmup: int, work_dir: Path) -> None:
    """Each ORT INT8 setting against FP32: latency side by side and NYU RMSE."""
    models = {"FP32": OnnxDepthModel(fp32_path, threads=threads, spinning=True)}
    for i, (name, options) in enumerate(INT8_VARIANTS.items()):
        path = work_dir / f"int8_{i}.onnx"
        quantize_int8(fp32_path, path, data, **options)
        models[name] = OnnxDepthModel(path, threads=threads, spinning=True)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    latency = time_calls({name: (lambda m=m: m(x)) for name, m in models.items()}, runs, warmup)
    protocol = get_protocol("nyu")
    rmse = {name: evaluate(m, data, protocol, progress=False)["metrics"]["rmse"] for name, m in models.items()}
    print(f"\nONNX Runtime INT8 settings, {runs} runs each in alternating blocks")
    print(f"{'model':22s} {'p50 ms':>8s} {'p90 ms':>8s} {'/ FP32':>7s} {'NYU RMSE':>9s} {'vs FP32':>8s}")
    for name in models:
        print(f"{name:22s} {latency[name]['p50']:8.2f} {latency[name]['p90']:8.2f} "
              f"{latency[name]['p50'] / latency['FP32']['p50']:7.2f} {rmse[name]:9.4f} "
              f"{100 * (rmse[name] / rmse['FP32'] - 1):+7.2f}%")


def main() -> None:
    parser = latency_parser(__doc__, runs=300, data_help="evaluation data spec (the RMSE of each path)")
    parser.add_argument("--calibration", help="INT8 calibration data spec (default: --data)")
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--int8-variants", action="store_true", help="also time each ONNX Runtime INT8 setting")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = model_path_or_official(args.model, tmp)
        calibration_images = min(args.calibration_images, len(open_dataset(args.calibration or args.data, "test")))
        result = benchmark(model_path, size=size, threads=args.threads, runs=args.runs, warmup=args.warmup,
                           int8_calibration=args.calibration, int8_images=calibration_images, compile=args.compile,
                           work_dir=tmp / "paths", data=args.data, progress=True)
        print(format_benchmark(result))
        print_targets(result)
        if args.int8_variants:
            torch.set_num_threads(args.threads)
            int8_variants(Path(result["files"]["ort_fp32"]), open_dataset(args.data, "test"), size, args.threads,
                          args.runs, args.warmup, tmp)


if __name__ == "__main__":
    main()
