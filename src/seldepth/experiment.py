"""Experiments: train and evaluate a grid of runs from one YAML, dissect them, ablate some, and gather a table.

An experiment file holds a base training config and named runs that override parts of it::

    base:                      # a `seldepth train` config (any of its keys)
      model: meter_xxs
      data: {path: "synthetic:default:2000", input_size: [128, 192]}
      selectivity: {bins: "sid:32", log_layers: [enc_5, enc_7, dec_3]}
    runs:                      # name -> overrides, deep-merged into base
      baseline: {}
      setup1: {selectivity: {layers: [enc_7], weight: 0.1}}
    dissect: {bins: "sid:64", split: test}                   # every run, all its selectivity layers
    ablation: {runs: [baseline, setup1], layer: enc_7, fractions: [0, 0.25, 0.5], seeds: 3}
    quick: {data: {path: "synthetic:default:320"}, trainer: {epochs: 2}}   # merged into base by --quick
    jobs: 2                    # runs trained at once, each with torch threads = cores / jobs
    caps: [4, 6, 8]            # each run's test split scored again on pixels with gt <= cap (m)
    median_scaling: true       # ... and with per-image median scaling (self-supervised runs)

``{out}`` in a run's string values is the experiment's output folder, so a run can start from
another run's model (``init_from: "{out}/pretrain/model.safetensors"``); such a run waits until
that run has finished (and is not started if it failed).

The output folder gets one run folder per run (``seldepth train``'s layout plus
``dissect/`` and, for the ablated runs, ``ablation/``), ``summary.csv``, ``summary.md`` and
``experiment.json`` (with ``caps``, a second table by depth cap; with ``median_scaling``, a table
of median-scaled metrics and, for self-supervised runs, pose errors; with semantic outputs, mIoU).
Every run's config is checked before the first one starts. A run that
already finished is not trained again; an interrupted one is resumed from its last checkpoint.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seldepth.train_config import load_config
from seldepth.atomic import write_text_atomic

EXPERIMENT_KEYS = {"base", "runs", "dissect", "ablation", "quick", "jobs", "description", "caps", "median_scaling"}
OUT_PLACEHOLDER = "{out}"


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed experiment file: the merged config of each run and what to do after training."""

    runs: dict[str, dict]
    dissect: dict = field(default_factory=dict)
    ablation: dict = field(default_factory=dict)
    jobs: int = 1
    description: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    caps: tuple[float, ...] = ()
    median_scaling: bool = False

    def dependencies(self, name: str) -> list[str]:
        """The runs whose output folder ``name``'s ``init_from`` points into (``{out}/RUN/...``)."""
        init = str(self.runs[name].get("init_from") or "")
        if not init.startswith(OUT_PLACEHOLDER + "/"):
            return []
        first = init[len(OUT_PLACEHOLDER) + 1:].split("/", 1)[0]
        return [first] if first in self.runs and first != name else []


def describe_overrides(overrides: dict, prefix: str = "") -> str:
    """A run's overrides as one line, ``key.sub=value`` joined by ``, `` (file paths shortened to their name).

    Example:
        >>> describe_overrides({"teacher": {"depth": "runs/t/model.safetensors", "depth_mode": "fill"}})
        'teacher.depth=model.safetensors, teacher.depth_mode=fill'
    """
    parts = []
    for key, value in (overrides or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            inner = describe_overrides(value, name + ".")
            if inner:
                parts.append(inner)
        else:
            if isinstance(value, str) and ("/" in value or os.sep in value) and Path(value).suffix:
                value = Path(value).name  # a file path, shortened (not a metric name such as val/miou)
            parts.append(f"{name}={value}")
    return ", ".join(parts)


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` with ``override`` merged in (nested dicts merged key by key, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_experiment(path: str | os.PathLike, quick: bool = False) -> ExperimentSpec:
    """Read and check an experiment file (keys, run names, and every run's training config).

    Raises:
        ValueError: naming the file and the key or run at fault.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with keys base and runs")
    unknown = set(raw) - EXPERIMENT_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {', '.join(sorted(unknown))}; expected {', '.join(sorted(EXPERIMENT_KEYS))}")
    runs = raw.get("runs")
    if not isinstance(runs, dict) or not runs:
        raise ValueError(f"{path}: 'runs' must map run names to config overrides")
    for name in runs:
        if not str(name).replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"{path}: run name {name!r} must be letters, digits, '_' or '-' (it names a folder)")
    base = deep_merge(raw.get("base") or {}, raw.get("quick") or {}) if quick else (raw.get("base") or {})
    merged = {str(name): deep_merge(base, overrides or {}) for name, overrides in runs.items()}
    ablation = dict(raw.get("ablation") or {})
    missing = [r for r in ablation.get("runs", []) if r not in merged]
    if missing:
        raise ValueError(f"{path}: ablation.runs names unknown runs {', '.join(missing)}; runs are {', '.join(merged)}")
    jobs = int(raw.get("jobs", 1))
    if jobs < 1:
        raise ValueError(f"{path}: jobs must be >= 1, got {jobs}")
    settings = {str(name): describe_overrides(overrides or {}) for name, overrides in runs.items()}
    try:
        caps = tuple(float(c) for c in raw.get("caps") or ())
    except (TypeError, ValueError):
        raise ValueError(f"{path}: caps must be a list of depths in metres, got {raw.get('caps')!r}") from None
    if any(c <= 0 for c in caps):
        raise ValueError(f"{path}: caps must be positive depths in metres, got {list(caps)}")
    if not isinstance(raw.get("median_scaling", False), bool):
        raise ValueError(f"{path}: median_scaling must be true or false, got {raw.get('median_scaling')!r}")
    spec = ExperimentSpec(merged, dict(raw.get("dissect") or {}), ablation, jobs, str(raw.get("description", "")),
                          settings, caps, bool(raw.get("median_scaling", False)))
    for name, cfg in merged.items():
        init = str(cfg.get("init_from") or "")
        if init.startswith(OUT_PLACEHOLDER) and not spec.dependencies(name):
            raise ValueError(f"{path}: run {name!r}: init_from {init!r} must be {OUT_PLACEHOLDER}/RUN/model.safetensors "
                             f"with RUN another run of this file ({', '.join(n for n in merged if n != name)})")
        for dep in spec.dependencies(name):
            if name in spec.dependencies(dep):
                raise ValueError(f"{path}: runs {name!r} and {dep!r} start from each other's models")
    return spec


def _fill_out(value, out: Path):
    """``value`` with ``{out}`` in its strings replaced by the experiment's output folder."""
    if isinstance(value, dict):
        return {k: _fill_out(v, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_out(v, out) for v in value]
    return value.replace(OUT_PLACEHOLDER, str(out)) if isinstance(value, str) else value


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
    from seldepth.data.spec import prepare

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
            ready = [(n, d) for n, d in pending if all((folders[x] / "run_done.json").exists() for x in spec.dependencies(n))]
            if not ready:
                if not running:  # only runs waiting for runs that will never finish
                    raise RuntimeError(f"runs {', '.join(n for n, _ in pending)} wait on each other's models")
                break
            name, run_dir = ready[0]
            pending.remove(ready[0])
            if (run_dir / "run_done.json").exists():
                if progress:
                    print(f"[{name}] already done, skipped", flush=True)
                continue
            write_text_atomic(run_dir / "task.json", json.dumps({**task, "ablate": name in spec.ablation.get("runs", [])}))
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            log = open(run_dir / "run.log", "ab")
            proc = subprocess.Popen([sys.executable, "-m", "seldepth.experiment", str(run_dir)], stdout=log,
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
    import torch

    from seldepth.data.spec import open_dataset
    from seldepth.models.model_file import load_model
    from seldepth.selectivity.dissect import dissect
    from seldepth.training import train

    task = json.loads((run_dir / "task.json").read_text())
    cfg = load_config(str(run_dir / "requested.yaml"))
    t0 = time.time()
    if not (run_dir / "results.json").exists():
        train(cfg, resume=(run_dir / "checkpoints" / "last.ckpt").exists())
    t1 = time.time()
    model = load_model(run_dir / "model.safetensors")
    d = task.get("dissect") or {}
    split = d.get("split", cfg.data.test_split)
    dataset = open_dataset(cfg.data.path, split)
    if task.get("caps") or task.get("median_scaling"):  # the test split scored again under the extra settings
        from seldepth.evaluation import evaluate
        from seldepth.protocol import get_protocol

        test = dataset if split == cfg.data.test_split else open_dataset(cfg.data.path, cfg.data.test_split)
        protocol = get_protocol(cfg.protocol, caps=tuple(task.get("caps") or ()),
                                median_scaling=bool(task.get("median_scaling")))
        write_text_atomic(run_dir / "test_extra.json", json.dumps(evaluate(model, test, protocol, progress=False), indent=2))
    bins = d.get("bins", "sid:64")
    result = dissect(model, dataset, layers=d.get("layers"), bins=bins, depth_range=tuple(cfg.selectivity.depth_range),
                     batch_size=int(d.get("batch_size", 8)), progress=False, dtype=torch.float32)
    result.info.update(model=str(run_dir / "model.safetensors"), data=cfg.data.path, split=split)
    result.save(run_dir / "dissect")
    t2 = time.time()
    if task.get("ablate"):
        from seldepth.report.ablation_plots import plot_ablation
        from seldepth.selectivity.ablation import ablate

        a = task["ablation"]
        layer = a["layer"]
        ablation = ablate(model, dataset, layer, fractions=tuple(a.get("fractions", (0, 0.1, 0.25, 0.5, 0.75))),
                          seeds=int(a.get("seeds", 3)), mode=a.get("mode", "zero"), bins=bins,
                          depth_range=tuple(cfg.selectivity.depth_range), protocol=cfg.protocol,
                          batch_size=int(a.get("batch_size", 8)), progress=False,
                          selectivity=result.layers[layer].ds if layer in result.layers else None)
        ablation.info.update(model=str(run_dir / "model.safetensors"), data=cfg.data.path, split=split)
        if layer in result.layers:
            ablation.bins = f"{result.bins.spec()} (the run's dissection)"
        ablation.save(run_dir / "ablation")
        plot_ablation(ablation.to_dict(), run_dir / "ablation" / "ablation.png")
    done = {"train_seconds": round(t1 - t0, 1), "dissect_seconds": round(t2 - t1, 1),
            "ablation_seconds": round(time.time() - t2, 1), "threads": torch.get_num_threads()}
    write_text_atomic(run_dir / "run_done.json", json.dumps(done, indent=2))


def _row(name: str, run_dir: Path) -> dict:
    """One finished run's line of the summary (``rmse_change_pct`` is filled in by :func:`gather`)."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    results = json.loads((run_dir / "results.json").read_text())
    dissection = json.loads((run_dir / "dissect" / "selectivity.json").read_text())
    done = json.loads((run_dir / "run_done.json").read_text())
    sel = cfg.get("selectivity", {})
    m = results["test"]["metrics"]
    row = {"run": name, "layers": "+".join(sel.get("layers") or []) or "-",
           "lambda": sel.get("weight") if sel.get("layers") else None,
           "bins": sel.get("bins") if sel.get("layers") else None,
           "statistics": sel.get("statistics") if sel.get("layers") else None,
           "rmse": m["rmse"], "abs_rel": m["abs_rel"], "delta1": m["delta1"],
           "rmse_change_pct": None,
           "mean_ds": dissection["mean_ds"], "train_seconds": results.get("train_seconds"),
           "run_seconds": round(sum(v for k, v in done.items() if k.endswith("_seconds")), 1)}
    row.update({f"ds_{k}": v["mean_ds"] for k, v in dissection["layers"].items()})
    if "semantics" in results["test"]:
        row["miou"] = results["test"]["semantics"]["miou"]
    extra = run_dir / "test_extra.json"
    if extra.exists():
        c = json.loads(extra.read_text())
        for cap in c["protocol"]["caps"]:
            for metric in ("rmse", "abs_rel", "delta1"):
                row[f"{metric}@{cap:g}m"] = c["metrics"][f"{metric}@{cap:g}m"]
        if c["protocol"].get("median_scaling"):
            row.update({f"{k}_scaled": c["metrics"][k] for k in ("rmse", "abs_rel", "delta1")})
            row["scale_ratio_spread"] = c["metrics"]["scale_ratio_spread"]
    pose = results.get("pose") or {}
    if "translation_deg" in pose:
        row["pose_translation_deg"], row["pose_rotation_deg"] = pose["translation_deg"], pose["rotation_deg"]
    return row


def gather(spec: ExperimentSpec, folders: dict[str, Path], out: Path, wall_seconds: float, jobs: int, quick: bool) -> dict:
    """Write ``summary.csv``, ``summary.md`` and ``experiment.json`` from the finished runs."""
    finished = {n: d for n, d in folders.items() if (d / "run_done.json").exists()}
    baseline = next(iter(finished), None)  # the first finished run is the reference of the changes
    rows = [_row(n, d) for n, d in finished.items()]
    for row in rows:
        row["rmse_change_pct"] = 100 * (row["rmse"] / rows[0]["rmse"] - 1)
        row["setting"] = spec.settings.get(row["run"], "")
    if rows:
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(out / "summary.csv", text.getvalue())
    regularised = list(dict.fromkeys(l for cfg in spec.runs.values() for l in (cfg.get("selectivity", {}).get("layers") or [])))
    md = format_summary(rows, regularised, baseline)
    if spec.caps and rows:
        md += "\n" + format_caps(rows, spec.caps)
    if spec.median_scaling and rows:
        md += "\n" + format_scaled(rows)
    write_text_atomic(out / "summary.md", md)
    summary = {"runs": rows, "baseline": baseline, "wall_seconds": round(wall_seconds, 1), "jobs": jobs, "quick": quick,
               "ablation": _ablation_summary(finished)}
    write_text_atomic(out / "experiment.json", json.dumps(summary, indent=2))
    return summary


def _ablation_summary(finished: dict[str, Path]) -> dict:
    out = {}
    for name, run_dir in finished.items():
        path = run_dir / "ablation" / "ablation.json"
        if path.exists():
            a = json.loads(path.read_text())
            out[name] = {"layer": a["layer"], "fractions": a["fractions"],
                         "top_minus_random_rmse": a["top_minus_random_rmse"]}
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_summary(rows: list[dict], regularised: list[str], baseline: str | None) -> str:
    """The Markdown table: metrics, RMSE change against the first run, mean DS of the regularised layers and overall.

    The setting columns are the selectivity regulariser's (regularised layers, lambda, bins) when
    some run is regularised, else one ``setting`` column with each run's overrides of the base.
    """
    ds_cols = [f"ds_{l}" for l in regularised]
    setting_head = ["regularised", "lambda", "bins"] if regularised else ["setting"]
    semantic = any(r.get("miou") is not None for r in rows)
    head = ["run", *setting_head, "RMSE (m)", "AbsRel", "delta1", *(["mIoU"] if semantic else []), "RMSE vs " + (baseline or "first"),
            *[f"DS {l}" for l in regularised], "mean DS (all layers)", "train (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = next((r for r in rows if r["run"] == baseline), None)
    for r in rows:
        ds = []
        for c in ds_cols:
            v = r.get(c)
            delta = "" if base is None or r is base or v is None else f" ({v - base.get(c, 0):+.3f})"
            ds.append(_fmt(v, ".3f") + delta)
        overall = _fmt(r["mean_ds"], ".3f") + ("" if base is None or r is base else f" ({r['mean_ds'] - base['mean_ds']:+.3f})")
        setting = ([r["layers"], _fmt(r["lambda"], "g"), r["bins"] or "-"] if regularised
                   else [r.get("setting") or "(base)"])
        miou = [_fmt(r.get("miou"), ".4f")] if semantic else []
        lines.append("| " + " | ".join([
            r["run"], *setting, f"{r['rmse']:.4f}", f"{r['abs_rel']:.4f}",
            f"{r['delta1']:.4f}", *miou, _fmt(r["rmse_change_pct"], "+.1f") + "%", *ds, overall,
            _fmt(r["train_seconds"], ".0f")]) + " |")
    return "\n".join(lines) + "\n"


def format_scaled(rows: list[dict]) -> str:
    """The Markdown table of the median-scaled test metrics, the ratios' spread and the pose errors."""
    head = ["run", "RMSE (scaled)", "AbsRel (scaled)", "delta1 (scaled)", "scale spread (std/mean)",
            "pose translation dir. (deg)", "pose rotation (deg)", "train (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_fmt(r.get(k), f) for k, f in (("rmse_scaled", ".4f"), ("abs_rel_scaled", ".4f"), ("delta1_scaled", ".4f"),
                                                 ("scale_ratio_spread", ".4f"), ("pose_translation_deg", ".2f"),
                                                 ("pose_rotation_deg", ".3f"), ("train_seconds", ".0f"))]
        lines.append("| " + " | ".join([r["run"], *cells]) + " |")
    return "\n".join(lines) + "\n"


def format_caps(rows: list[dict], caps: tuple[float, ...]) -> str:
    """The Markdown table of the test metrics on pixels with gt <= each cap (RMSE, AbsRel, delta1 per cap)."""
    head = ["run"] + [f"{m} <= {c:g} m" for c in caps for m in ("RMSE", "AbsRel", "delta1")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_fmt(r.get(f"{m}@{c:g}m"), ".4f") for c in caps for m in ("rmse", "abs_rel", "delta1")]
        lines.append("| " + " | ".join([r["run"], *cells]) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # the per-run worker started by run_experiment
    run_one(Path(sys.argv[1]))
