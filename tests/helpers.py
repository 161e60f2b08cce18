"""Plain helpers of the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SELDEPTH_SHARED", REPO.parent / "shared"))


def tiny_train_args(data: Path, out: Path, epochs: int = 2) -> list[str]:
    return ["--data.path", f"nyu:{data}", "--protocol", "nyu", "--data.batch_size", "2", "--data.input_size", "[64,96]",
            "--data.num_workers", "0", "--trainer.epochs", str(epochs), "--trainer.out_dir", str(out),
            "--trainer.progress_bar", "false", "--trainer.log_every_n_steps", "1"]


def constant_teacher(path, depth: float, semantic_classes: int = 0, label: int = 0):
    """A realtime_depth model file whose every head predicts ``depth`` metres (and class ``label``)."""
    import math

    import torch

    from seldepth.models import create_model
    from seldepth.models.model_file import save_model_file
    from seldepth.models.preprocessing import Preprocessing

    model = create_model("realtime_depth", semantic_classes=semantic_classes)
    cfg = model.config
    g = (math.log(depth) - math.log(cfg.min_depth)) * cfg.max_depth / math.log(cfg.max_depth / cfg.min_depth)
    with torch.no_grad():
        for conv in model.head.values():
            conv.weight.zero_()
            conv.bias.zero_()
            conv.bias[0] = g
            if semantic_classes:
                conv.bias[1 + label] = 10.0
    return save_model_file(model, path, Preprocessing(input_size=(32, 32)))
