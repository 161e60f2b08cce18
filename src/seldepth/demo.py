"""The main job: synthetic data -> METER-xxs training -> evaluation against a trivial baseline.

``seldepth demo`` generates the default synthetic set if it is not cached, trains METER-xxs
with the balanced loss (a shortened METER recipe), evaluates the best checkpoint on the
synthetic test split and compares it with the trivial predictor (the training set's mean depth).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from seldepth.data.datamodule import DataConfig
from seldepth.data.spec import open_dataset, prepare
from seldepth.data.collate import collate_samples
from seldepth.evaluation import evaluate, format_table
from seldepth.models.base import DepthModel
from seldepth.protocol import get_protocol
from seldepth.train_config import OptimConfig, TrainConfig, TrainerConfig
from seldepth.training import train, write_text_atomic

# (images in the synthetic set, input size, epochs, lr step) of each demo; sized for 2 CPU cores.
DEMO_SETTINGS = {
    "full": {"num": 2000, "input_size": (192, 256), "epochs": 12, "step_epochs": 8, "batch_size": 16},
    "quick": {"num": 320, "input_size": (96, 128), "epochs": 12, "step_epochs": 9, "batch_size": 16},
}


class ConstantDepth(DepthModel):
    """The trivial predictor: the same depth everywhere (output at 1/4 resolution, like METER)."""

    name = "constant"

    def __init__(self, value: float):
        super().__init__()
        self.register_buffer("value", torch.tensor(float(value)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image.shape
        return self.value.expand(b, 1, max(1, h // 4), max(1, w // 4)).clone()


def mean_valid_depth(dataset, batch_size: int = 16) -> float:
    """Mean ground-truth depth over the valid pixels of a data set (metres)."""
    total, count = 0.0, 0
    for batch in DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples):
        d, v = batch["depth"], batch["valid"]
        total += float(d[v].double().sum())
        count += int(v.sum())
    return total / max(count, 1)


def demo_config(quick: bool, out_dir: str) -> TrainConfig:
    s = DEMO_SETTINGS["quick" if quick else "full"]
    return TrainConfig(
        model="meter_xxs",
        protocol="synthetic",
        data=DataConfig(path=f"synthetic:default:{s['num']}", input_size=s["input_size"], batch_size=s["batch_size"]),
        optim=OptimConfig(step_epochs=s["step_epochs"]),
        trainer=TrainerConfig(epochs=s["epochs"], out_dir=out_dir),
    )


def run_demo(quick: bool = False, out_dir: str | None = None, progress: bool = True) -> dict:
    """Run the main job; returns and writes ``demo.json`` in the run folder."""
    start = time.time()
    out_dir = out_dir or ("runs/demo_quick" if quick else "runs/demo")
    cfg = demo_config(quick, out_dir)
    cfg = replace(cfg, trainer=replace(cfg.trainer, progress_bar=progress))
    data_path = prepare(cfg.data.path, key="data.path", progress=progress)
    gen_done = time.time()
    out = Path(out_dir)
    resume = (out / "checkpoints" / "last.ckpt").exists()
    if resume:
        print(f"continuing the demo run in {out} (delete it to start over)")
    results = train(cfg, resume=resume)
    protocol = get_protocol(cfg.protocol)
    spec = cfg.data.path
    baseline_value = mean_valid_depth(open_dataset(spec, "train"))
    baseline = evaluate(ConstantDepth(baseline_value).eval(), open_dataset(spec, "test"), protocol, progress=False)
    model_rmse, base_rmse = results["test"]["metrics"]["rmse"], baseline["metrics"]["rmse"]
    summary = {
        "quick": quick,
        "data": str(data_path),
        "test": results["test"],
        "baseline": {"mean_depth_m": baseline_value, **baseline},
        "rmse_reduction_vs_baseline": 1 - model_rmse / base_rmse,
        "seconds": {"data": round(gen_done - start, 1), "train": results["train_seconds"], "total": round(time.time() - start, 1)},
    }
    write_text_atomic(out / "demo.json", json.dumps(summary, indent=2))
    print(f"\nMETER-xxs on the synthetic test split ({results['test']['num_images']} images):")
    print(format_table(results["test"], protocol))
    print(f"\ntrivial predictor (training mean depth {baseline_value:.2f} m): RMSE {base_rmse:.4f} m, "
          f"AbsRel {baseline['metrics']['abs_rel']:.4f}, delta1 {baseline['metrics']['delta1']:.4f}")
    print(f"METER-xxs RMSE {model_rmse:.4f} m: {100 * summary['rmse_reduction_vs_baseline']:.1f}% lower than the trivial predictor")
    print(f"time: data {summary['seconds']['data']:.0f} s, training {summary['seconds']['train']:.0f} s, "
          f"total {summary['seconds']['total']:.0f} s; run folder {out}")
    return summary
