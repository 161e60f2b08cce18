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
    ablation_by_bin: {runs: [baseline, setup1], layers: [enc_7], groups: 8, group_by: [preferred, assigned]}
    pruning: {sources: [baseline], criteria: [ds, l1], fractions: [0.8, 0.6], finetune_epochs: 2}
    quick: {data: {path: "synthetic:default:320"}, trainer: {epochs: 2}}   # merged into base by --quick
    jobs: 2                    # runs trained at once, each with torch threads = cores / jobs
    caps: [4, 6, 8]            # each run's test split scored again on pixels with gt <= cap (m)
    median_scaling: true       # ... and with per-image median scaling (self-supervised runs)
    executor: {kind: slurm, partition: gpu, time_minutes: 240, cpus_per_task: 8, gpus_per_node: 1}
                               # where the runs run (default local; see ExecutorSpec)

The file is read by jsonargparse into :class:`ExperimentFile` (``dissect``: :class:`DissectSpec`,
``ablation``: :class:`AblationSpec`, ``ablation_by_bin``: :class:`ByBinSpec`, ``pruning``: :class:`PruningSpec`,
``executor``: :class:`ExecutorSpec`), the machinery of the
training config; a key given as null takes its default, and an error names the file and the key.

``{out}`` in a run's string values is the experiment's output folder, so a run can start from
another run's model (``init_from: "{out}/pretrain/model.safetensors"``); such a run waits until
that run has finished (and is not started if it failed).

The output folder gets one run folder per run (``seldepth train``'s layout plus
``dissect/`` and, for the ablated runs, ``ablation/`` and ``ablate_by_bin/LAYER-GROUPING/``), for a ``pruning``
section one fine-tuning run folder per pruned model in ``pruned/`` and ``pruning.{md,csv,json}`` with the curves
``pruning_flops.png`` and ``pruning_latency.png``, ``summary.csv``, ``summary.md`` and
``experiment.json`` (with ``caps``, a second table by depth cap; with ``median_scaling``, a table
of median-scaled metrics and, for self-supervised runs, pose errors; with semantic outputs, mIoU).
Every run's config is checked before the first one starts. A run that
already finished is not trained again; an interrupted one is resumed from its last checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from seldepth.defaults import DEFAULT_BY_BIN_GROUPS, DEFAULT_MIN_CHANNELS, DEFAULT_MIN_KEEP, DEFAULT_ROUND_TO
from seldepth.pruning.criteria import CRITERIA as PRUNING_CRITERIA
from seldepth.pruning.plan import NORMALISATIONS
from seldepth.selectivity import DEFAULT_BINS, DEFAULT_FRACTIONS, parse_bins
from seldepth.selectivity.ablation import MODES

OUT_PLACEHOLDER = "{out}"
EXECUTOR_KINDS = ("local", "submitit-local", "slurm")


def _and(names) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class DissectSpec:
    """``dissect:`` of an experiment file: the dissection of every run after training.

    Attributes:
        bins: bin scheme (as ``seldepth dissect --bins``).
        split: the split dissected (default: the run's test split).
        layers: the layers dissected (default: all of the model's).
        batch_size: images per forward pass.
    """

    bins: str = DEFAULT_BINS
    split: str | None = None
    layers: list[str] | None = None
    batch_size: int = 8

    def __post_init__(self):
        try:
            parse_bins(self.bins)
        except ValueError as exc:
            raise ValueError(f"dissect.{exc}") from None
        if self.batch_size < 1:
            raise ValueError(f"dissect.batch_size must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class AblationSpec:
    """``ablation:`` of an experiment file: which runs have a layer's units ablated after their dissection.

    Attributes:
        runs: the runs ablated (none: no ablation).
        layer: the layer whose units are ablated (top-k, random-k and bottom-k by the run's selectivity).
        fractions: fractions of the layer's units ablated, each in [0, 1].
        seeds: random-k draws per fraction.
        mode: ``zero`` or ``mean`` (what an ablated unit outputs).
        batch_size: images per forward pass.
    """

    runs: list[str] = field(default_factory=list)
    layer: str | None = None
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    seeds: int = 3
    mode: str = "zero"
    batch_size: int = 8

    def __post_init__(self):
        if self.runs and not self.layer:
            raise ValueError(f"ablation.layer: the layer whose units are ablated is missing (ablation.runs names "
                             f"{', '.join(self.runs)})")
        bad = [f for f in self.fractions if not 0 <= f <= 1]
        if bad or not self.fractions:
            raise ValueError(f"ablation.fractions: expected numbers in [0, 1], got {list(self.fractions)}")
        if self.seeds < 1:
            raise ValueError(f"ablation.seeds must be >= 1, got {self.seeds}")
        if self.mode not in MODES:
            raise ValueError(f"ablation.mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.batch_size < 1:
            raise ValueError(f"ablation.batch_size must be >= 1, got {self.batch_size}")


BY_BIN_GROUPINGS = ("preferred", "assigned")


@dataclass(frozen=True)
class ByBinSpec:
    """``ablation_by_bin:`` of an experiment file: which runs get the ablation per depth range after their dissection
    (:func:`~seldepth.selectivity.ablation_by_bin.ablate_by_bin`, on the dissection's split).

    Attributes:
        runs: the runs ablated (none: no ablation per depth range).
        layers: the layers whose units are grouped by depth range, each ablated in turn.
        groups: G coarse depth groups (the dissection's bins: ``sid:64`` -> ``sid:G``).
        group_by: ``preferred`` (each unit's preferred bin in the run's dissection) and / or ``assigned``
            (the bin the regulariser gave it, from the run's ``selectivity_assignment.json``; only for the
            layers the run regularised, the others are left out).
        units: ``all`` and / or ``tuned`` (only the units tuned to a depth range are grouped).
        seeds: random controls per group.
        mode: ``zero`` or ``mean``.
        batch_size: images per forward pass.
    """

    runs: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    groups: int = DEFAULT_BY_BIN_GROUPS
    group_by: tuple[str, ...] = ("preferred",)
    units: tuple[str, ...] = ("all",)
    seeds: int = 3
    mode: str = "zero"
    batch_size: int = 8

    def __post_init__(self):
        if self.runs and not self.layers:
            raise ValueError(f"ablation_by_bin.layers: the layers to ablate are missing (ablation_by_bin.runs names "
                             f"{', '.join(self.runs)})")
        if self.groups < 2:
            raise ValueError(f"ablation_by_bin.groups must be >= 2, got {self.groups}")
        bad = [g for g in self.group_by if g not in BY_BIN_GROUPINGS]
        if bad or not self.group_by:
            raise ValueError(f"ablation_by_bin.group_by: expected some of {', '.join(BY_BIN_GROUPINGS)}, "
                             f"got {list(self.group_by)}")
        bad = [u for u in self.units if u not in ("all", "tuned")]
        if bad or not self.units:
            raise ValueError(f"ablation_by_bin.units: expected some of all, tuned, got {list(self.units)}")
        if self.seeds < 1:
            raise ValueError(f"ablation_by_bin.seeds must be >= 1, got {self.seeds}")
        if self.mode not in MODES:
            raise ValueError(f"ablation_by_bin.mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.batch_size < 1:
            raise ValueError(f"ablation_by_bin.batch_size must be >= 1, got {self.batch_size}")

    def outputs(self, run_dir: Path) -> list[Path]:
        """The folders a run's ablation per depth range writes, one per layer, grouping and unit selection
        (``LAYER-GROUPING`` for all units, ``LAYER-GROUPING-tuned``; ``assigned`` only for the layers the run
        regularised: those in its ``selectivity_assignment.json``)."""
        return [out for *_, out in self.jobs(run_dir)]

    def jobs(self, run_dir: Path) -> list[tuple[str, str, str, Path]]:
        """(layer, grouping, units, output folder) of each ablation of a run (see :meth:`outputs`)."""
        assigned = set()
        path = Path(run_dir) / "selectivity_assignment.json"
        if "assigned" in self.group_by and path.is_file():
            assigned = set(json.loads(path.read_text()))
        folder = Path(run_dir) / "ablate_by_bin"
        return [(layer, g, u, folder / ("-".join((layer, g)) + ("-tuned" if u == "tuned" else "")))
                for layer in self.layers for g in self.group_by for u in self.units
                if g == "preferred" or layer in assigned]


PRUNED_FOLDER = "pruned"  # the output folder's sub-folder of the pruned models' fine-tuning runs


@dataclass(frozen=True)
class PruningSpec:
    """``pruning:`` of an experiment file: runs pruned by each criterion to each FLOPs fraction, then fine-tuned.

    Each (source, criterion, fraction) is a pruned model (:func:`seldepth.pruning.prune` on the source run's
    model, FLOPs counted at its ``data.input_size``), fine-tuned for ``finetune_epochs`` with the source's own
    training config (:func:`seldepth.pruning.finetune.finetune_pruned`) in ``pruned/SOURCE-CRITERION-FFF/``
    (FFF: the fraction in hundredths). After every run, each source and its pruned models are timed side by side
    under ONNX Runtime FP32 (batch 1, ``latency_threads`` threads).

    Attributes:
        sources: the runs pruned (none: no pruning).
        criteria: some of ``ds``, ``ds-inverse``, ``l1``, ``random``.
        fractions: FLOPs fractions kept, each in (0, 1).
        finetune_epochs: fine-tuning epochs of every pruned model (the same budget for all).
        split: the split the DS criteria dissect (default: the source's validation split; never the test split
            the models are scored on, unless told).
        bins: the dissection's bin scheme.
        min_keep, min_channels, round_to, normalise: see :func:`seldepth.pruning.plan.plan_pruning`.
        draw: the random draw of ``random``.
        latency_runs: timed calls per model; latency_threads: ONNX Runtime intra-op threads.

    ``--quick`` fine-tunes for one epoch and times 20 calls per model.
    """

    sources: list[str] = field(default_factory=list)
    criteria: tuple[str, ...] = ("ds", "ds-inverse", "l1", "random")
    fractions: tuple[float, ...] = (0.8, 0.6, 0.4)
    finetune_epochs: int = 2
    split: str | None = None
    bins: str = DEFAULT_BINS
    min_keep: float = DEFAULT_MIN_KEEP
    min_channels: int = DEFAULT_MIN_CHANNELS
    round_to: int = DEFAULT_ROUND_TO
    normalise: str = "rank"
    draw: int = 0
    latency_runs: int = 200
    latency_threads: int = 2

    def __post_init__(self):
        bad = [c for c in self.criteria if c not in PRUNING_CRITERIA]
        if bad or not self.criteria:
            raise ValueError(f"pruning.criteria: expected some of {', '.join(PRUNING_CRITERIA)}, got {list(self.criteria)}")
        bad = [f for f in self.fractions if not 0 < f < 1]
        if bad or not self.fractions:
            raise ValueError(f"pruning.fractions: expected FLOPs fractions in (0, 1), got {list(self.fractions)}")
        if len({round(100 * f) for f in self.fractions}) < len(self.fractions):
            raise ValueError(f"pruning.fractions: two fractions round to the same hundredth (they name the run "
                             f"folders), got {list(self.fractions)}")
        for key in ("finetune_epochs", "min_channels", "round_to", "latency_runs", "latency_threads"):
            if getattr(self, key) < 1:
                raise ValueError(f"pruning.{key} must be >= 1, got {getattr(self, key)}")
        if not 0 <= self.min_keep <= 1:
            raise ValueError(f"pruning.min_keep must be a fraction in [0, 1], got {self.min_keep}")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"pruning.normalise: expected {' or '.join(NORMALISATIONS)}, got {self.normalise!r}")
        try:
            parse_bins(self.bins)
        except ValueError as exc:
            raise ValueError(f"pruning.{exc}") from None

    def jobs(self) -> dict[str, tuple[str, str, float]]:
        """``{pruned run name: (source, criterion, fraction)}``, e.g. ``baseline-ds-060``."""
        return {f"{source}-{criterion}-{round(100 * fraction):03d}": (source, criterion, fraction)
                for source in self.sources for criterion in self.criteria for fraction in self.fractions}


@dataclass(frozen=True)
class ExecutorSpec:
    """``executor:`` of an experiment or active-learning file: where the runs (or chains) run.

    ``kind``: ``local`` (the default: worker processes on this machine, ``jobs`` at once, each with
    ``cores // jobs`` threads), ``slurm`` (one SLURM job per run, submitted with submitit) or
    ``submitit-local`` (submitit's LocalExecutor: the SLURM path, run on this machine, ``jobs`` at once).
    The other keys are for the submitit kinds (the local kinds ignore ``partition`` and ``mem_gb``).

    Attributes:
        kind: ``local``, ``submitit-local`` or ``slurm``.
        folder: submitit's job files and logs (default ``OUT/submitit``; ``{out}`` is the output folder).
        partition: SLURM partition.
        time_minutes: a job's time limit; a job stopped at its limit is requeued (up to 3 times) and
            resumes from its last checkpoint.
        cpus_per_task: CPUs per job, also its torch threads (SLURM; default: the cluster's default).
        gpus_per_node: GPUs per job (set ``trainer.accelerator: gpu`` in the base config to use them).
        mem_gb: memory per job.
        max_running: SLURM jobs queued at once (default: all that are ready).
        parameters: more keyword arguments of submitit's ``AutoExecutor.update_parameters``, e.g.
            ``{slurm_account: proj, slurm_qos: high, slurm_setup: ["module load cuda"],
            slurm_additional_parameters: {reservation: r1}}``.
    """

    kind: str = "local"
    folder: str | None = None
    partition: str | None = None
    time_minutes: int = 24 * 60
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    mem_gb: float | None = None
    max_running: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in EXECUTOR_KINDS:
            raise ValueError(f"executor.kind: unknown executor {self.kind!r}; kinds: {', '.join(EXECUTOR_KINDS)}")
        for key in ("time_minutes", "cpus_per_task", "max_running"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"executor.{key} must be >= 1, got {value}")
        for key in ("gpus_per_node", "mem_gb"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"executor.{key} must be >= 0, got {value}")


@dataclass(frozen=True)
class ExperimentFile:
    """An experiment file as written (the module docstring); :func:`read_experiment` turns it into an
    :class:`ExperimentSpec`.

    Attributes:
        base: a ``seldepth train`` config (any of its keys).
        runs: run name -> overrides, deep-merged into ``base``.
        dissect, ablation, ablation_by_bin: what is done with each run after training.
        pruning: runs pruned and fine-tuned after training.
        quick: overrides merged into ``base`` by ``--quick``.
        jobs: runs at once (local executors), each with ``cores // jobs`` torch threads.
        description: one line for the summary.
        caps: depths (m): each run's test split is scored again on pixels with gt <= cap.
        median_scaling: score each run's test split again with per-image median scaling.
        executor: where the runs run.
    """

    base: dict = field(default_factory=dict)
    runs: dict[str, dict | None] = field(default_factory=dict)
    dissect: DissectSpec = field(default_factory=DissectSpec)
    ablation: AblationSpec = field(default_factory=AblationSpec)
    ablation_by_bin: ByBinSpec = field(default_factory=ByBinSpec)
    pruning: PruningSpec = field(default_factory=PruningSpec)
    quick: dict = field(default_factory=dict)
    jobs: int = 1
    description: str = ""
    caps: tuple[float, ...] = ()
    median_scaling: bool = False
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)

    def __post_init__(self):
        if not self.runs:
            raise ValueError("'runs' must map run names to config overrides")
        for name in self.runs:
            if not str(name).replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"run name {name!r} must be letters, digits, '_' or '-' (it names a folder)")
        for key, names in (("ablation", self.ablation.runs), ("ablation_by_bin", self.ablation_by_bin.runs),
                           ("pruning.sources", self.pruning.sources)):
            missing = [r for r in names if r not in self.runs]
            if missing:
                key = key if "." in key else f"{key}.runs"
                raise ValueError(f"{key} names unknown runs {', '.join(missing)}; runs are {', '.join(self.runs)}")
        clash = [name for name in self.pruning.jobs() if name in self.runs]
        if clash:
            raise ValueError(f"pruning: the pruned model {clash[0]!r} has the name of a run; rename the run")
        if self.jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")
        if any(c <= 0 for c in self.caps):
            raise ValueError(f"caps must be positive depths in metres, got {list(self.caps)}")


@dataclass(frozen=True)
class RunTask:
    """A run's ``task.json``: what its worker does after training (written by the runner, read by the worker)."""

    dissect: DissectSpec = field(default_factory=DissectSpec)
    ablation: AblationSpec = field(default_factory=AblationSpec)
    ablation_by_bin: ByBinSpec = field(default_factory=ByBinSpec)
    caps: tuple[float, ...] = ()
    median_scaling: bool = False
    ablate: bool = False
    ablate_by_bin: bool = False


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _section_types(cls) -> dict[str, type]:
    """The fields of ``cls`` that are dataclasses themselves (sections such as ``dissect``) and their classes."""
    hints = typing.get_type_hints(cls)
    return {name: hints[name] for name in _fields(cls) if dataclasses.is_dataclass(hints[name])}


def _without_nulls(cls, mapping: dict, prefix: str) -> dict:
    """``mapping`` without the keys given as null (they take their defaults); sections checked to be mappings."""
    fields, sections = _fields(cls), _section_types(cls)
    out = {}
    for key, value in mapping.items():
        f = fields.get(key)
        if f is not None and value is None and (f.default is not None or f.default_factory is not dataclasses.MISSING):
            continue
        if key in sections:
            if not isinstance(value, dict):
                raise ValueError(f"{prefix}{key}: expected a mapping of {_and(_fields(sections[key]))}, got {value!r}")
            value = _without_nulls(sections[key], value, f"{prefix}{key}.")
        out[key] = value
    return out


def _explain(cls, mapping: dict, exc: Exception, prefix: str) -> str:
    """jsonargparse's error as one line naming the key (``prefix`` + key), unknown keys listed with the known ones."""
    text = str(exc).strip()
    m = re.match(r"Option '([^']+)' is not accepted", text) or re.match(r"Group '([^']+)' does not accept option", text)
    if m:
        group = m.group(1) if text.startswith("Group") else ""
        section, values = cls, mapping
        for part in filter(None, group.split(".")):
            section, values = _section_types(section)[part], values.get(part) or {}
        known = list(_fields(section))
        unknown = sorted(str(k) for k in values if k not in known)
        where = (prefix + group).rstrip(".")
        if not where:
            return f"unknown keys {', '.join(unknown)}; expected {', '.join(sorted(known))}"
        return f"{where} takes {_and(known)}, got {', '.join(unknown)}"
    m = re.match(r'Parser key "([^"]+)":\s*(.*)', text, re.S)
    if m:
        lines = [re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", line.strip()).replace("NoneType", "null")
                 for line in m.group(2).splitlines() if line.strip()]
        plain = re.match(r"Expected a (.+?)\. Got value: (.*)", lines[0] if lines else "")
        subtypes = next((line[len("Subtypes: "):].strip("[]") for line in lines if line.startswith("Subtypes: ")), None)
        given = next((line[len("Given value: "):] for line in lines if line.startswith("Given value: ")), None)
        if plain:
            reason = f"expected {plain.group(1)}, got {plain.group(2)}"
        elif subtypes and given is not None:
            reason = f"expected {' or '.join(subtypes.split(', '))}, got {given}"
        else:
            reason = " ".join(lines) or "invalid value"
        return f"{prefix}{m.group(1)}: {reason}"
    m = re.match(r"the following arguments are required: (.*)", text)
    if m:
        return ", ".join(f"{prefix}{k.strip()}" for k in m.group(1).split(",")) + ": required"
    return " ".join(text.split())


def parse_typed(cls, mapping: dict | None, prefix: str = ""):
    """A frozen dataclass ``cls`` from a mapping (a YAML file's content), read and checked by jsonargparse.

    Keys given as null take their defaults. ``prefix`` is put before the keys in error messages
    (``"dissect."`` when ``mapping`` is the ``dissect`` section of a file).

    Raises:
        ValueError: an unknown key, a wrong type or a bad value, with the key named.
    """
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, dict):
        where = prefix.rstrip(".") or cls.__name__
        raise ValueError(f"{where}: expected a mapping of {_and(_fields(cls))}, got {type(mapping).__name__}")
    mapping = _without_nulls(cls, mapping, prefix)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls)
    try:
        namespace = parser.parse_object(mapping)
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
        init = instantiate(namespace)
    except ValueError:
        raise
    except Exception as exc:  # jsonargparse reports unknown keys and type errors as ArgumentError
        raise ValueError(_explain(cls, mapping, exc, prefix)) from None
    return cls(**{name: getattr(init, name) for name in _fields(cls)})


def read_typed_file(cls, raw: Any, path: str | os.PathLike):
    """:func:`parse_typed` for a whole file's content; errors name the file and the key."""
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with keys {', '.join(_fields(cls))}")
    try:
        return parse_typed(cls, raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def read_yaml_file(path: str | os.PathLike, what: str) -> Any:
    """A YAML file's content (``{}`` when empty); ``what`` names the file in the error of a missing one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None


@dataclass(frozen=True)
class ExperimentSpec:
    """A parsed experiment file: the merged config of each run and what to do after training.

    ``dissect``, ``ablation`` and ``ablation_by_bin`` are the mappings a run's ``task.json`` holds: checked by
    :class:`DissectSpec`, :class:`AblationSpec` and :class:`ByBinSpec`, with their defaults filled in.
    """

    runs: dict[str, dict]
    dissect: dict = field(default_factory=dict)
    ablation: dict = field(default_factory=dict)
    jobs: int = 1
    description: str = ""
    settings: dict[str, str] = field(default_factory=dict)
    caps: tuple[float, ...] = ()
    median_scaling: bool = False
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    ablation_by_bin: dict = field(default_factory=dict)
    pruning: PruningSpec = field(default_factory=PruningSpec)

    def __post_init__(self):
        object.__setattr__(self, "dissect", dataclasses.asdict(parse_typed(DissectSpec, self.dissect, "dissect.")))
        object.__setattr__(self, "ablation", dataclasses.asdict(parse_typed(AblationSpec, self.ablation, "ablation.")))
        object.__setattr__(self, "ablation_by_bin", dataclasses.asdict(parse_typed(ByBinSpec, self.ablation_by_bin,
                                                                                   "ablation_by_bin.")))

    @property
    def by_bin(self) -> ByBinSpec:
        """``ablation_by_bin`` as a :class:`ByBinSpec`."""
        return parse_typed(ByBinSpec, self.ablation_by_bin, "ablation_by_bin.")

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
    file = read_typed_file(ExperimentFile, read_yaml_file(path, "experiment config"), path)
    base = deep_merge(file.base, file.quick) if quick else file.base
    merged = {str(name): deep_merge(base, overrides or {}) for name, overrides in file.runs.items()}
    pruning = dataclasses.replace(file.pruning, finetune_epochs=1, latency_runs=min(file.pruning.latency_runs, 20)) \
        if quick else file.pruning
    settings = {str(name): describe_overrides(overrides or {}) for name, overrides in file.runs.items()}
    spec = ExperimentSpec(merged, dataclasses.asdict(file.dissect), dataclasses.asdict(file.ablation), file.jobs,
                          file.description, settings, tuple(file.caps), file.median_scaling, file.executor,
                          dataclasses.asdict(file.ablation_by_bin), pruning)
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
