"""The experiment file: a base training config, named runs that override it, and what to do after training.

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
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

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
