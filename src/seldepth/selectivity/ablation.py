"""Unit ablation: does silencing a layer's most depth-selective units hurt depth more than silencing random ones?

The finding to test (You et al., ICCV 2021; see docs/references.md): ablating units with higher
selectivity degrades depth faster than ablating random units. For one layer of K units and each
fraction f, k = round(f * K) units (rounded half up) are ablated:

    top      the k units of highest DS (from :func:`~seldepth.selectivity.dissect.dissect`)
    random   k units drawn at random, once per seed (seeds 0 .. seeds - 1)
    bottom   the k units of lowest DS

and the model is scored with the metrics of ``seldepth eval`` (RMSE, AbsRel, delta1). Orders
are fixed per curve, so the ablated sets are nested: the units of a smaller fraction stay
ablated at the larger ones. Ties in DS are broken by unit index (lower index first).

Ablation replaces the layer's output channels (a forward hook, removed afterwards):
    ``zero``  A_k = 0
    ``mean``  A_k = the unit's mean activation over all positions and all images of the data set

Speed: the data are read and preprocessed once; every batch is then run once per distinct set
of ablated units (fraction 0 is the baseline shared by all curves, and equal sets, e.g. all K
units, run once). The modules that finish before the ablated layer starts do not depend on the
ablation: their outputs are recorded in the baseline pass and replayed in the ablated passes, so
only the rest of the network is recomputed (checked on the first batch to reproduce the baseline
exactly; otherwise full passes are run).

Example:
    >>> model = load_model("meter_xxs_nyu.safetensors")
    >>> result = ablate(model, open_dataset("nyu:nyu_test_sample"), "enc_7", mode="zero")
    >>> print(result.format_table())
    >>> result.save("runs/ablate")
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from seldepth.atomic import write_text_atomic
from seldepth.data.collate import collate_samples
from seldepth.data.skipping import first_sample, sample_batches
from seldepth.defaults import (
    DEFAULT_ABLATION_BATCH_SIZE,
    DEFAULT_ABLATION_SEEDS,
    DEFAULT_FRACTIONS,
)
from seldepth.evaluation.metrics import DepthMetrics
from seldepth.evaluation.protocol import Protocol, get_protocol
from seldepth.inference import model_input, predict_depth
from seldepth.selectivity.bins import (
    DEFAULT_BINS,
    DEFAULT_DEPTH_RANGE,
    BinScheme,
    parse_bins,
)
from seldepth.selectivity.dissect import check_depth_range, dissect, resolve_layers

CURVES = ("top", "random", "bottom")
MODES = ("zero", "mean")
METRICS = ("rmse", "abs_rel", "delta1")


# ---------------------------------------------------------------------------------------------
# Which units
# ---------------------------------------------------------------------------------------------

def num_ablated(fraction: float, num_units: int) -> int:
    """k = round(fraction * K), rounded half up (0.5 * 5 -> 3, unlike Python's ``round``)."""
    return math.floor(fraction * num_units + 0.5)


def ablation_order(selectivity: torch.Tensor, curve: str, seed: int = 0) -> torch.Tensor:
    """The order in which a curve ablates units: its first k entries are the k units ablated.

    Args:
        selectivity: (K,) DS of the layer's units.
        curve: ``top`` (DS descending), ``bottom`` (DS ascending) or ``random``
            (a permutation drawn with ``torch.randperm`` from a generator seeded with ``seed``).
        seed: seed of the ``random`` curve (ignored by the others).

    Returns:
        (K,) int64 unit indices. Ties in DS keep the lower unit index first.
    """
    ds = torch.as_tensor(selectivity).detach().cpu().double().flatten()
    if curve == "top":
        return torch.sort(-ds, stable=True).indices
    if curve == "bottom":
        return torch.sort(ds, stable=True).indices
    if curve == "random":
        return torch.randperm(ds.numel(), generator=torch.Generator().manual_seed(int(seed)))
    raise ValueError(f"curve: expected one of {', '.join(CURVES)}, got {curve!r}")


@contextmanager
def ablate_units(module: nn.Module, units: Sequence[int] | torch.Tensor, fill: torch.Tensor | None = None) -> Iterator[None]:
    """Within the block, replace channels ``units`` of ``module``'s output by ``fill`` (a forward hook).

    The output must be a tensor (B, K, ...) with units along dim 1. The new output is
    ``where(keep, output, fill)`` with ``keep`` a (1, K, 1, ...) mask, i.e.
    ``output * keep + fill * (1 - keep)`` exactly (a NaN or inf in an ablated channel does not
    leak). The hook is removed on exit, also after an error.

    Args:
        module: the layer whose output is ablated.
        units: indices of the ablated channels (any order; empty: no change).
        fill: (K,) value of each channel when ablated (only the ablated entries are used);
            None ablates to zero.

    Example:
        >>> with ablate_units(model.encoder.blocks[6], [0, 5]):
        ...     depth = model(x)
    """
    units = torch.as_tensor(units, dtype=torch.long).flatten()
    masks: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(mod, args, output):
        if not isinstance(output, torch.Tensor) or output.ndim < 2:
            what = f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__
            raise ValueError(f"layer: ablated modules must output (B, K, ...) tensors, got {what}")
        k = output.shape[1]
        key = (k, output.ndim, output.device, output.dtype)
        if key not in masks:
            if units.numel() and (int(units.min()) < 0 or int(units.max()) >= k):
                raise ValueError(f"units: indices must lie in [0, {k}) for a layer of {k} units, "
                                 f"got {units.min().item()}..{units.max().item()}")
            keep = torch.ones(k, dtype=torch.bool)
            keep[units] = False
            values = torch.zeros(k, dtype=torch.float64) if fill is None else torch.as_tensor(fill).detach().double().flatten()
            if values.numel() != k:
                raise ValueError(f"fill: expected ({k},) values, one per unit, got {tuple(values.shape)}")
            shape = (1, k) + (1,) * (output.ndim - 2)
            masks[key] = (keep.view(shape).to(output.device), values.view(shape).to(output.device, output.dtype))
        keep, values = masks[key]
        return torch.where(keep, output, values)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------------
# Truncated passes: the layer's width and mean activation
# ---------------------------------------------------------------------------------------------

class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the probed layer has run."""


@torch.no_grad()
def _run_until(model: nn.Module, module: nn.Module, x: torch.Tensor, on_output) -> bool:
    """Forward ``x`` until ``module`` has produced its output; ``on_output(output)`` sees it. False if it never ran."""
    ran = []

    def hook(mod, args, output):
        on_output(output)
        ran.append(True)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return bool(ran)


def ablated_layer_units(model: nn.Module, module: nn.Module, dataset: Dataset, layer: str, path: str) -> int:
    """K of the layer to ablate: its output on the first readable sample (a DatasetError naming the data when none
    is: all skipped under ``on_error="skip"``), which must be a (B, K, h, w) tensor; the model runs only up to it."""
    outputs = []
    first = model_input(model, first_sample(dataset)["image"][None])
    if not _run_until(model, module, first, lambda out: outputs.append(out)):
        raise ValueError(f"layer: {layer!r} ({path}) did not run in the model's forward pass")
    out = outputs[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        what = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"layer: {layer!r} ({path}) outputs {what}; ablated layers must output (B, K, h, w) tensors")
    return int(out.shape[1])


class _ChannelMeans:
    """Forward hook accumulating each channel's sum over batch and positions in float64."""

    def __init__(self, name: str):
        self.name = name
        self.sums: torch.Tensor | None = None
        self.count = 0

    def __call__(self, module, args, output) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim < 2:
            raise ValueError(f"layer: {self.name!r} must output a (B, K, ...) tensor")
        x = output.detach().double().transpose(0, 1).reshape(output.shape[1], -1)
        self.sums = x.sum(1) if self.sums is None else self.sums + x.sum(1)
        self.count += x.shape[1]

    def means(self) -> torch.Tensor:
        if self.sums is None or self.count == 0:
            raise ValueError(f"layer: {self.name!r} did not run on the data set")
        return (self.sums / self.count).cpu()


@torch.no_grad()
def channel_means(model: nn.Module, dataset: Dataset, layer: str, batch_size: int = 8, progress: bool = False) -> torch.Tensor:
    """Each unit's mean activation over all positions and all images of a data set.

    The forward pass stops after the layer (the rest of the network is not run).

    Args:
        model: a depth model; it sees its preprocessed input.
        dataset: sample dicts with ``image`` (3, H, W) in [0, 1].
        layer: a layer name or module path (see :func:`~seldepth.selectivity.dissect.resolve_layers`).
        batch_size: of the data loader.
        progress: show a progress bar.

    Returns:
        (K,) float64 mean of each output channel.
    """
    path = resolve_layers(model, [layer])[layer]
    module = dict(model.named_modules())[path]
    acc = _ChannelMeans(layer)
    was_training = model.training
    model.eval()
    try:
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
        for batch in tqdm(sample_batches(loader), total=len(loader), desc=f"means {layer}", unit="batch", disable=not progress):
            _run_until(model, module, model_input(model, batch["image"]), lambda out: acc(module, (), out))
    finally:
        model.train(was_training)
    if acc.count == 0 and len(dataset):
        first_sample(dataset)  # DatasetError naming the data when no sample could be read
    return acc.means()


# ---------------------------------------------------------------------------------------------
# Replaying the part of the network that does not depend on the ablation
# ---------------------------------------------------------------------------------------------

def _clone(obj: Any) -> Any:
    """A deep copy of a tensor or a (named)tuple / list / dict of them; TypeError for anything else."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_clone(v) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_clone(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    raise TypeError(type(obj).__name__)


class _PrefixReplay:
    """Records the outputs of the modules that finish before the ablated layer starts; replays them.

    The first recorded pass finds the plan: the largest submodules that complete before the
    target module starts, are called once per pass and return tensors (or containers of them).
    Their outputs cannot depend on the ablation. During :meth:`replay` their ``forward`` returns
    a copy of the recorded output (the instance attribute is removed afterwards).
    """

    def __init__(self, model: nn.Module, target: str):
        self.model = model
        self.target = target
        self.modules = dict(model.named_modules())
        self.plan: list[str] | None = None
        self.outputs: dict[str, Any] = {}
        self.enabled = True

    @contextmanager
    def record(self) -> Iterator[None]:
        """Record during one baseline forward pass."""
        self.outputs = {}
        if not self.enabled:
            yield
            return
        first = self.plan is None
        state = {"started": False}
        calls: dict[str, int] = {}
        unusable: set[str] = set()

        def pre_target(mod, args):
            state["started"] = True

        def make_hook(name):
            def hook(mod, args, output):
                calls[name] = calls.get(name, 0) + 1
                if state["started"]:
                    return
                try:
                    self.outputs[name] = _clone(output)
                except TypeError:
                    unusable.add(name)
                    return
                if first:  # its submodules are covered by it now
                    prefix = name + "."
                    for other in [n for n in self.outputs if n.startswith(prefix)]:
                        del self.outputs[other]
            return hook

        names = [n for n in self.modules if n and n != self.target] if first else list(self.plan)
        handles = [self.modules[self.target].register_forward_pre_hook(pre_target)]
        handles += [self.modules[n].register_forward_hook(make_hook(n)) for n in names]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        if not first and set(self.outputs) != set(self.plan):  # this batch took another path: compute everything
            self.disable()
        if first:
            if not state["started"]:
                raise ValueError(f"layer: {self.target!r} did not run in the model's forward pass")
            self.plan = [n for n in self.outputs if calls.get(n) == 1 and n not in unusable]
            self.outputs = {n: self.outputs[n] for n in self.plan}

    @contextmanager
    def replay(self) -> Iterator[None]:
        """Within the block, the planned modules return their recorded outputs instead of computing."""
        if not self.enabled or not self.plan:
            yield
            return
        patched = []
        try:
            for name in self.plan:
                module = self.modules[name]
                own = module.__dict__.get("forward")
                module.forward = (lambda *args, _out=self.outputs[name], **kwargs: _clone(_out))
                patched.append((module, own))
            yield
        finally:
            for module, own in patched:
                if own is None:
                    del module.forward
                else:
                    module.forward = own

    def disable(self) -> None:
        self.enabled = False
        self.plan = []
        self.outputs = {}


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

@dataclass
class AblationResult:
    """Depth metrics of a model against the fraction of one layer's units ablated.

    Attributes:
        layer: layer name as given (e.g. ``enc_7``).
        module: its module path in ``named_modules()``.
        num_units: K, the layer's output channels.
        mode: ``zero`` or ``mean``.
        bins: bin spec of the dissection that ranked the units (``precomputed`` when the
            selectivity was given).
        protocol: name of the evaluation protocol.
        fractions: ablated fractions, ascending, starting at 0.
        seeds: number of random draws (seeds 0 .. seeds - 1).
        baseline: {"rmse", "abs_rel", "delta1"} of the intact model.
        curves: {"top" | "random" | "bottom": one row per fraction}; rows hold ``fraction``,
            ``k`` and the metrics; random rows hold the means over seeds, ``rmse_std``
            (ddof 0) and ``rmse_per_seed``.
        selectivity: (K,) float64 DS that ranked the units.
        orders: {"top": [(K,)], "bottom": [(K,)], "random": [(K,) per seed]} int64 ablation
            orders (:func:`ablation_order`); the first k entries are the units ablated.
        num_images: images scored.
        info: provenance (``model``, ``data``, ``split``), saved with the results.
    """

    layer: str
    module: str
    num_units: int
    mode: str
    bins: str
    protocol: str
    fractions: list[float]
    seeds: int
    baseline: dict[str, float]
    curves: dict[str, list[dict]]
    selectivity: torch.Tensor
    orders: dict[str, list[torch.Tensor]]
    num_images: int
    info: dict = field(default_factory=dict)

    def ablated(self, curve: str, fraction: float, seed: int = 0) -> list[int]:
        """The units ablated by ``curve`` at ``fraction`` (``seed`` indexes the random draws), ascending."""
        if curve not in self.orders:
            raise ValueError(f"curve: expected one of {', '.join(CURVES)}, got {curve!r}")
        order = self.orders[curve][seed if curve == "random" else 0]
        return sorted(int(u) for u in order[: num_ablated(fraction, self.num_units)])

    @property
    def top_minus_random_rmse(self) -> list[float]:
        """Per fraction: top-k RMSE minus the mean random-k RMSE (positive: selective units matter more)."""
        return [t["rmse"] - r["rmse"] for t, r in zip(self.curves["top"], self.curves["random"])]

    def to_dict(self) -> dict:
        """The JSON document written to ``ablation.json`` (read by the HTML report)."""
        return {"info": dict(self.info), "layer": self.layer, "num_units": self.num_units, "mode": self.mode,
                "bins": self.bins, "protocol": self.protocol, "fractions": list(self.fractions), "seeds": self.seeds,
                "baseline": dict(self.baseline), "curves": {c: [dict(row) for row in self.curves[c]] for c in CURVES},
                "top_minus_random_rmse": self.top_minus_random_rmse}

    def format_table(self) -> str:
        """A Markdown table: fraction | k | top-k RMSE | random-k RMSE (mean ± std over seeds) | bottom-k RMSE."""
        return format_table(self.to_dict())

    def verdicts(self) -> list[str]:
        """One line per fraction > 0: does top-k ablation hurt more than random-k beyond the seeds' spread?

        The spread is the range (min .. max) of the random draws' RMSE.
        """
        lines = []
        for top, rnd in zip(self.curves["top"], self.curves["random"]):
            if top["k"] == 0:
                continue
            lo, hi = min(rnd["rmse_per_seed"]), max(rnd["rmse_per_seed"])
            diff = top["rmse"] - rnd["rmse"]
            tol = 1e-9 + 1e-6 * abs(rnd["rmse"])  # float rounding is no difference
            if top["rmse"] > hi + tol:
                verdict = "top-k hurts MORE than random-k, beyond the seeds' spread"
            elif top["rmse"] < lo - tol:
                verdict = "top-k hurts LESS than random-k, beyond the seeds' spread"
            else:
                verdict = "no clear difference: top-k lies within the seeds' spread"
            lines.append(f"fraction {top['fraction']:g} (k={top['k']}): {verdict} (top-k RMSE {top['rmse']:.4f}, "
                         f"random-k {rnd['rmse']:.4f} ± {rnd['rmse_std']:.4f}, range {lo:.4f}..{hi:.4f} over "
                         f"{len(rnd['rmse_per_seed'])} seeds; difference {diff:+.4f} m)")
        return lines

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``ablation.json``, ``ablation.csv`` (one row per curve and fraction) and ``ablation.md``.

        Returns:
            {"json": path, "csv": path, "md": path}.
        """
        out = Path(out_dir)
        doc = self.to_dict()
        table = io.StringIO()
        writer = csv.writer(table)
        writer.writerow(["curve", "fraction", "k", "rmse", "rmse_std", "abs_rel", "delta1", "seeds"])
        for curve in CURVES:
            for row in doc["curves"][curve]:
                n = len(row.get("rmse_per_seed", [None]))
                writer.writerow([curve, row["fraction"], row["k"], row["rmse"], row.get("rmse_std", 0.0),
                                 row["abs_rel"], row["delta1"], n])
        json_path = write_text_atomic(out / "ablation.json", json.dumps(doc, indent=1))
        csv_path = write_text_atomic(out / "ablation.csv", table.getvalue())
        md_path = write_text_atomic(out / "ablation.md", self.format_table() + "\n\n"
                                    + "\n".join(f"- {line}" for line in self.verdicts()) + "\n")
        return {"json": json_path, "csv": csv_path, "md": md_path}


def format_table(result: dict | AblationResult) -> str:
    """The Markdown table of an ablation (a :class:`AblationResult` or its ``to_dict()``), headed by its setup."""
    d = result.to_dict() if isinstance(result, AblationResult) else result
    base = d["baseline"]
    head = (f"Ablation of {d['layer']} ({d['num_units']} units, mode {d['mode']}, units ranked by DS with bins "
            f"{d['bins']}), protocol {d['protocol']}; baseline RMSE {base['rmse']:.4f}, AbsRel {base['abs_rel']:.4f}, "
            f"delta1 {base['delta1']:.4f}")
    lines = [head,
             "",
             f"| fraction | k | top-k RMSE | random-k RMSE (mean ± std over {d['seeds']} seeds) | bottom-k RMSE |",
             "|---:|---:|---:|---:|---:|"]
    for top, rnd, bottom in zip(d["curves"]["top"], d["curves"]["random"], d["curves"]["bottom"]):
        lines.append(f"| {top['fraction']:g} | {top['k']} | {top['rmse']:.4f} | {rnd['rmse']:.4f} ± {rnd['rmse_std']:.4f} "
                     f"| {bottom['rmse']:.4f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------

def check_ablation_args(model: nn.Module, layer: str, fractions=DEFAULT_FRACTIONS, seeds: int = DEFAULT_ABLATION_SEEDS,
                        mode: str = "zero") -> tuple[str, list[float]]:
    """Check the arguments of :func:`ablate` (no data is read).

    Returns:
        (module path of ``layer``, the fractions sorted ascending, deduplicated, with 0 added).

    Raises:
        ValueError: naming the argument (``layer``, ``fractions``, ``seeds`` or ``mode``).
    """
    if not isinstance(layer, str) or not layer or "," in layer:
        raise ValueError(f"layer: expected one layer name, got {layer!r}")
    path = resolve_layers(model, [layer])[layer]
    try:
        values = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise ValueError(f"fractions: expected numbers in [0, 1], got {fractions!r}") from None
    bad = [f for f in values if not (0.0 <= f <= 1.0)]  # also NaN
    if bad:
        raise ValueError(f"fractions: expected numbers in [0, 1], got {', '.join(f'{f:g}' for f in bad)}")
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ValueError(f"seeds: expected an integer >= 1 (number of random draws), got {seeds!r}")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return path, sorted(set(values) | {0.0})


def _metrics(metric) -> dict[str, float]:
    values = metric.compute()
    return {name: float(values[name]) for name in METRICS}


@torch.no_grad()
def ablate(model: nn.Module, dataset: Dataset, layer: str, fractions=DEFAULT_FRACTIONS, seeds: int = DEFAULT_ABLATION_SEEDS,
           mode: str = "zero", bins: str | BinScheme = DEFAULT_BINS, depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE,
           protocol="nyu", batch_size: int = DEFAULT_ABLATION_BATCH_SIZE, progress: bool = True,
           selectivity: torch.Tensor | None = None) -> AblationResult:
    """Depth metrics against the fraction of a layer's most / least / randomly chosen selective units ablated.

    Args:
        model: a depth model (eval mode is set for the passes and restored after; the model is
            unchanged afterwards).
        dataset: sample dicts: ``image`` (3, H, W) in [0, 1], ``depth`` (1, H, W) metres,
            ``valid`` (1, H, W) bool, ``meta``.
        layer: one layer name (``enc_7``, ``dec_3`` for METER) or module path; its output must be
            (B, K, h, w).
        fractions: fractions of the K units to ablate, each in [0, 1]; k = round(f * K), half up.
            0 (the baseline) is always included.
        seeds: number of random draws of the ``random`` curve (seeds 0 .. seeds - 1).
        mode: ``zero`` (A_k = 0) or ``mean`` (A_k = the unit's mean activation over all positions
            and images of ``dataset``).
        bins, depth_range: of the dissection that gives each unit's DS (see
            :func:`~seldepth.selectivity.dissect.dissect`).
        protocol: evaluation protocol name (``nyu``, ``kitti``, ``synthetic``, ``none``) or a
            :class:`~seldepth.evaluation.protocol.Protocol`.
        batch_size: images per forward pass.
        progress: show progress bars.
        selectivity: optional precomputed (K,) DS of the layer's units; skips the dissection.

    Returns:
        :class:`AblationResult`.

    Raises:
        ValueError: naming the argument: an unknown ``layer``, ``fractions`` outside [0, 1],
            ``seeds`` < 1, an unknown ``mode``, a ``selectivity`` of the wrong shape, ...
    """
    path, fractions = check_ablation_args(model, layer, fractions, seeds, mode)
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    if selectivity is None:
        depth_range = check_depth_range(depth_range)
        scheme = parse_bins(bins)
        bins_label = bins if isinstance(bins, str) else scheme.spec()
    else:
        selectivity = torch.as_tensor(selectivity).detach().cpu().double()
        if selectivity.ndim != 1 or not torch.isfinite(selectivity).all():
            raise ValueError(f"selectivity: expected a (K,) tensor of finite DS values, got shape {tuple(selectivity.shape)}")
        bins_label = "precomputed"
    if len(dataset) == 0:
        raise ValueError("dataset: no samples")
    module = dict(model.named_modules())[path]

    was_training = model.training
    model.eval()
    try:
        num_units = ablated_layer_units(model, module, dataset, layer, path)
        if selectivity is not None and selectivity.numel() != num_units:
            raise ValueError(f"selectivity: expected ({num_units},) for the {num_units} units of {layer!r}, "
                             f"got {tuple(selectivity.shape)}")

        # ranking (and, in mean mode, the channel means in the same pass)
        means = None
        if selectivity is None:
            acc = _ChannelMeans(layer) if mode == "mean" else None
            handle = module.register_forward_hook(acc) if acc is not None else None
            try:
                dissection = dissect(model, dataset, layers=[layer], bins=scheme, depth_range=depth_range,
                                     batch_size=batch_size, progress=progress)
            finally:
                if handle is not None:
                    handle.remove()
            selectivity = dissection.layers[layer].ds.detach().cpu().double()
            means = acc.means() if acc is not None else None
            model.eval()
        elif mode == "mean":
            means = channel_means(model, dataset, layer, batch_size=batch_size, progress=progress)
        fill = means if mode == "mean" else None

        orders = {"top": [ablation_order(selectivity, "top")], "bottom": [ablation_order(selectivity, "bottom")],
                  "random": [ablation_order(selectivity, "random", s) for s in range(seeds)]}
        ks = [num_ablated(f, num_units) for f in fractions]
        unit_sets = sorted({tuple(sorted(int(u) for u in order[:k])) for curve in CURVES for order in orders[curve]
                            for k in ks if k > 0}, key=lambda s: (len(s), s))
        metrics = {(): DepthMetrics(proto), **{units: DepthMetrics(proto) for units in unit_sets}}

        replay = _PrefixReplay(model, path)
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
        bar = tqdm(total=len(loader) * len(metrics), desc=f"ablate {layer} ({mode})", unit="pass", disable=not progress)
        checked = False
        try:
            for batch in sample_batches(loader):
                images, gt, valid = batch["image"], batch["depth"], batch["valid"]
                size = tuple(gt.shape[-2:])
                with replay.record():
                    pred = predict_depth(model, images, flip=proto.flip, size=size)
                metrics[()].update(pred.cpu(), gt, valid)
                bar.update(1)
                if not checked:  # the replay must reproduce the baseline exactly
                    with replay.replay():
                        again = predict_depth(model, images, flip=proto.flip, size=size)
                    if not torch.equal(again, pred):
                        warnings.warn(f"ablate: replaying the modules before {layer!r} did not reproduce the baseline; "
                                      "running full forward passes (slower)", RuntimeWarning, stacklevel=2)
                        replay.disable()
                    checked = True
                for units in unit_sets:
                    with replay.replay(), ablate_units(module, units, fill):
                        pred = predict_depth(model, images, flip=proto.flip, size=size)
                    metrics[units].update(pred.cpu(), gt, valid)
                    bar.update(1)
        finally:
            bar.close()
    finally:
        model.train(was_training)

    scores = {units: _metrics(m) for units, m in metrics.items()}
    num_images = int(metrics[()].compute()["num_images"])
    baseline = scores[()]

    def score(order: torch.Tensor, k: int) -> dict[str, float]:
        return scores[tuple(sorted(int(u) for u in order[:k]))]

    curves: dict[str, list[dict]] = {c: [] for c in CURVES}
    for f, k in zip(fractions, ks):
        for c in ("top", "bottom"):
            curves[c].append({"fraction": f, "k": k, **score(orders[c][0], k)})
        per_seed = [score(order, k) for order in orders["random"]]
        rmse = np.array([s["rmse"] for s in per_seed])
        curves["random"].append({"fraction": f, "k": k, "rmse": float(rmse.mean()), "rmse_std": float(rmse.std(ddof=0)),
                                 "abs_rel": float(np.mean([s["abs_rel"] for s in per_seed])),
                                 "delta1": float(np.mean([s["delta1"] for s in per_seed])),
                                 "rmse_per_seed": [float(v) for v in rmse]})
    info = {"model": str(getattr(model, "name", "") or type(model).__name__), "data": type(dataset).__name__,
            "split": str(getattr(dataset, "split", ""))}
    return AblationResult(layer=layer, module=path, num_units=num_units, mode=mode, bins=bins_label, protocol=proto.name,
                          fractions=fractions, seeds=int(seeds), baseline=baseline, curves=curves,
                          selectivity=selectivity, orders=orders, num_images=num_images, info=info)
