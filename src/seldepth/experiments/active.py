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

For each seed, the initial model is trained once on the initial images; then each method runs
its own chain: the last model chooses ``budget`` images of the training split's unlabelled rest
(``seldepth select``'s code), they join the labelled list, and a new model is trained from
scratch on it. Every model is scored on the test split. The output folder gets
``seedS/round0/`` and ``seedS/METHOD/roundR/`` run folders (with ``labelled.txt``, the chosen
list), ``active.json``, ``summary.md`` (test RMSE after each round, mean and spread over the
seeds) and ``active.png``. Finished trainings are not repeated when the experiment is run again.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from pathlib import Path

import yaml

from seldepth.atomic import atomic_path, write_text_atomic
from seldepth.data.spec import open_dataset, prepare
from seldepth.experiments.spec import deep_merge
from seldepth.experiments.uncertainty import METHODS, uncertainty_scores, write_selection
from seldepth.models.model_file import load_model
from seldepth.training import load_config, parse_train_config, train
from seldepth.training.run_folder import RunFolder

ACTIVE_KEYS = {"base", "initial", "budget", "rounds", "steps", "methods", "seeds", "select", "jobs", "description", "quick"}


def read_active(path: str | os.PathLike, quick: bool = False) -> dict:
    """Read and check an active-learning experiment file (errors name the file and key)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"active-learning config {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with keys base, initial, budget, rounds, ...")
    unknown = set(raw) - ACTIVE_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {', '.join(sorted(unknown))}; expected {', '.join(sorted(ACTIVE_KEYS))}")
    if quick:
        raw = deep_merge(raw, raw.get("quick") or {})
    spec = {"base": raw.get("base") or {}, "initial": raw.get("initial", 64), "budget": raw.get("budget", 64),
            "rounds": raw.get("rounds", 3), "steps": raw.get("steps", 200), "methods": list(raw.get("methods", ["mc-dropout", "random"])),
            "seeds": list(raw.get("seeds", [0, 1, 2])), "select": dict(raw.get("select") or {}), "jobs": raw.get("jobs", 1),
            "description": str(raw.get("description", ""))}
    for key in ("initial", "budget", "rounds", "steps", "jobs"):
        if not isinstance(spec[key], int) or spec[key] < 1:
            raise ValueError(f"{path}: {key} must be a whole number >= 1, got {spec[key]!r}")
    bad = [m for m in spec["methods"] if m not in METHODS or m == "ensemble"]
    if bad or not spec["methods"]:
        raise ValueError(f"{path}: methods must be mc-dropout and/or random, got {spec['methods']}")
    if not spec["seeds"] or not all(isinstance(s, int) and s >= 0 for s in spec["seeds"]):
        raise ValueError(f"{path}: seeds must be whole numbers >= 0, got {spec['seeds']}")
    unknown = set(spec["select"]) - {"passes", "dropout"}
    if unknown:
        raise ValueError(f"{path}: select takes passes and dropout, got {', '.join(sorted(unknown))}")
    try:  # the training config, checked before any work
        cfg = parse_train_config(spec["base"])
    except ValueError as exc:
        raise ValueError(f"{path}: base: {exc}") from None
    spec.update(data_path=cfg.data.path, train_split=cfg.data.train_split, batch_size=cfg.data.batch_size)
    return spec


def _train(spec: dict, run_dir: Path, labelled: list[int], seed: int) -> dict:
    """Train a model on the labelled training images (unless already done); returns its results.json."""
    run = RunFolder(run_dir)
    if run.results_path.exists():
        return run.results
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "labelled.txt", "".join(f"{i}\n" for i in labelled))
    epochs = max(1, math.ceil(spec["steps"] * spec["batch_size"] / len(labelled)))
    cfg = deep_merge(spec["base"], {"data": {"train_subset": str(run_dir / "labelled.txt")},
                                    "trainer": {"epochs": epochs, "seed": seed, "out_dir": str(run_dir),
                                                "progress_bar": False}})
    requested = run_dir / "requested.yaml"
    write_text_atomic(requested, yaml.safe_dump(cfg, sort_keys=False))
    return train(load_config(str(requested)), resume=run.last_checkpoint.exists())


def _chain(job: tuple) -> dict:
    """One (seed, method) chain: the rounds after round 0. Runs in its own process."""
    spec, out, seed, method, threads = job
    import torch


    torch.set_num_threads(threads)
    out = Path(out)
    seed_dir = out / f"seed{seed}"
    pool = open_dataset(spec["data_path"], spec["train_split"])
    if method is None:  # round 0 of the seed: random initial images
        pool_size = len(pool)
        labelled = sorted(torch.randperm(pool_size, generator=torch.Generator().manual_seed(seed))[: spec["initial"]].tolist())
        r = _train(spec, seed_dir / "round0", labelled, seed)
        return {"seed": seed, "method": "initial", "rounds": [_record(0, labelled, r)]}
    previous = seed_dir / "round0"
    labelled = [int(x) for x in (previous / "labelled.txt").read_text().split()]
    records = []
    for rnd in range(1, spec["rounds"] + 1):
        run_dir = seed_dir / method / f"round{rnd}"
        if not RunFolder(run_dir).results_path.exists():
            model = load_model(RunFolder(previous).model_file_path)
            scores = uncertainty_scores([model], pool, method, passes=spec["select"].get("passes", 8),
                                        p=spec["select"].get("dropout", 0.2), seed=seed * 1000 + rnd, progress=False)
            chosen = write_selection(scores, pool, spec["budget"], run_dir / "chosen.txt", exclude=set(labelled))
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
               progress: bool = True) -> dict:
    """Run the rounds of an active-learning experiment file and write the table and plot (module docstring)."""

    spec = read_active(config, quick)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prepare(spec["data_path"], key="base.data.path", progress=progress)
    if spec["initial"] + spec["rounds"] * spec["budget"] > len(open_dataset(spec["data_path"], spec["train_split"])):
        raise ValueError(f"{config}: initial + rounds x budget = {spec['initial'] + spec['rounds'] * spec['budget']} "
                         f"images is more than the training split holds")
    jobs = jobs or spec["jobs"]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    start = time.time()
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked torch threads
    chains = []
    with context.Pool(jobs, maxtasksperchild=1) as pool:
        initial = [(spec, str(out), s, None, threads) for s in spec["seeds"]]
        for result in pool.imap_unordered(_chain, initial):
            chains.append(result)
            if progress:
                print(f"[seed {result['seed']}] round 0: {result['rounds'][0]['labelled']} images, "
                      f"test RMSE {result['rounds'][0]['rmse']:.4f}", flush=True)
        jobs_list = [(spec, str(out), s, m, threads) for s in spec["seeds"] for m in spec["methods"]]
        for result in pool.imap_unordered(_chain, jobs_list):
            chains.append(result)
            if progress:
                print(f"[seed {result['seed']} {result['method']}] RMSE by round: "
                      + ", ".join(f"{r['labelled']} img {r['rmse']:.4f}" for r in result["rounds"]), flush=True)
    summary = {"description": spec["description"], "spec": {k: v for k, v in spec.items() if k != "base"},
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
