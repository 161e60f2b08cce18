"""Running an experiment: every run trained, dissected and ablated in its own process, then the summary.

Runs are started as worker processes (``python -m seldepth.experiments.runner RUN_DIR``), ``jobs`` at
a time, each with ``cores // jobs`` torch threads. A run that already finished (``run_done.json``) is
skipped; an interrupted one resumes from its last checkpoint. See :mod:`seldepth.experiments.spec`
for the experiment file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from seldepth.atomic import write_text_atomic
from seldepth.data.spec import open_dataset, prepare
from seldepth.evaluation import evaluate
from seldepth.evaluation.protocol import get_protocol
from seldepth.experiments.spec import ExperimentSpec, _fill_out, deep_merge, read_experiment
from seldepth.experiments.summary import gather
from seldepth.models.model_file import load_model
from seldepth.report.ablation_plots import plot_ablation
from seldepth.selectivity.ablation import ablate
from seldepth.selectivity.dissect import dissect
from seldepth.training import load_config, train
from seldepth.training.run_folder import RunFolder


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
                   progress: bool = True) -> dict:
    """Train, dissect and ablate every run of an experiment file, then write the summary table.

    Args:
        config: experiment YAML.
        out: output folder (one sub-folder per run).
        quick: merge the file's ``quick`` overrides into the base (a run of minutes).
        jobs: runs at once (default the file's ``jobs``); each gets ``cores // jobs`` torch threads.
        progress: print per-run progress lines.

    Returns:
        ``experiment.json``'s content.
    """
    return run_spec(read_experiment(config, quick), out, jobs=jobs, progress=progress, quick=quick)


def run_spec(spec: ExperimentSpec, out: str | os.PathLike, jobs: int | None = None, progress: bool = True,
             quick: bool = False) -> dict:
    """Run a parsed experiment (see :func:`run_experiment`)."""
    out = Path(out)
    folders = prepare_runs(spec, out)
    for data_path in sorted({cfg.get("data", {}).get("path", "synthetic:default") for cfg in spec.runs.values()}):
        prepare(data_path, key="data.path", progress=progress)  # generate once, before the runs race for it
    jobs = jobs or spec.jobs
    threads = max(1, (os.cpu_count() or 1) // jobs)
    task = {"dissect": spec.dissect, "ablation": spec.ablation, "caps": list(spec.caps),
            "median_scaling": spec.median_scaling}
    start = time.time()
    pending = list(folders.items())
    running: list[tuple[str, subprocess.Popen, float]] = []
    failed = []
    while pending or running:
        for name, run_dir in list(pending):  # a run whose starting model failed cannot start
            lost = [d for d in spec.dependencies(name) if d in failed]
            if lost:
                pending.remove((name, run_dir))
                failed.append(name)
                if progress:
                    print(f"[{name}] not started: it starts from {lost[0]}, which failed", flush=True)
        while len(running) < jobs:
            ready = [(n, d) for n, d in pending if all(RunFolder(folders[x]).is_done for x in spec.dependencies(n))]
            if not ready:
                if not running:  # only runs waiting for runs that will never finish
                    raise RuntimeError(f"runs {', '.join(n for n, _ in pending)} wait on each other's models")
                break
            name, run_dir = ready[0]
            pending.remove(ready[0])
            if RunFolder(run_dir).is_done:
                if progress:
                    print(f"[{name}] already done, skipped", flush=True)
                continue
            write_text_atomic(run_dir / "task.json", json.dumps({**task, "ablate": name in spec.ablation.get("runs", [])}))
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            log = open(run_dir / "run.log", "ab")
            proc = subprocess.Popen([sys.executable, "-m", "seldepth.experiments.runner", str(run_dir)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            log.close()
            running.append((name, proc, time.time()))
            if progress:
                print(f"[{name}] started ({threads} threads), log {run_dir / 'run.log'}", flush=True)
        time.sleep(0.5)
        for item in list(running):
            name, proc, t0 = item
            if proc.poll() is None:
                continue
            running.remove(item)
            if proc.returncode != 0:
                failed.append(name)
            if progress:
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}), see {folders[name] / 'run.log'}"
                print(f"[{name}] {status} in {time.time() - t0:.0f} s", flush=True)
    summary = gather(spec, folders, out, wall_seconds=time.time() - start, jobs=jobs, quick=quick)
    if failed:
        raise RuntimeError(f"runs failed: {', '.join(failed)} (logs in their run.log); the others are in {out / 'summary.md'}")
    return summary


def run_one(run_dir: Path) -> None:
    """Worker: train one run (resuming if interrupted), dissect it, ablate it if asked; writes ``run_done.json``."""
    run = RunFolder(run_dir)
    task = json.loads((run_dir / "task.json").read_text())
    cfg = load_config(str(run_dir / "requested.yaml"))
    t0 = time.time()
    if not run.results_path.exists():
        train(cfg, resume=run.last_checkpoint.exists())
    t1 = time.time()
    model = load_model(run.model_file_path)
    d = task.get("dissect") or {}
    split = d.get("split", cfg.data.test_split)
    dataset = open_dataset(cfg.data.path, split)
    if task.get("caps") or task.get("median_scaling"):  # the test split scored again under the extra settings
        test = dataset if split == cfg.data.test_split else open_dataset(cfg.data.path, cfg.data.test_split)
        protocol = get_protocol(cfg.protocol, caps=tuple(task.get("caps") or ()),
                                median_scaling=bool(task.get("median_scaling")))
        write_text_atomic(run.test_extra_path, json.dumps(evaluate(model, test, protocol, progress=False), indent=2))
    bins = d.get("bins", "sid:64")
    result = dissect(model, dataset, layers=d.get("layers"), bins=bins, depth_range=tuple(cfg.selectivity.depth_range),
                     batch_size=int(d.get("batch_size", 8)), progress=False, dtype=torch.float32)
    result.info.update(model=str(run.model_file_path), data=cfg.data.path, split=split)
    result.save(run.dissection_dir)
    t2 = time.time()
    if task.get("ablate"):
        a = task["ablation"]
        layer = a["layer"]
        ablation = ablate(model, dataset, layer, fractions=tuple(a.get("fractions", (0, 0.1, 0.25, 0.5, 0.75))),
                          seeds=int(a.get("seeds", 3)), mode=a.get("mode", "zero"), bins=bins,
                          depth_range=tuple(cfg.selectivity.depth_range), protocol=cfg.protocol,
                          batch_size=int(a.get("batch_size", 8)), progress=False,
                          selectivity=result.layers[layer].ds if layer in result.layers else None)
        ablation.info.update(model=str(run.model_file_path), data=cfg.data.path, split=split)
        if layer in result.layers:
            ablation.bins = f"{result.bins.spec()} (the run's dissection)"
        ablation.save(run.ablation_dir)
        plot_ablation(ablation.to_dict(), run.ablation_dir / "ablation.png")
    done = {"train_seconds": round(t1 - t0, 1), "dissect_seconds": round(t2 - t1, 1),
            "ablation_seconds": round(time.time() - t2, 1), "threads": torch.get_num_threads()}
    write_text_atomic(run.done_path, json.dumps(done, indent=2))


if __name__ == "__main__":  # the per-run worker started by run_experiment
    run_one(Path(sys.argv[1]))
