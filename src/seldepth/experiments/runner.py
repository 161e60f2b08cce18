"""Running an experiment: every run trained, dissected and ablated in its own process, then the summary.

Each run is a task of the file's executor (:mod:`seldepth.experiments.executors`): by default a
worker process on this machine, ``jobs`` at a time, each with ``cores // jobs`` torch threads and
its output in ``RUN/run.log``; with ``executor: {kind: slurm, ...}`` a SLURM job per run. Every
executor calls the same worker, :func:`run_one`. A run that already finished (``run_done.json``)
is skipped; an interrupted one resumes from its last checkpoint; a run that starts from another
run's model waits for that run. See :mod:`seldepth.experiments.spec` for the experiment file.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import yaml

from seldepth.atomic import write_text_atomic
from seldepth.data.spec import open_dataset, prepare
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol
from seldepth.experiments.executors import Executor, Outcome, Task, make_executor
from seldepth.experiments.pruning import gather_pruning, measure_latency, prepare_pruned, run_pruned
from seldepth.experiments.spec import (
    ByBinSpec,
    ExperimentSpec,
    RunTask,
    _fill_out,
    deep_merge,
    parse_typed,
    read_experiment,
)
from seldepth.experiments.summary import gather
from seldepth.models.model_file import read_model_file
from seldepth.report.ablation_plots import plot_ablation
from seldepth.report.by_bin_plots import save_by_bin
from seldepth.selectivity.ablation import ablate
from seldepth.selectivity.ablation_by_bin import ablate_by_bin, read_assignment
from seldepth.selectivity.dissect import DissectionResult, dissect
from seldepth.training import load_config, train
from seldepth.training.run import SELECTIVITY_ASSIGNMENT
from seldepth.training.run_folder import RunFolder, read_json


def prepare_runs(spec: ExperimentSpec, out: Path) -> dict[str, Path]:
    """Write each run's requested config and check it with the training parser (errors name the run)."""
    out.mkdir(parents=True, exist_ok=True)
    folders = {}
    for name, cfg in spec.runs.items():
        run_dir = out / name
        run_dir.mkdir(exist_ok=True)
        cfg = deep_merge(_fill_out(cfg, out), {"trainer": {"out_dir": str(run_dir)}})
        requested = run_dir / "requested.yaml"
        write_text_atomic(requested, yaml.safe_dump(cfg, sort_keys=False))
        try:  # a run that starts from another run's model is checked without that file, which comes later
            load_config(str(requested), check_init=not spec.dependencies(name))
        except ValueError as exc:
            raise ValueError(f"run {name!r}: {exc}") from None
        folders[name] = run_dir
    return folders


def run_experiment(config: str | os.PathLike, out: str | os.PathLike, quick: bool = False, jobs: int | None = None,
                   progress: bool = True, executor: Executor | None = None) -> dict:
    """Train, dissect and ablate every run of an experiment file, then write the summary table.

    Args:
        config: experiment YAML.
        out: output folder (one sub-folder per run).
        quick: merge the file's ``quick`` overrides into the base (a run of minutes).
        jobs: runs at once (default the file's ``jobs``); each gets ``cores // jobs`` torch threads.
        progress: print per-run progress lines.
        executor: runs the runs (default: the one the file's ``executor`` names, local processes unless told).

    Returns:
        ``experiment.json``'s content.
    """
    return run_spec(read_experiment(config, quick), out, jobs=jobs, progress=progress, quick=quick, executor=executor)


def run_spec(spec: ExperimentSpec, out: str | os.PathLike, jobs: int | None = None, progress: bool = True,
             quick: bool = False, executor: Executor | None = None) -> dict:
    """Run a parsed experiment (see :func:`run_experiment`)."""
    out = Path(out)
    jobs = jobs or spec.jobs
    executor = executor or make_executor(spec.executor, jobs, out)  # its settings checked before any work
    folders = prepare_runs(spec, out)
    for data_path in sorted({cfg.get("data", {}).get("path", "synthetic:default") for cfg in spec.runs.values()}):
        prepare(data_path, key="data.path", progress=progress)  # generate once, before the runs race for it
    task = {"dissect": spec.dissect, "ablation": spec.ablation, "ablation_by_bin": spec.ablation_by_bin,
            "caps": list(spec.caps), "median_scaling": spec.median_scaling}
    start = time.time()
    tasks = []
    for name, run_dir in folders.items():
        by_bin = name in spec.ablation_by_bin["runs"]
        if RunFolder(run_dir).is_done and not (by_bin and _by_bin_missing(spec.by_bin, run_dir)):
            if progress:
                print(f"[{name}] already done, skipped", flush=True)
            continue
        write_text_atomic(run_dir / "task.json", json.dumps({**task, "ablate": name in spec.ablation["runs"],
                                                             "ablate_by_bin": by_bin}))
        tasks.append(Task(name, run_one, (run_dir,), after=tuple(spec.dependencies(name)), log=run_dir / "run.log"))
    pruned = prepare_pruned(spec.pruning, folders, out)
    for name, (run_dir, source) in pruned.items():
        if RunFolder(run_dir).is_done:
            if progress:
                print(f"[{name}] already done, skipped", flush=True)
            continue
        tasks.append(Task(name, run_pruned, (run_dir,), after=(source,), log=run_dir / "run.log"))

    def started(t: Task, where: str) -> None:
        if progress:
            print(f"[{t.name}] {where}", flush=True)

    def ended(t: Task, o: Outcome) -> None:
        if not progress:
            return
        if o.blocked_by:
            print(f"[{t.name}] not started: it starts from {o.blocked_by}, which failed", flush=True)
        else:
            status = "done" if o.ok else f"FAILED ({o.error}), see {o.log}"
            print(f"[{t.name}] {status} in {o.seconds:.0f} s", flush=True)

    outcomes = executor.run(tasks, on_start=started, on_end=ended)
    failed = [name for name, o in outcomes.items() if not o.ok]
    summary = gather(spec, folders, out, wall_seconds=time.time() - start, jobs=jobs, quick=quick)
    if pruned:
        latency = measure_latency(spec.pruning, folders, pruned, out, progress=progress)
        summary["pruning"] = gather_pruning(folders, pruned, latency, out)
    if failed:
        raise RuntimeError(f"runs failed: {', '.join(failed)} (logs in their run.log); the others are in {out / 'summary.md'}")
    return summary


def _by_bin_missing(spec: ByBinSpec, run_dir: Path) -> bool:
    """Whether a finished run lacks some of its ablations per depth range (added to the file after it ran)."""
    return any(not (out / "by_bin.json").is_file() for out in spec.outputs(run_dir))


def run_one(run_dir: Path) -> None:
    """Worker: train one run (resuming if interrupted), dissect it, ablate it if asked; writes ``run_done.json``.

    A finished run whose ablations per depth range are missing only gets those.
    """
    run = RunFolder(run_dir)
    run_dir = Path(run_dir)
    try:
        task = parse_typed(RunTask, read_json(run_dir / "task.json"))
    except ValueError as exc:
        raise ValueError(f"{run_dir / 'task.json'}: {exc}") from None
    finished = run.is_done  # queued again only for its missing ablations per depth range
    cfg = load_config(str(run_dir / "requested.yaml"))
    t0 = time.time()
    if not run.results_path.exists():
        train(cfg, resume=run.last_checkpoint.exists())
    t1 = time.time()
    model = read_model_file(run.model_file_path)
    d = task.dissect
    split = d.split or cfg.data.test_split
    dataset = open_dataset(cfg.data.path, split)
    if finished:
        if task.ablate_by_bin:
            ablate_run_by_bin(task.ablation_by_bin, model, dataset, run, cfg, DissectionResult.load(run.dissection_dir))
        return
    if task.caps or task.median_scaling:  # the test split scored again under the extra settings
        test = dataset if split == cfg.data.test_split else open_dataset(cfg.data.path, cfg.data.test_split)
        protocol = get_protocol(cfg.protocol, caps=tuple(task.caps), median_scaling=task.median_scaling)
        write_text_atomic(run.test_extra_path, json.dumps(evaluate(model, test, protocol, progress=False), indent=2))
    result = dissect(model, dataset, layers=d.layers, bins=d.bins, depth_range=tuple(cfg.selectivity.depth_range),
                     batch_size=d.batch_size, progress=False, dtype=torch.float32)
    result.info.update(model=str(run.model_file_path), data=cfg.data.path, split=split)
    result.save(run.dissection_dir)
    t2 = time.time()
    if task.ablate:
        a = task.ablation
        layer = a.layer
        ablation = ablate(model, dataset, layer, fractions=tuple(a.fractions), seeds=a.seeds, mode=a.mode, bins=d.bins,
                          depth_range=tuple(cfg.selectivity.depth_range), protocol=cfg.protocol,
                          batch_size=a.batch_size, progress=False,
                          selectivity=result.layers[layer].ds if layer in result.layers else None)
        ablation.info.update(model=str(run.model_file_path), data=cfg.data.path, split=split)
        if layer in result.layers:
            ablation.bins = f"{result.bins.spec()} (the run's dissection)"
        ablation.save(run.ablation_dir)
        plot_ablation(ablation.to_dict(), run.ablation_dir / "ablation.png")
    if task.ablate_by_bin:
        ablate_run_by_bin(task.ablation_by_bin, model, dataset, run, cfg, result)
    done = {"train_seconds": round(t1 - t0, 1), "dissect_seconds": round(t2 - t1, 1),
            "ablation_seconds": round(time.time() - t2, 1), "threads": torch.get_num_threads()}
    write_text_atomic(run.done_path, json.dumps(done, indent=2))


def ablate_run_by_bin(spec: ByBinSpec, model, dataset, run: RunFolder, cfg, dissection) -> None:
    """The ablations per depth range of one run (:class:`ByBinSpec`), each into ``ablate_by_bin/LAYER-GROUPING/``,
    units grouped by the run's dissection or by the regulariser's assignment; those already written are kept."""
    for layer, grouping, units, out in spec.jobs(run.path):
        if (out / "by_bin.json").is_file():
            continue
        if grouping == "assigned":
            grouping = read_assignment(run.path / SELECTIVITY_ASSIGNMENT, layer)
        result = ablate_by_bin(model, dataset, layer, groups=spec.groups, grouping=grouping, units=units,
                               dissection=dissection.layers.get(layer), seeds=spec.seeds, mode=spec.mode,
                               bins=dissection.bins,
                               depth_range=tuple(cfg.selectivity.depth_range), protocol=cfg.protocol,
                               batch_size=spec.batch_size, progress=False)
        result.info.update(model=str(run.model_file_path), data=cfg.data.path, run=run.name)
        save_by_bin(result, out)


if __name__ == "__main__":  # a run by hand: python -m seldepth.experiments.runner RUN_DIR (after run_experiment wrote it)
    run_one(Path(sys.argv[1]))
