"""Structured pruning of METER-xxs against its CPU latency and accuracy: each FLOPs fraction beside the unpruned model.

Imports the official NYU METER-xxs (or takes --model), prunes it by --criterion to each fraction of --flops
(:func:`seldepth.pruning.prune`, the floors and normalisation of ``seldepth prune``; DS criteria measure on
--data), without fine-tuning, exports the unpruned and every pruned model to ONNX (FP32, batch 1, fixed
--size; each checked against torch) and times them under ONNX Runtime with --threads intra-op threads, in
one process, in alternating blocks (:func:`seldepth.deploy.bench.time_calls`). Prints the CPU's features
and, per fraction: the FLOPs fraction reached, the parameters, p50 / p90 latency and the p50 ratio to the
unpruned model, and the RMSE of the ONNX model on --data with its change; then the targets:

- >= 30% fewer FLOPs and >= 20% lower ORT FP32 p50 latency than the unpruned model, at RMSE within 2% of it.

Without fine-tuning (``seldepth prune --finetune-epochs``) a pruned model's RMSE is far from the original's:
the accuracy target is for fine-tuned models; this script measures the cut alone. A fraction below what the
floors allow is reported and skipped (lower --min-keep / --min-channels to reach it).

    python benchmarks/bench_pruning.py [--model M.safetensors] [--criterion ds] [--flops 0.8,0.6,0.4] [--round-to 1,8] [--runs 300]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from official_model import latency_parser, model_path_or_official

from seldepth.data.spec import open_dataset
from seldepth.defaults import DEFAULT_MIN_CHANNELS, DEFAULT_MIN_KEEP, DEFAULT_ROUND_TO
from seldepth.deploy.bench import parse_size, time_calls
from seldepth.deploy.cpu import describe_cpu
from seldepth.deploy.onnx_export import export_onnx
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol, protocol_for_data
from seldepth.models.loading import load_model
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.pruning import prune
from seldepth.pruning.criteria import CRITERIA, DATA_CRITERIA
from seldepth.pruning.plan import NORMALISATIONS

FEWER_FLOPS = 0.30  # the targets: at least 30% fewer FLOPs ...
LOWER_LATENCY = 0.20  # ... and 20% lower ORT FP32 latency ...
RMSE_BUDGET = 0.02  # ... at RMSE within 2% of the unpruned model


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = latency_parser(__doc__, runs=300, data_help="data spec: the DS of ds / ds-inverse and the RMSE of each model")
    parser.add_argument("--criterion", default="ds", choices=CRITERIA)
    parser.add_argument("--flops", default="0.8,0.6,0.4", help="FLOPs fractions, comma-separated")
    parser.add_argument("--min-keep", type=float, default=DEFAULT_MIN_KEEP)
    parser.add_argument("--min-channels", type=int, default=DEFAULT_MIN_CHANNELS)
    parser.add_argument("--normalise", default="rank", choices=NORMALISATIONS)
    parser.add_argument("--round-to", default=f"{DEFAULT_ROUND_TO},8",
                        help="multiples the kept widths are rounded up to, comma-separated: each fraction is pruned "
                             "once per value and all are timed side by side (1: no rounding)")
    parser.add_argument("--draw", type=int, default=0, help="the random draw of --criterion random")
    parser.add_argument("--split", default="test", help="split of --data")
    args = parser.parse_args()
    size = parse_size(args.size)
    fractions = [float(f) for f in args.flops.split(",") if f.strip()]
    roundings = [int(r) for r in args.round_to.split(",") if r.strip()]
    torch.set_num_threads(args.threads)
    print(f"CPU: {describe_cpu()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        original = load_model(model_path_or_official(args.model, tmp))
        dataset = open_dataset(args.data, args.split)
        protocol = get_protocol(protocol_for_data(args.data, original)[0])
        print(f"{original.name} at {size[0]}x{size[1]}, pruned by {args.criterion} (min-keep {args.min_keep}, "
              f"min-channels {args.min_channels}, normalise {args.normalise}, round-to {args.round_to}); {len(dataset)} images of {args.data}")
        models = {"unpruned": original}
        reached = {"unpruned": 1.0}
        for fraction in fractions:
            for round_to in roundings:
                name = f"F={fraction:g}" + (f" r{round_to}" if round_to > 1 else "")
                try:
                    result = prune(original, args.criterion, fraction,
                                   dataset if args.criterion in DATA_CRITERIA else None, size=size, draw=args.draw,
                                   min_keep=args.min_keep, min_channels=args.min_channels, normalise=args.normalise,
                                   round_to=round_to, progress=False)
                except ValueError as exc:
                    print(f"{name}: skipped: {exc}")
                    continue
                models[name] = result.model
                reached[name] = result.plan.achieved_fraction
        sessions = {}
        for name, model in models.items():
            path = tmp / f"{name.replace('=', '_').replace(' ', '_')}.onnx"
            export_onnx(model, path, input_size=size)
            sessions[name] = OnnxDepthModel(path, threads=args.threads, spinning=True)
        x = torch.rand(1, 3, *size)  # the input does not change the time of a dense network
        latency = time_calls({name: (lambda m=m: m(x)) for name, m in sessions.items()}, args.runs, args.warmup)
        rmse = {name: evaluate(m, dataset, protocol, progress=False)["metrics"]["rmse"] for name, m in sessions.items()}
    base_p50, base_rmse = latency["unpruned"]["p50"], rmse["unpruned"]
    print(f"\nONNX Runtime FP32, batch 1, {args.threads} threads, {args.runs} runs each in alternating blocks; "
          f"RMSE on {args.data} ({protocol.name}), no fine-tuning")
    print(f"{'model':12s} {'FLOPs':>6s} {'parameters':>11s} {'p50 ms':>8s} {'p90 ms':>8s} {'/ unpruned':>10s} "
          f"{'RMSE':>8s} {'change':>8s}")
    for name, model in models.items():
        print(f"{name:12s} {reached[name]:6.3f} {model.num_parameters():>11,} {latency[name]['p50']:8.2f} "
              f"{latency[name]['p90']:8.2f} {latency[name]['p50'] / base_p50:10.2f} {rmse[name]:8.4f} "
              f"{100 * (rmse[name] / base_rmse - 1):+7.1f}%")
    print(f"\ntargets: >= {FEWER_FLOPS:.0%} fewer FLOPs and >= {LOWER_LATENCY:.0%} lower ORT FP32 p50 latency at RMSE "
          f"within {RMSE_BUDGET:.0%} (the RMSE target is for fine-tuned models: without fine-tuning it is far off)")
    for name in models:
        if name == "unpruned":
            continue
        flops, speed, error = reached[name] - 1, latency[name]["p50"] / base_p50 - 1, rmse[name] / base_rmse - 1
        ok = (-flops >= FEWER_FLOPS, -speed >= LOWER_LATENCY, error <= RMSE_BUDGET)
        print(f"{name}: FLOPs {flops:+.0%} {verdict(ok[0])}; latency {speed:+.0%} {verdict(ok[1])}; RMSE {error:+.1%} "
              f"{verdict(ok[2])}; all three: {verdict(all(ok))}")


if __name__ == "__main__":
    main()
