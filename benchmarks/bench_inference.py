"""CPU inference of METER-xxs: eager torch against ONNX Runtime FP32 and INT8, side by side, and INT8's accuracy cost.

Imports the official NYU METER-xxs (or takes --model), exports it to ONNX (fixed 192x256,
checked against torch) and quantises it statically to INT8 (``seldepth.deploy.quantize.quantize_int8``
defaults, calibrated on --calibration). All three run in one process on the same input,
in alternating blocks (seldepth.deploy.bench.time_calls), with torch and ORT limited to --threads threads. Prints p50 / p90 latency
and the ratios (targets: ORT FP32 >= 3x faster than eager; INT8 <= 0.7x FP32 latency), then the
NYU RMSE of FP32 and INT8 from ``seldepth.evaluation.evaluate`` on the ``OnnxDepthModel``s
(target: INT8 within 2% of FP32).

    python benchmarks/bench_inference.py [--model M.safetensors] [--runs 100] [--threads 2]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from seldepth.data.spec import open_dataset
from seldepth.evaluation import evaluate
from seldepth.deploy.bench import BLOCK, parse_size, time_calls
from seldepth.deploy.onnx_export import export_onnx
from seldepth.deploy.quantize import quantize_int8
from seldepth.models.loading import load_model
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.evaluation.protocol import get_protocol

from official_model import latency_parser, model_path_or_official


def main() -> None:
    parser = latency_parser(__doc__, runs=100, data_help="evaluation data spec")
    parser.add_argument("--calibration", help="INT8 calibration data spec (default: --data)")
    parser.add_argument("--calibration-images", type=int, default=16)
    args = parser.parse_args()
    size = parse_size(args.size)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = model_path_or_official(args.model, tmp)
        model = load_model(model_path)
        data = open_dataset(args.data, "test")
        calibration = open_dataset(args.calibration, "test") if args.calibration else data
        info = export_onnx(model, tmp / "fp32.onnx", input_size=size, check_images=[data[0]["image"]], source=model_path)
        q = quantize_int8(tmp / "fp32.onnx", tmp / "int8.onnx", calibration, num_images=args.calibration_images)
        fp32 = OnnxDepthModel(tmp / "fp32.onnx", threads=args.threads, spinning=True)
        int8 = OnnxDepthModel(tmp / "int8.onnx", threads=args.threads, spinning=True)

        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))

        def eager():
            with torch.inference_mode():
                model(x)

        calls = {"eager torch": eager, "ORT FP32": lambda: fp32(x), "ORT INT8": lambda: int8(x)}
        latency = time_calls(calls, args.runs, args.warmup)
        p50 = {n: v["p50"] for n, v in latency.items()}
        p90 = {n: v["p90"] for n, v in latency.items()}

        protocol = get_protocol("nyu")
        rmse = {name: evaluate(m, data, protocol, progress=False)["metrics"]["rmse"] for name, m in
                (("ORT FP32", fp32), ("ORT INT8", int8))}

    s = q["settings"]
    print(f"{model.name} ({model_path}), batch 1, {size[0]}x{size[1]}, torch threads {torch.get_num_threads()}, "
          f"ORT intra-op threads {args.threads}; {args.runs} runs after {args.warmup} warm-up, in alternating blocks of {BLOCK}")
    print(f"{model.num_parameters():,} parameters, {model.flops(*size) / 1e9:.3f} GFLOPs (2 FLOPs per multiply-add)")
    print(f"ONNX FP32 vs torch: max abs diff {info['max_abs_diff_m']:.2e} m (opset {info['opset']})")
    print(f"INT8: {s['quant_format']}, weights S8 per-channel={s['per_channel']}, activations {s['activation_type']}, "
          f"ops {s['op_types']}, {len(s['nodes_excluded'])} nodes kept FP32 (output stage {s['fp32_output_stage']}, "
          f"slower in INT8 {s['fp32_slower_nodes']}), {s['calibrate_method']} on {q['num_images']} images "
          f"of {args.calibration or args.data}; vs FP32 max {q['max_abs_diff_m']:.3f} m, mean {q['mean_abs_diff_m']:.3f} m")
    for name in calls:
        print(f"{name:12s} p50 {p50[name]:8.2f} ms   p90 {p90[name]:8.2f} ms")
    speedup = p50["eager torch"] / p50["ORT FP32"]
    ratio = p50["ORT INT8"] / p50["ORT FP32"]
    print(f"eager / ORT FP32 latency: {speedup:.2f}x faster (target >= 3x): {'met' if speedup >= 3 else 'NOT met'}")
    print(f"ORT INT8 / ORT FP32 latency: {ratio:.2f} (target <= 0.7): {'met' if ratio <= 0.7 else 'NOT met'}")
    rel = rmse["ORT INT8"] / rmse["ORT FP32"] - 1
    print(f"NYU RMSE ({len(data)} images of {args.data}, {protocol.describe()}): FP32 {rmse['ORT FP32']:.4f} m, "
          f"INT8 {rmse['ORT INT8']:.4f} m ({100 * rel:+.2f}%; target within 2%): {'met' if abs(rel) <= 0.02 else 'NOT met'}")


if __name__ == "__main__":
    main()
