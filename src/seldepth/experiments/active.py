"""The active-learning experiment: rounds of train -> choose -> label -> train again, uncertainty against random.

An experiment file::

    base:                      # a `seldepth train` config (any of its keys)
      model: meter_xxs
      data: {path: "synthetic:default:1000", input_size: [128, 192]}
    initial: 64                # images labelled at the start (random, per seed), shared by the methods
    budget: 64                 # images labelled per round
    rounds: 3
    steps: 200                 # optimiser steps per training (epochs follow from the labelled count)
    methods: [mc-dropout, random]
    seeds: [0, 1, 2]
    select: {passes: 8, dropout: 0.2}
    jobs: 2                    # chains (method, seed) trained at once, threads = cores / jobs
    quick: {seeds: [0], rounds: 2}   # merged into the file by --quick (any of its keys)
    executor: {kind: slurm, partition: gpu, cpus_per_task: 4}   # where the chains run (default local)

For each seed, the initial model is trained once on the initial images; then each method runs
its own chain: the last model chooses ``budget`` images of the training split's unlabelled rest
(``seldepth select``'s code), they join the labelled list, and a new model is trained from
scratch on it. Every model is scored on the test split. The output folder gets
``seedS/round0/`` and ``seedS/METHOD/roundR/`` run folders (with ``labelled.txt``, the chosen
list), ``active.json``, ``summary.md`` (test RMSE after each round, mean and spread over the
seeds) and ``active.png``. Finished trainings are not repeated when the experiment is run again.

The file is read by jsonargparse into :class:`ActiveFile`; a key given as null takes its default,
and an error names the file and the key. Each chain (a seed's initial model, then each method's
rounds after it) is a task of the file's executor (:mod:`seldepth.experiments.executors`).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seldepth.atomic import atomic_path, write_text_atomic
from seldepth.data.spec import open_dataset, prepare
from seldepth.experiments.executors import Executor, Outcome, Task, make_executor
from seldepth.experiments.spec import ExecutorSpec, deep_merge, read_typed_file, read_yaml_file
from seldepth.experiments.uncertainty import METHODS, uncertainty_scores, write_selection
from seldepth.models.model_file import read_model_file
from seldepth.training import load_config, parse_train_config, train
from seldepth.training.run_folder import RunFolder


@dataclass(frozen=True)
class SelectSpec:
    """``select:`` of an active-learning file: MC dropout's settings (``seldepth select``'s)."""

    passes: int = 8
    dropout: float = 0.2

    def __post_init__(self):
        if self.passes < 1:
            raise ValueError(f"select.passes must be >= 1, got {self.passes}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"select.dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ActiveFile:
    """An active-learning file as written (the module docstring).

    Attributes:
        base: a ``seldepth train`` config (any of its keys).
        initial: images labelled at the start (random, per seed).
        budget: images labelled per round.
        rounds: rounds after the initial model.
        steps: optimiser steps per training.
        methods: ``mc-dropout`` and/or ``random``.
        seeds: one chain per seed and method.
        select: MC dropout's settings.
        jobs: chains at once (local executors), each with ``cores // jobs`` torch threads.
        description: one line for the summary.
        quick: keys of this file merged into it by ``--quick``.
        executor: where the chains run.
    """

    base: dict = field(default_factory=dict)
    initial: int = 64
    budget: int = 64
    rounds: int = 3
    steps: int = 200
    methods: tuple[str, ...] = ("mc-dropout", "random")
    seeds: tuple[int, ...] = (0, 1, 2)
    select: SelectSpec = field(default_factory=SelectSpec)
    jobs: int = 1
    description: str = ""
    quick: dict = field(default_factory=dict)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def __post_init__(self):
        for key in ("initial", "budget", "rounds", "steps", "jobs"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be a whole number >= 1, got {getattr(self, key)!r}")
        bad = [m for m in self.methods if m not in METHODS or m == "ensemble"]
        if bad or not self.methods:
            raise ValueError(f"methods must be mc-dropout and/or random, got {list(self.methods)}")
        if not self.seeds or not all(s >= 0 for s in self.seeds):
            raise ValueError(f"seeds must be whole numbers >= 0, got {list(self.seeds)}")


@dataclass(frozen=True)
class ActiveSpec:
    """A checked active-learning file and what its base training config says about the data."""

    file: ActiveFile
    data_path: str
    train_split: str
    batch_size: int

    def summary(self) -> dict:
        """``active.json``'s ``spec``: the file's settings (less ``base``) and the data."""
        f = self.file
        return {"initial": f.initial, "budget": f.budget, "rounds": f.rounds, "steps": f.steps, "methods": list(f.methods),
                "seeds": list(f.seeds), "select": {"passes": f.select.passes, "dropout": f.select.dropout},
                "jobs": f.jobs, "description": f.description, "data_path": self.data_path,
                "train_split": self.train_split, "batch_size": self.batch_size}


def read_active(path: str | os.PathLike, quick: bool = False) -> ActiveSpec:
    """Read and check an active-learning experiment file (errors name the file and key)."""
    path = Path(path)
    raw = read_yaml_file(path, "active-learning config")
    file = read_typed_file(ActiveFile, raw, path)
    if quick and file.quick:
        file = read_typed_file(ActiveFile, deep_merge(raw, file.quick), path)
    try:  # the training config, checked before any work
        cfg = parse_train_config(file.base)
    except ValueError as exc:
        raise ValueError(f"{path}: base: {exc}") from None
    return ActiveSpec(file, cfg.data.path, cfg.data.train_split, cfg.data.batch_size)


def _train(spec: ActiveSpec, run_dir: Path, labelled: list[int], seed: int) -> dict:
    """Train a model on the labelled training images (unless already done); returns its results.json."""
    run = RunFolder(run_dir)
    if run.results_path.exists():
        return run.results
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "labelled.txt", "".join(f"{i}\n" for i in labelled))
    epochs = max(1, math.ceil(spec.file.steps * spec.batch_size / len(labelled)))
    cfg = deep_merge(spec.file.base, {"data": {"train_subset": str(run_dir / "labelled.txt")},
                                      "trainer": {"epochs": epochs, "seed": seed, "out_dir": str(run_dir),
                                                  "progress_bar": False}})
    requested = run_dir / "requested.yaml"
    write_text_atomic(requested, yaml.safe_dump(cfg, sort_keys=False))
    return train(load_config(str(requested)), resume=run.last_checkpoint.exists())


def _chain(spec: ActiveSpec, out: str, seed: int, method: str | None) -> dict:
    """One chain in its own process: a seed's initial model (``method`` None), or a method's rounds after it."""
    import torch

    out = Path(out)
    seed_dir = out / f"seed{seed}"
    pool = open_dataset(spec.data_path, spec.train_split)
    if method is None:  # round 0 of the seed: random initial images
        pool_size = len(pool)
        labelled = sorted(torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed))[: spec.file.initial].tolist())
        r = _train(spec, seed_dir / "round0", labelled, seed)
        return {"seed": seed, "method": "initial", "rounds": [_record(0, labelled, r)]}
    previous = seed_dir / "round0"
    labelled = [int(x) for x in (previous / "labelled.txt").read_text().split()]
    records = []
    for rnd in range(1, spec.file.rounds + 1):
        run_dir = seed_dir / method / f"round{rnd}"
        if not RunFolder(run_dir).results_path.exists():
            model = read_model_file(RunFolder(previous).model_file_path)
            scores = uncertainty_scores([model], pool, method, passes=spec.file.select.passes,
                                        p=spec.file.select.dropout, seed=seed * 1000 + rnd, progress=False)
            chosen = write_selection(scores, pool, spec.file.budget, run_dir / "chosen.txt", exclude=set(labelled))
            labelled = sorted(set(labelled) | set(chosen))
        else:
            labelled = [int(x) for x in (run_dir / "labelled.txt").read_text().split()]
        records.append(_record(rnd, labelled, _train(spec, run_dir, labelled, seed)))
        previous = run_dir
    return {"seed": seed, "method": method, "rounds": records}


def _record(rnd: int, labelled: list[int], results: dict) -> dict:
    m = results["test"]["metrics"]
    return {"round": rnd, "labelled": len(labelled), "rmse": m["rmse"], "abs_rel": m["abs_rel"], "delta1": m["delta1"],
            "train_seconds": results.get("train_seconds")}


def run_active(config: str | os.PathLike, out: str | os.PathLike, quick: bool = False, jobs: int | None = None,
               progress: bool = True, executor: Executor | None = None) -> dict:
    """Run the rounds of an active-learning experiment file and write the table and plot (module docstring).

    ``executor`` runs the chains (default: the one the file's ``executor`` names, local processes unless told).
    """
    spec = read_active(config, quick)
    f = spec.file
    out = Path(out)
    jobs = jobs or f.jobs
    executor = executor or make_executor(f.executor, jobs, out)  # its settings checked before any work
    out.mkdir(parents=True, exist_ok=True)
    prepare(spec.data_path, key="base.data.path", progress=progress)
    if f.initial + f.rounds * f.budget > len(open_dataset(spec.data_path, spec.train_split)):
        raise ValueError(f"{config}: initial + rounds x budget = {f.initial + f.rounds * f.budget} "
                         f"images is more than the training split holds")
    start = time.time()
    tasks = [Task(f"seed{s}", _chain, (spec, str(out), s, None)) for s in f.seeds]
    tasks += [Task(f"seed{s}-{m}", _chain, (spec, str(out), s, m), after=(f"seed{s}",)) for s in f.seeds for m in f.methods]

    def ended(task: Task, o: Outcome) -> None:
        if not o.ok:
            if progress:
                print(f"[{task.name}] " + (f"not started: {o.error}" if o.blocked_by else f"FAILED ({o.error})")
                      + (f", see {o.log}" if o.log else ""), flush=True)
            return
        result = o.value
        if progress and result["method"] == "initial":
            print(f"[seed {result['seed']}] round 0: {result['rounds'][0]['labelled']} images, "
                  f"test RMSE {result['rounds'][0]['rmse']:.4f}", flush=True)
        elif progress:
            print(f"[seed {result['seed']} {result['method']}] RMSE by round: "
                  + ", ".join(f"{r['labelled']} img {r['rmse']:.4f}" for r in result["rounds"]), flush=True)

    outcomes = executor.run(tasks, on_end=ended)
    failed = [name for name, o in outcomes.items() if not o.ok]
    if failed:
        raise RuntimeError(f"active-learning chains failed: {', '.join(failed)}")
    chains = [o.value for o in outcomes.values()]
    summary = {"description": f.description, "spec": spec.summary(),
               "chains": sorted(chains, key=lambda c: (c["seed"], c["method"])), "wall_seconds": round(time.time() - start, 1),
               "quick": quick}
    table = summary_table(summary)
    write_text_atomic(out / "active.json", json.dumps(summary, indent=2))
    write_text_atomic(out / "summary.md", table)
    plot_active(summary, out / "active.png")
    return summary


def _by_round(summary: dict) -> dict[str, dict[int, list[dict]]]:
    """method -> round -> the seeds' records; round 0 (the shared initial models) is every method's start."""
    initial = {c["seed"]: c["rounds"][0] for c in summary["chains"] if c["method"] == "initial"}
    out: dict[str, dict[int, list[dict]]] = {}
    for c in summary["chains"]:
        if c["method"] == "initial":
            continue
        rounds = out.setdefault(c["method"], {})
        rounds.setdefault(0, []).append(initial[c["seed"]])
        for r in c["rounds"]:
            rounds.setdefault(r["round"], []).append(r)
    return out


def summary_table(summary: dict) -> str:
    """Markdown: test RMSE after each round (mean +- standard deviation over seeds, and each seed's)."""
    by_round = _by_round(summary)
    methods = sorted(by_round)
    rounds = sorted({r for m in methods for r in by_round[m]})
    head = ["round", "labelled images"] + [f"RMSE {m} (mean +- std)" for m in methods] + [f"{m} per seed" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rounds:
        cells, seeds = [], []
        count = "-"
        for m in methods:
            recs = by_round[m].get(r, [])
            values = [x["rmse"] for x in recs]
            count = str(recs[0]["labelled"]) if recs else count
            mean = sum(values) / len(values) if values else float("nan")
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else float("nan")
            cells.append(f"{mean:.4f} +- {std:.4f}" if values else "-")
            seeds.append(" / ".join(f"{v:.4f}" for v in values) or "-")
        lines.append("| " + " | ".join([str(r), count, *cells, *seeds]) + " |")
    return "\n".join(lines) + "\n"


def plot_active(summary: dict, path: Path) -> None:
    """Test RMSE against the labelled count, one line per method (mean over seeds, band = min..max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, rounds in sorted(_by_round(summary).items()):
        xs = [rounds[r][0]["labelled"] for r in sorted(rounds)]
        values = [[x["rmse"] for x in rounds[r]] for r in sorted(rounds)]
        ax.plot(xs, [sum(v) / len(v) for v in values], marker="o", label=method)
        ax.fill_between(xs, [min(v) for v in values], [max(v) for v in values], alpha=0.2)
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test RMSE (m)")
    ax.set_title(f"active learning, {len(summary['spec']['seeds'])} seeds (band: min..max)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
