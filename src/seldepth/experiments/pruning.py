"""The ``pruning:`` section of an experiment: every source run pruned by each criterion to each FLOPs fraction,
fine-tuned with the source's own training config, scored on the test split and timed under ONNX Runtime.

A pruned model is a task of the experiment's executor, like a run: :func:`run_pruned` (after its source run
has finished) prunes the source's model (:func:`seldepth.pruning.prune`; the DS criteria dissect the source's
validation split unless ``pruning.split`` says otherwise), scores the cut model on the test split, fine-tunes it
for ``finetune_epochs`` (:func:`seldepth.pruning.finetune.finetune_pruned`, resumed if interrupted) and writes
``pruned/NAME/pruning.json``. When every task has ended, :func:`measure_latency` times each source and its
pruned models side by side in this process (ONNX Runtime FP32, batch 1, alternating blocks, the source's input
size) and :func:`gather_pruning` writes ``pruning.{json,csv,md}`` and the curves of RMSE against FLOPs and
against latency.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from seldepth.atomic import write_text_atomic
from seldepth.data.spec import open_dataset
from seldepth.deploy.bench import time_calls
from seldepth.deploy.cpu import describe_cpu
from seldepth.deploy.onnx_export import export_onnx
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol
from seldepth.experiments.spec import PRUNED_FOLDER, PruningSpec, parse_typed
from seldepth.experiments.summary import write_rows_csv
from seldepth.models.model_file import read_model_file
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.pruning import prune, save_pruned
from seldepth.pruning.criteria import DATA_CRITERIA
from seldepth.pruning.finetune import PRUNED_FILE, finetune_pruned
from seldepth.report.pruning_plots import plot_pruning
from seldepth.training import load_config
from seldepth.training.run_folder import RunFolder, read_json

PRUNE_TASK = "prune_task.json"  # in a pruned run's folder: the spec, its source and what to prune
PRUNING_RESULT = "pruning.json"  # in a pruned run's folder: the cut and the scores before and after fine-tuning
LATENCY_FILE = "latency.json"  # in pruned/: {source: latency of it and its pruned models}
RMSE_BUDGET_PCT = 2.0  # the accuracy budget of the targets: test RMSE within 2% of the unpruned model
FEWER_FLOPS, LOWER_LATENCY = 0.30, 0.20  # ... at >= 30% fewer FLOPs and >= 20% lower ORT FP32 latency
WARMUP = 10


def prepare_pruned(spec: PruningSpec, folders: dict[str, Path], out: Path) -> dict[str, tuple[Path, str]]:
    """Write each pruned model's ``prune_task.json``; returns ``{name: (folder, source run)}``."""
    jobs = {}
    for name, (source, criterion, fraction) in spec.jobs().items():
        run_dir = out / PRUNED_FOLDER / name
        run_dir.mkdir(parents=True, exist_ok=True)
        task = {"spec": dataclasses.asdict(spec), "source": source, "source_dir": str(folders[source]),
                "criterion": criterion, "fraction": fraction}
        write_text_atomic(run_dir / PRUNE_TASK, json.dumps(task, indent=2))
        jobs[name] = (run_dir, source)
    return jobs


def run_pruned(run_dir: Path) -> None:
    """Worker: prune the source's model, score it, fine-tune it, score it again; writes ``pruning.json``."""
    run_dir = Path(run_dir)
    task = read_json(run_dir / PRUNE_TASK)
    spec = parse_typed(PruningSpec, task["spec"], "pruning.")
    source = RunFolder(task["source_dir"])
    criterion, fraction = task["criterion"], task["fraction"]
    cfg = load_config(str(source.path / "requested.yaml"))
    size = tuple(cfg.data.input_size)
    test = open_dataset(cfg.data.path, cfg.data.test_split)
    protocol = get_protocol(cfg.protocol)
    pruned_path = run_dir / PRUNED_FILE
    t0 = time.time()
    split = spec.split or cfg.data.val_split
    if not pruned_path.is_file():
        original = read_model_file(source.model_file_path)
        dataset = open_dataset(cfg.data.path, split) if criterion in DATA_CRITERIA else None
        result = prune(original, criterion, fraction, dataset, size=size, draw=spec.draw, min_keep=spec.min_keep,
                       min_channels=spec.min_channels, normalise=spec.normalise, round_to=spec.round_to,
                       bins=spec.bins, depth_range=tuple(cfg.selectivity.depth_range), progress=False)
        save_pruned(result, pruned_path, source=str(source.model_file_path), data=cfg.data.path, split=split)
    pruned = read_model_file(pruned_path)
    cut = pruned.metadata["provenance"]["pruning"]
    before = evaluate(pruned, test, protocol, progress=False)["metrics"]
    t1 = time.time()
    run = RunFolder(run_dir)
    if not run.results_path.is_file():
        finetune_pruned(pruned_path, cfg, spec.finetune_epochs, run_dir, run.model_file_path, resume=True)
    results = read_json(run.results_path)
    after = results["test"]["metrics"]
    result = {"run": run_dir.name, "source": task["source"], "seed": cfg.trainer.seed, "criterion": criterion,
              "flops_fraction": fraction, "achieved_flops_fraction": cut["achieved_flops_fraction"],
              "flops_before": cut["flops_before"], "flops_after": cut["flops_after"], "size": list(size),
              "parameters_before": cut["parameters_before"], "parameters_after": cut["parameters_after"],
              "finetune_epochs": spec.finetune_epochs, "dissected_split": split if criterion in DATA_CRITERIA else None,
              "rmse_before_finetune": before["rmse"], "abs_rel_before_finetune": before["abs_rel"],
              "rmse": after["rmse"], "abs_rel": after["abs_rel"], "delta1": after["delta1"],
              "prune_seconds": round(t1 - t0, 1), "finetune_seconds": round(time.time() - t1, 1),
              "widths": cut["widths"]}
    write_text_atomic(run_dir / PRUNING_RESULT, json.dumps(result, indent=2))
    write_text_atomic(run.done_path, json.dumps({"prune_seconds": result["prune_seconds"],
                                                 "finetune_seconds": result["finetune_seconds"]}, indent=2))


def measure_latency(spec: PruningSpec, folders: dict[str, Path], jobs: dict[str, tuple[Path, str]], out: Path,
                    progress: bool = True) -> dict:
    """ONNX Runtime FP32 p50 / p90 latency of each source and its finished pruned models, timed side by side.

    A source whose models were all timed already (``pruned/latency.json``) is not timed again. Returns the file's
    content: ``{source: {"cpu", "threads", "runs", "size", "models": {name: {"p50", "p90"}}}}``.
    """
    path = out / PRUNED_FOLDER / LATENCY_FILE
    latency = read_json(path) if path.is_file() else {}
    for source in dict.fromkeys(s for _, s in jobs.values()):
        done = [n for n, (d, s) in jobs.items() if s == source and (d / PRUNING_RESULT).is_file()]
        if not done or sorted(latency.get(source, {}).get("models", {})) == sorted([source, *done]):
            continue
        cfg = load_config(str(folders[source] / "requested.yaml"))
        size = tuple(cfg.data.input_size)
        files = {source: RunFolder(folders[source]).model_file_path,
                 **{n: RunFolder(jobs[n][0]).model_file_path for n in done}}
        if progress:
            print(f"[pruning] timing {source} and {len(done)} pruned models under ONNX Runtime "
                  f"({spec.latency_threads} threads, {spec.latency_runs} runs each)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            sessions = {}
            for name, file in files.items():
                onnx = Path(tmp) / f"{name}.onnx"
                export_onnx(read_model_file(file), onnx, input_size=size)
                sessions[name] = OnnxDepthModel(onnx, threads=spec.latency_threads, spinning=True)
            x = torch.rand(1, 3, *size)  # a dense network's time does not depend on the input
            timed = time_calls({n: (lambda m=m: m(x)) for n, m in sessions.items()}, spec.latency_runs, WARMUP)
        latency[source] = {"cpu": describe_cpu(), "threads": spec.latency_threads, "runs": spec.latency_runs,
                           "size": list(size), "models": timed}
        write_text_atomic(path, json.dumps(latency, indent=2))
    return latency


def pruning_rows(folders: dict[str, Path], jobs: dict[str, tuple[Path, str]], latency: dict) -> list[dict]:
    """One row per finished pruned model: ``pruning.json`` with the RMSE change and latency ratio against its
    source (the source's test RMSE from its ``results.json``)."""
    rows = []
    for name, (run_dir, source) in jobs.items():
        if not (run_dir / PRUNING_RESULT).is_file():
            continue
        row = dict(read_json(run_dir / PRUNING_RESULT))
        row.pop("widths", None)
        base = read_json(RunFolder(folders[source]).results_path)["test"]["metrics"]["rmse"]
        row["source_rmse"] = base
        row["rmse_change_pct"] = 100 * (row["rmse"] / base - 1)
        row["rmse_before_finetune_change_pct"] = 100 * (row["rmse_before_finetune"] / base - 1)
        times = latency.get(source, {}).get("models", {})
        if name in times and source in times:
            row["latency_p50_ms"] = times[name]["p50"]
            row["source_latency_p50_ms"] = times[source]["p50"]
            row["latency_ratio"] = times[name]["p50"] / times[source]["p50"]
        rows.append(row)
    return rows


def meets_targets(row: dict) -> bool:
    """>= 30% fewer FLOPs and >= 20% lower ORT FP32 latency than the unpruned model at test RMSE within 2% of it."""
    return (row["achieved_flops_fraction"] <= 1 - FEWER_FLOPS and row.get("latency_ratio", 1.0) <= 1 - LOWER_LATENCY
            and row["rmse_change_pct"] <= RMSE_BUDGET_PCT)


def compare_criteria(rows: list[dict]) -> list[dict]:
    """Per source and FLOPs fraction: the criteria ranked by test RMSE after fine-tuning, and whether ``ds`` beats
    ``l1`` and ``random`` there."""
    out = []
    for key in dict.fromkeys((r["source"], r["flops_fraction"]) for r in rows):
        group = {r["criterion"]: r["rmse"] for r in rows if (r["source"], r["flops_fraction"]) == key}
        ranked = sorted(group, key=group.get)
        beats = {other: group["ds"] < group[other] for other in ("l1", "random") if "ds" in group and other in group}
        out.append({"source": key[0], "flops_fraction": key[1], "ranking": ranked, "ds_beats": beats})
    return out


def format_pruning(rows: list[dict], comparison: list[dict], latency: dict) -> str:
    """The Markdown of ``pruning.md``: the table, the criteria compared, the targets."""
    lines = ["| pruned model | source | seed | criterion | FLOPs kept | parameters | RMSE cut (change) | "
             "RMSE fine-tuned (m) | RMSE vs source | ORT p50 / source |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["source"], -r["flops_fraction"], r["criterion"])):
        ratio = f"{r['latency_ratio']:.2f}" if "latency_ratio" in r else "-"
        lines.append(f"| {r['run']} | {r['source']} | {r['seed']} | {r['criterion']} | "
                     f"{r['achieved_flops_fraction']:.3f} | {r['parameters_after']:,} | "
                     f"{r['rmse_before_finetune']:.3f} ({r['rmse_before_finetune_change_pct']:+.0f}%) | "
                     f"{r['rmse']:.4f} | {r['rmse_change_pct']:+.1f}% | {ratio} |")
    lines += ["", "Criteria at equal FLOPs (test RMSE after fine-tuning, lowest first):", "",
              "| source | FLOPs fraction | ranking | ds beats l1 | ds beats random |", "|---|---|---|---|---|"]
    for c in comparison:
        yes = {True: "yes", False: "no", None: "-"}
        lines.append(f"| {c['source']} | {c['flops_fraction']:g} | {' < '.join(c['ranking'])} | "
                     f"{yes[c['ds_beats'].get('l1')]} | {yes[c['ds_beats'].get('random')]} |")
    met = [r["run"] for r in rows if meets_targets(r)]
    lines += ["", f"Targets (>= {FEWER_FLOPS:.0%} fewer FLOPs, >= {LOWER_LATENCY:.0%} lower ORT FP32 p50 latency, "
              f"test RMSE within {RMSE_BUDGET_PCT:g}% of the unpruned source): "
              + (f"met by {', '.join(met)}." if met else "met by no pruned model.")]
    for source, entry in latency.items():
        lines.append(f"\nLatency of {source} and its pruned models: ONNX Runtime FP32, batch 1, {entry['threads']} "
                     f"threads, {entry['size'][0]}x{entry['size'][1]}, {entry['runs']} runs each in alternating blocks; "
                     f"{source} p50 {entry['models'][source]['p50']:.2f} ms. CPU: {entry['cpu']}")
    return "\n".join(lines) + "\n"


def gather_pruning(folders: dict[str, Path], jobs: dict[str, tuple[Path, str]], latency: dict, out: Path) -> dict:
    """Write ``pruning.json``, ``pruning.csv``, ``pruning.md``, ``pruning_flops.png`` and ``pruning_latency.png``."""
    rows = pruning_rows(folders, jobs, latency)
    comparison = compare_criteria(rows)
    summary = {"rows": rows, "criteria": comparison, "latency": latency,
               "targets_met": [r["run"] for r in rows if meets_targets(r)]}
    write_text_atomic(out / "pruning.json", json.dumps(summary, indent=2))
    if rows:
        write_rows_csv(out / "pruning.csv", rows)
        write_text_atomic(out / "pruning.md", format_pruning(rows, comparison, latency))
        plot_pruning(rows, out / "pruning_flops.png", x="flops", budget_pct=RMSE_BUDGET_PCT)
        if any("latency_ratio" in r for r in rows):
            plot_pruning(rows, out / "pruning_latency.png", x="latency", budget_pct=RMSE_BUDGET_PCT)
    return summary
