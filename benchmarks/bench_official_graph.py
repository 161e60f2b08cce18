"""seldepth's METER graph against the official one: the same weights, exported alike, timed side by side.

The official METER code (Papa et al., "METER: a mobile vision transformer architecture for monocular
depth estimation", IEEE TCSVT 2023; https://github.com/lorenzopapa5/METER) is not part of seldepth; this
script imports ``architecture.py`` from a checkout of it given by ``--official-code``. It builds the
official xxs network on the CPU (the file places its separable convolutions on ``cuda:0``; the script
builds them on the CPU instead, nothing else changes), loads the official NYU checkpoint into it and
into seldepth's METER-xxs, checks that both give the same depth (official centimetres / 100 against
seldepth's metres), exports both to ONNX with the same exporter and opset at batch 1, and times:

- ONNX Runtime FP32 (``--threads`` intra-op threads, all graph optimisations);
- OpenVINO FP32 (``INFERENCE_PRECISION_HINT=f32``, ``--threads`` inference threads), unless ``--no-openvino``;

in alternating blocks in one process (:func:`seldepth.deploy.bench.time_calls`). It prints the CPU's
features, p50 / p90 latency and the ratio seldepth / official for each runtime, and the operator counts
of both ONNX graphs (what the remaining reshapes cost). Needs ``einops`` (the official code's
dependency; not one of seldepth's) importable, e.g. ``PYTHONPATH=/path/to/einops``.

    python benchmarks/bench_official_graph.py --official-code ~/src/METER [--runs 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from official_model import SHARED, model_path_or_official

from seldepth.deploy.bench import parse_size, time_calls
from seldepth.deploy.cpu import describe_cpu
from seldepth.deploy.onnx_export import export_onnx
from seldepth.models.import_meter import read_official_state_dict
from seldepth.models.loading import load_model
from seldepth.models.onnx_model import ort_session

NYU_CHECKPOINT = SHARED / "weights" / "meter" / "build_model_best_nyu_xxs"
OFFICIAL_UNIT_M = 0.01  # the official NYU checkpoint predicts centimetres


def official_meter(code_dir: Path, size: tuple[int, int], variant: str = "xxs") -> torch.nn.Module:
    """The official METER network from ``code_dir/architecture.py``, built on the CPU for (h, w) inputs."""
    source = code_dir / "architecture.py"
    if not source.is_file():
        sys.exit(f"--official-code: {source} not found (a checkout of the official METER repository)")
    # architecture.py reads the input resolution from the training code's `globals` module
    settings = types.ModuleType("globals")
    settings.RGB_img_res = (3, *size)
    sys.modules["globals"] = settings
    spec = importlib.util.spec_from_file_location("official_meter_architecture", source)
    arch = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(arch)
    except ImportError as exc:
        sys.exit(f"--official-code: importing {source} failed ({exc}); install einops or put it on PYTHONPATH")
    except SyntaxError as exc:  # the file of commit 794fd60 has an unbalanced parenthesis in mobilevit_xs
        sys.exit(f"--official-code: {source} line {exc.lineno} does not compile ({exc.msg}); "
                 "correct that line (the xxs network does not use it) and run again")

    def conv_nxn_bn_cpu(inp, oup, kernal_size=3, stride=1):  # the official block, on the CPU
        return torch.nn.Sequential(arch.SeparableConv2d(inp, oup, kernal_size, "cpu", stride=stride),
                                   torch.nn.BatchNorm2d(oup), torch.nn.ReLU())

    arch.conv_nxn_bn = conv_nxn_bn_cpu
    return arch.build_METER_model("cpu", variant).eval()


def op_counts(path: Path) -> collections.Counter:
    """How many nodes of each operator type an ONNX graph has (functions inlined as the exporter wrote them)."""
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node)


LAYOUT_OPS = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Split", "Slice", "Concat", "ReorderInput",
              "ReorderOutput", "Gather")  # operators that move values without arithmetic


def op_time_shares(path: Path, threads: int, feed: np.ndarray, runs: int) -> dict[str, float]:
    """Share of ONNX Runtime's kernel time per operator type (its profiler, over ``runs`` calls of the optimised graph)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, {session.get_inputs()[0].name: feed})
    events = json.loads(Path(session.end_profiling()).read_text())
    times = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    total = sum(times.values())
    return {op: t / total for op, t in times.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-code", required=True, type=Path, help="checkout of the official METER repository")
    parser.add_argument("--checkpoint", type=Path, default=NYU_CHECKPOINT, help="official NYU METER-xxs state_dict")
    parser.add_argument("--size", default="192x256", help="HxW")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-openvino", action="store_true", help="time ONNX Runtime only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    size = parse_size(args.size)
    torch.set_num_threads(args.threads)
    print(f"CPU: {describe_cpu()}")
    print(f"torch {torch.__version__}, {args.threads} threads, {size[0]}x{size[1]}, batch 1, {args.runs} runs each")

    official = official_meter(args.official_code.expanduser(), size)
    official.load_state_dict(read_official_state_dict(args.checkpoint), strict=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ours = load_model(model_path_or_official(None, tmp)).eval()
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            diff_torch = (official(x) * OFFICIAL_UNIT_M - ours(x)).abs().max().item()
        print(f"torch: seldepth (m) vs official (cm / 100), max abs difference {diff_torch:.2e} m")

        ours_path, official_path = tmp / "seldepth.onnx", tmp / "official.onnx"
        info = export_onnx(ours, ours_path, input_size=size)
        torch.onnx.export(official, (x,), str(official_path), dynamo=True, opset_version=info["opset"],
                          input_names=["image"], output_names=["depth"])
        sessions = {"seldepth": ort_session(ours_path, args.threads), "official": ort_session(official_path, args.threads)}
        feed = x.numpy()
        outs = {name: s.run(None, {s.get_inputs()[0].name: feed})[0] for name, s in sessions.items()}
        diff_onnx = float(np.abs(outs["official"] * OFFICIAL_UNIT_M - outs["seldepth"]).max())
        print(f"ONNX Runtime: max abs difference {diff_onnx:.2e} m (opset {info['opset']})")

        calls = {f"ort_{name}": (lambda s=s: s.run(None, {s.get_inputs()[0].name: feed})) for name, s in sessions.items()}
        if not args.no_openvino:
            import openvino as ov

            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": args.threads,
                      "PERFORMANCE_HINT": "LATENCY"}
            for name, path in (("seldepth", ours_path), ("official", official_path)):
                compiled = core.compile_model(str(path), "CPU", config)
                request = compiled.create_infer_request()
                calls[f"ov_{name}"] = (lambda r=request: r.infer({0: feed}))
            ov_out = {n: calls[f"ov_{n}"]()[0] for n in ("seldepth", "official")}
            print(f"OpenVINO FP32: max abs difference {np.abs(ov_out['official'] * OFFICIAL_UNIT_M - ov_out['seldepth']).max():.2e} m"
                  f" (openvino {ov.__version__})")
        times = time_calls(calls, args.runs, args.warmup)

        counts = {name: op_counts(path) for name, path in (("seldepth", ours_path), ("official", official_path))}
        shares = {name: op_time_shares(path, args.threads, feed, args.runs)
                  for name, path in (("seldepth", ours_path), ("official", official_path))}

    print(f"\n{'runtime':<14}{'seldepth p50':>14}{'official p50':>14}{'ratio':>8}{'seldepth p90':>14}{'official p90':>14}")
    ratios = {}
    for runtime in ("ort", "ov"):
        if f"{runtime}_seldepth" not in times:
            continue
        a, b = times[f"{runtime}_seldepth"], times[f"{runtime}_official"]
        ratios[runtime] = a["p50"] / b["p50"]
        print(f"{runtime:<14}{a['p50']:>11.2f} ms{b['p50']:>11.2f} ms{ratios[runtime]:>8.2f}{a['p90']:>11.2f} ms{b['p90']:>11.2f} ms")
    print("\nONNX operators (seldepth / official), those that differ:")
    for op in sorted(set(counts["seldepth"]) | set(counts["official"])):
        if counts["seldepth"][op] != counts["official"][op]:
            print(f"  {op:<22}{counts['seldepth'][op]:>5} / {counts['official'][op]:<5}")
    print(f"  {'all nodes':<22}{sum(counts['seldepth'].values()):>5} / {sum(counts['official'].values()):<5}")
    print("\nShare of ONNX Runtime kernel time by operator (its profiler; seldepth / official), above 1%:")
    for op in sorted(set(shares["seldepth"]) | set(shares["official"]), key=lambda o: -shares["seldepth"].get(o, 0)):
        a, b = shares["seldepth"].get(op, 0.0), shares["official"].get(op, 0.0)
        if max(a, b) >= 0.01:
            print(f"  {op:<22}{100 * a:>5.1f}% / {100 * b:.1f}%")
    layout = {name: sum(v for op, v in s.items() if op in LAYOUT_OPS) for name, s in shares.items()}
    print(f"  {'layout operators':<22}{100 * layout['seldepth']:>5.1f}% / {100 * layout['official']:.1f}%"
          f"  ({', '.join(LAYOUT_OPS)})")
    print("\ntarget: seldepth's FP32 graph <= 0.8x the official graph's p50 under each runtime: "
          + ", ".join(f"{r} {v:.2f}x ({'met' if v <= 0.8 else 'not met'})" for r, v in ratios.items()))
    if args.json:
        args.json.write_text(json.dumps({"latency_ms": times, "ratio_p50": ratios, "max_abs_diff_m": diff_onnx, "time_shares": shares,
                                         "ops": {k: dict(v) for k, v in counts.items()}}, indent=2))


if __name__ == "__main__":
    main()
