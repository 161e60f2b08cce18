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
