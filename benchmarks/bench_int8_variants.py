"""ONNX Runtime INT8 of METER-xxs: the quantisation settings against each other and FP32, side by side.

The evidence behind ``seldepth.deploy.quantize.quantize_int8``'s defaults and behind the INT8 latency
target (<= 0.7x FP32) not being met: the official NYU METER-xxs (or --model) is exported once
(fixed size, checked against torch) and quantised with each variant below; FP32 and every INT8
model then run in one process on the same input in alternating blocks
(``seldepth.deploy.bench.time_calls``), with --threads ORT threads. Prints p50 / p90 latency, the
ratio to FP32 and the NYU RMSE change of each variant.

    python benchmarks/bench_int8_variants.py [--runs 300] [--threads 2]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from seldepth.deploy.bench import parse_size, time_calls
from seldepth.data.spec import open_dataset
from seldepth.evaluation import evaluate
from seldepth.deploy.onnx_export import export_onnx
from seldepth.deploy.quantize import quantize_int8
from seldepth.models.loading import load_model
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.evaluation.protocol import get_protocol

from official_model import latency_parser, model_path_or_official


# name -> quantize_int8 keyword arguments (the defaults where not named)
VARIANTS = {
    "default (QOperator)": {},
    "QDQ format": {"quant_format": "QDQ"},
    "per-tensor weights": {"per_channel": False},
    "S8 activations": {"activation_type": "QInt8"},
    "reduce_range": {"reduce_range": True},
    "no FP32 slower nodes": {"fp32_slower_nodes": False},
    "Conv only": {"op_types": ("Conv",)},
    "no Gemm/MatMul": {"op_types": ("Conv", "Relu", "Add", "Concat")},
}


def main() -> None:
    parser = latency_parser(__doc__, runs=300, data_help="evaluation and calibration data spec")
    args = parser.parse_args()
    size = parse_size(args.size)
    torch.set_num_threads(args.threads)
    data = open_dataset(args.data, "test")
    protocol = get_protocol("nyu")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_path = model_path_or_official(args.model, tmp)
        model = load_model(model_path)
        export_onnx(model, tmp / "fp32.onnx", input_size=size, check_images=[data[0]["image"]], source=model_path)
        models = {"FP32": OnnxDepthModel(tmp / "fp32.onnx", threads=args.threads, spinning=True)}
        for i, (name, options) in enumerate(VARIANTS.items()):
            path = tmp / f"int8_{i}.onnx"
            quantize_int8(tmp / "fp32.onnx", path, data, **options)
            models[name] = OnnxDepthModel(path, threads=args.threads, spinning=True)
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        latency = time_calls({name: (lambda m=m: m(x)) for name, m in models.items()}, args.runs, args.warmup)
        rmse = {name: evaluate(m, data, protocol, progress=False)["metrics"]["rmse"] for name, m in models.items()}

    print(f"{model.name} ({model_path}), batch 1, {size[0]}x{size[1]}, ORT intra-op threads {args.threads}; "
          f"{args.runs} runs per model after {args.warmup} warm-up, in alternating blocks; INT8 calibrated on {args.data}")
    print(f"{'model':22s} {'p50 ms':>8s} {'p90 ms':>8s} {'/ FP32':>7s} {'NYU RMSE':>9s} {'vs FP32':>8s}")
    base = latency["FP32"]["p50"]
    for name in models:
        rel = rmse[name] / rmse["FP32"] - 1
        print(f"{name:22s} {latency[name]['p50']:8.2f} {latency[name]['p90']:8.2f} {latency[name]['p50'] / base:7.2f} "
              f"{rmse[name]:9.4f} {100 * rel:+7.2f}%")


if __name__ == "__main__":
    main()
