"""The main job: synthetic data -> METER-xxs with and without the selectivity regulariser -> evaluation,
dissection, ablation and an HTML report.

``seldepth demo`` generates the default synthetic set if it is not cached, then trains two
METER-xxs models side by side (the experiment runner, one process each): the baseline with
METER's balanced loss (a shortened METER recipe) and the same recipe plus the assign loss on
enc_6 (``DEMO_REGULARIZER``). Both are evaluated on the synthetic test split against the
trivial predictor (the training set's mean depth), dissected (all 16 layers), ablated on the
regularised layer (top-k / random-k / bottom-k units), and compared in ``report.html``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from seldepth.atomic import write_text_atomic
from seldepth.data.collate import collate_samples
from seldepth.data.spec import open_dataset, prepare
from seldepth.evaluation import evaluate, format_table
from seldepth.evaluation.protocol import get_protocol
from seldepth.experiments.runner import run_spec
from seldepth.experiments.spec import ExperimentSpec
from seldepth.experiments.summary import format_summary
from seldepth.models.base import DepthModel
from seldepth.report.html import write_report
from seldepth.selectivity import DEFAULT_BINS, DEFAULT_FRACTIONS
from seldepth.training.run_folder import RunFolder

# Sized for 2 CPU cores: the two runs train at once, one torch thread each.
DEMO_SETTINGS = {
    "full": {"num": 2000, "input_size": [128, 192], "epochs": 12, "step_epochs": 8, "limit_val": 100,
             "fractions": list(DEFAULT_FRACTIONS), "seeds": 3},
    "quick": {"num": 320, "input_size": [128, 192], "epochs": 12, "step_epochs": 9, "limit_val": 32,
              "fractions": [0, 0.25, 0.5], "seeds": 2},
}
# The regularised run: the best setting of configs/experiments/selectivity_meter_xxs.yaml (ours_enc6_l100_warm):
# assign loss on enc_6 (the "layer 6" of Diamadis's METER-xxs study), lambda 100, 32 SID bins, batch statistics, 2 epochs of warm-up.
DEMO_REGULARIZER = {"layers": ["enc_6"], "weight": 100.0, "bins": "sid:32", "statistics": "batch", "warmup_epochs": 2}
ABLATION_LAYER = DEMO_REGULARIZER["layers"][0]  # the regularised layer is dissected every epoch and ablated


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


def demo_spec(quick: bool) -> ExperimentSpec:
    """The demo as an experiment: a baseline and a regularised run of the same recipe."""
    s = DEMO_SETTINGS["quick" if quick else "full"]
    base = {
        "model": "meter_xxs", "protocol": "synthetic",
        "data": {"path": f"synthetic:default:{s['num']}", "input_size": s["input_size"], "batch_size": 16,
                 "limit_val": s["limit_val"]},
        "optim": {"step_epochs": s["step_epochs"]},
        "selectivity": {"log_layers": [ABLATION_LAYER]},
        "trainer": {"epochs": s["epochs"], "progress_bar": False},
    }
    regularised = {**base, "selectivity": {**DEMO_REGULARIZER, "log_layers": [ABLATION_LAYER]}}
    return ExperimentSpec(runs={"baseline": base, "regularised": regularised}, dissect={"bins": DEFAULT_BINS, "split": "test"},
                          ablation={"runs": ["baseline", "regularised"], "layer": ABLATION_LAYER,
                                    "fractions": s["fractions"], "seeds": s["seeds"], "mode": "zero"},
                          jobs=2, description="seldepth demo")


def run_demo(quick: bool = False, out_dir: str | None = None, progress: bool = True) -> dict:
    """Run the main job; returns and writes ``demo.json`` in the output folder."""
    start = time.time()
    out = Path(out_dir or ("runs/demo_quick" if quick else "runs/demo"))
    spec = demo_spec(quick)
    data_spec = spec.runs["baseline"]["data"]["path"]
    data_path = prepare(data_spec, key="data.path", progress=progress)
    gen_done = time.time()
    if (out / "baseline").exists():
        print(f"continuing the demo in {out} (finished runs are kept; delete the folder to start over)")
    experiment = run_spec(spec, out, progress=progress)
    rows = {r["run"]: r for r in experiment["runs"]}
    protocol = get_protocol("synthetic")
    baseline_value = mean_valid_depth(open_dataset(data_spec, "train"))
    trivial = evaluate(ConstantDepth(baseline_value).eval(), open_dataset(data_spec, "test"), protocol, progress=False)
    runs = {name: RunFolder(out / name) for name in spec.runs}
    results = {name: run.results for name, run in runs.items()}
    ablation = {name: run.ablation() for name, run in runs.items()}
    report = write_report([out / name for name in spec.runs], out / "report.html", progress=False)
    base_rmse = trivial["metrics"]["rmse"]
    summary = {
        "quick": quick,
        "data": str(data_path),
        "test": results["baseline"]["test"],
        "regularised": {"selectivity": DEMO_REGULARIZER, "test": results["regularised"]["test"]},
        "baseline": {"mean_depth_m": baseline_value, **trivial},
        "rmse_reduction_vs_baseline": 1 - results["baseline"]["test"]["metrics"]["rmse"] / base_rmse,
        "selectivity": {name: {"ds_" + ABLATION_LAYER: rows[name][f"ds_{ABLATION_LAYER}"], "mean_ds": rows[name]["mean_ds"]}
                        for name in rows},
        "ablation": {name: {"fractions": a["fractions"], "top_minus_random_rmse": a["top_minus_random_rmse"]}
                     for name, a in ablation.items()},
        "report": str(report),
        "seconds": {"data": round(gen_done - start, 1), "experiment": experiment["wall_seconds"],
                    "total": round(time.time() - start, 1)},
    }
    write_text_atomic(out / "demo.json", json.dumps(summary, indent=2))
    print(f"\nMETER-xxs (baseline run) on the synthetic test split ({results['baseline']['test']['num_images']} images):")
    print(format_table(results["baseline"]["test"], protocol))
    print(f"\ntrivial predictor (training mean depth {baseline_value:.2f} m): RMSE {base_rmse:.4f} m, "
          f"AbsRel {trivial['metrics']['abs_rel']:.4f}, delta1 {trivial['metrics']['delta1']:.4f}")
    print(f"METER-xxs RMSE {results['baseline']['test']['metrics']['rmse']:.4f} m: "
          f"{100 * summary['rmse_reduction_vs_baseline']:.1f}% lower than the trivial predictor")
    print(f"\nwith and without the assign loss on {ABLATION_LAYER} (lambda {DEMO_REGULARIZER['weight']:g}, "
          f"{DEMO_REGULARIZER['bins']}, {DEMO_REGULARIZER['statistics']} statistics):")
    print(format_summary(experiment["runs"], [ABLATION_LAYER], "baseline"))
    for name, a in ablation.items():
        diffs = ", ".join(f"{f:g}: {d:+.4f}" for f, d in zip(a["fractions"], a["top_minus_random_rmse"]) if f > 0)
        print(f"ablation of {ABLATION_LAYER} in {name}: top-k minus random-k RMSE (m) by fraction ablated: {diffs}")
    print(f"\ntime: data {summary['seconds']['data']:.0f} s, experiment {summary['seconds']['experiment']:.0f} s, "
          f"total {summary['seconds']['total']:.0f} s; report {report}")
    return summary
