"""The model the benchmarks measure by default: the official NYU METER-xxs from ``../shared``."""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("SELDEPTH_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def model_path_or_official(model: str | None, work_dir: str | os.PathLike) -> Path:
    """``model`` if given, else the official NYU METER-xxs imported into ``work_dir``."""
    if model is not None:
        return Path(model)
    from seldepth.models.import_meter import import_meter

    path = Path(work_dir) / "meter_xxs_nyu.safetensors"
    import_meter(SHARED / "weights" / "meter" / "build_model_best_nyu_xxs", "xxs", "nyu", path)
    return path


def latency_parser(doc: str, runs: int, data_help: str):
    """The command line of the ONNX latency benchmarks: --model, --size, --threads, --runs, --warmup, --data."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: import the official NYU METER-xxs)")
    parser.add_argument("--size", default="192x256", help="HxW")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--data", default=f"nyu:{SHARED / 'data' / 'nyu_test_sample'}", help=data_help)
    return parser


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_description() -> str:
    """The CPU model, its core count and which of the vector / matrix flags that matter for inference it has."""
    import platform

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "unknown CPU", platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    have = [f for f in CPU_FLAGS if f in flags]
    return f"{model}, {os.cpu_count()} cores; flags {' '.join(have) or 'none of ' + ' '.join(CPU_FLAGS)}"
