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

