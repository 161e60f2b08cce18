"""The speed table of Chiu et al., ICPR 2020, for realtime_depth: each detachable head's accuracy and CPU speed, side by side.

For each head (L, M, S, XS) of a trained ``realtime_depth`` model file: the detached model's
parameters and FLOPs, its RMSE on the test split of --data (the head's depth upsampled to the
ground truth, as ``seldepth eval --head``), and its batch-1 latency at --size under eager torch
and ONNX Runtime FP32 with --threads threads; all eight runtimes are timed in one process in
alternating blocks (``seldepth.deploy.bench.time_calls``).

    python benchmarks/bench_realtime_heads.py --model runs/realtime_teachers/e_semantic_teacher/model.safetensors
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from seldepth.deploy.bench import BLOCK, parse_size, time_calls
from seldepth.data.spec import open_dataset
from seldepth.evaluation import evaluate
from seldepth.deploy.onnx_export import export_onnx
from seldepth.models.base import with_head
from seldepth.models.loading import load_model
from seldepth.models.realtime import HEAD_STRIDE, HEADS
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.evaluation.protocol import get_protocol


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a realtime_depth model file")
    parser.add_argument("--data", default="synthetic:default:1000", help="evaluation data spec (test split)")
    parser.add_argument("--protocol", default="synthetic")
    parser.add_argument("--size", default="320x480", help="HxW of the timed input (Chiu et al., ICPR 2020: 480x320)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    size = parse_size(args.size)
    torch.set_num_threads(args.threads)
    full = load_model(args.model)
    data = open_dataset(args.data, "test")
    protocol = get_protocol(args.protocol)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    rows, calls = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for head in HEADS:
            model = with_head(full, head).eval()
            rmse = evaluate(model, data, protocol, progress=False)["metrics"]["rmse"]
            onnx_path = Path(tmp) / f"{head}.onnx"
            info = export_onnx(model, onnx_path, input_size=size, source=args.model)
            ort = OnnxDepthModel(onnx_path, threads=args.threads, spinning=True)
            rows[head] = {"params": model.num_parameters(), "gflops": model.flops(*size) / 1e9, "rmse": rmse,
                          "diff": info["max_abs_diff_m"]}

            def eager(m=model):
                with torch.inference_mode():
                    m(x)

            calls[f"{head} eager"] = eager
            calls[f"{head} ORT"] = (lambda o=ort: o(x))
        latency = time_calls(calls, args.runs, args.warmup)

    print(f"{full.name} ({args.model}), batch 1, input {size[0]}x{size[1]}, {args.threads} threads; "
          f"{args.runs} runs after {args.warmup} warm-up per runtime, alternating blocks of {BLOCK}; "
          f"RMSE on {len(data)} test images of {args.data} ({protocol.describe()})")
    print("| head | output (W x H) | parameters | GFLOPs | eager p50 ms (FPS) | ORT FP32 p50 ms (FPS) | RMSE (m) |")
    print("|---|---|---|---|---|---|---|")
    for head, r in rows.items():
        s = HEAD_STRIDE[head]
        e, o = latency[f"{head} eager"]["p50"], latency[f"{head} ORT"]["p50"]
        print(f"| {head} | {-(-size[1] // s)} x {-(-size[0] // s)} | {r['params']:,} | {r['gflops']:.2f} | "
              f"{e:.1f} ({1000 / e:.0f}) | {o:.1f} ({1000 / o:.0f}) | {r['rmse']:.3f} |")
    print("ONNX vs torch max abs diff (m): " + ", ".join(f"{h} {r['diff']:.1e}" for h, r in rows.items()))


if __name__ == "__main__":
    main()
