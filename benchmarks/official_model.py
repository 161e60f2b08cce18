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
