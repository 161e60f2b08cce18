"""Ablation per depth range: does silencing the units selective to a depth range hurt depth most in that range?

The claim to test: a unit selective to a depth range matters for that range. Zhou et al. (2018,
"Revisiting the importance of individual units in CNNs via ablation"; see docs/references.md) found
that ablating class-selective units barely moves overall accuracy but hurts their own class; here
the classes are depth ranges. For one layer of K units:

Groups of units.
    Each unit has a fine depth bin: its preferred bin in a dissection (``grouping="preferred"``;
    :class:`~seldepth.selectivity.dissect.LayerSelectivity`, by default ``sid:64``), or the bin the
    assign loss gave it (``grouping=UnitAssignment(...)``, for a regularised layer). The fine bins
    are mapped to G coarse depth groups: the G bins of the same scheme kind and parameters
    (``sid:64`` -> ``sid:G``, alpha 0.75, beta 10: the same depth range), and a fine bin belongs
    to the group that contains its centre depth, right-closed like every bin: group g holds the
    centres in ``(E_g, E_{g+1}]`` (a centre exactly on an edge goes to the lower group). For SID
    with 64 fine bins and G - 1 dividing 63 (G = 2, 4, 8, 10, ...) the coarse edges are fine edges,
    so the fine bins nest in the groups (G = 8: 1, 9, 9, 9, 9, 9, 9, 9 fine bins).

Ablations.
    For each non-empty group g: its n_g units are ablated together (``zero`` or ``mean``, as
    :func:`~seldepth.selectivity.ablation.ablate` does), and, as control, for each seed s in
    0 .. seeds - 1, n_g units of the whole layer drawn at random (the first n_g of
    ``torch.randperm(K)`` seeded with s: the random curve of ``ablate``). The control is NOT
    restricted to the other groups (it may draw units of group g), so it is the null "any n_g
    units"; groups of the same size share their controls.

Scores.
    The intact model, each group ablation and each control are scored on every ground-truth depth
    group s: the pixels whose valid ground truth lies in coarse group s (same edges). The metrics
    are those of ``seldepth eval`` (:func:`~seldepth.evaluation.metrics.per_image_metrics` under the
    protocol's range and crop, predictions clamped, as
    :class:`~seldepth.evaluation.metrics.DepthMetrics` scores): per image over the image's pixels in
    group s, then the mean over the images that have such pixels (``images_per_group``); the
    pixel-pooled alternative would let the images with most pixels in a group dominate it. Each
    group's pixels are gathered once per batch, so a prediction is scored on each pixel once.
    Protocols with median scaling are refused (the scale would be fitted per group).

Matrices (for RMSE and AbsRel; rows: ablated group g, columns: scored group s).
    ``increase[g, s]``   = error_ablated(g)[s] - error_intact[s]
    ``excess[g, s]``     = increase[g, s] - mean over seeds of (error_random(g, seed)[s] - error_intact[s])
    Rows of empty groups are NaN, as are columns of groups without a scored pixel.

Diagonal dominance (:func:`diagonal_dominance`) of the excess matrix: (a) ``near_diagonal``: the share
of non-empty rows whose largest excess lies on the diagonal or next to it (|g - s| <= 1; tied maxima
share the credit), with ``chance``: the same share if each row's maximum fell on a column at random;
(b) ``contrast``: the
mean diagonal excess minus the mean off-diagonal excess. The random control's spread: each seed's
control in turn is treated as the ablated group, with the mean of the OTHER seeds as its control
(:func:`control_matrices`: ``random_increase[seed] - mean of random_increase[other seeds]``, a
leave-one-out null built like ``excess``); the two statistics of these ``seeds`` null matrices give
the control's mean and std (ddof 0). It needs seeds >= 2 (NaN otherwise). The control's contrast
averages 0 by construction (the contrast is linear and the leave-one-out differences sum to zero
over seeds), so its std is the yardstick for the ablation's contrast.

Speed: the data are read and preprocessed once; each batch runs once per distinct set of ablated
units, and the modules that finish before the ablated layer are recorded in the intact pass and
replayed (as ``ablate``).

Example:
    >>> model = load_model("meter_xxs_nyu.safetensors")
    >>> result = ablate_by_bin(model, open_dataset("nyu:nyu_test_sample"), "enc_7", groups=8)
    >>> print(result.format_table())
    >>> result.save("runs/ablate")   # by_bin.json, by_bin.csv (save_by_bin of seldepth.report.by_bin_plots adds the PNG)
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from seldepth.atomic import write_json_atomic, write_text_atomic
from seldepth.data.collate import collate_samples
from seldepth.data.skipping import sample_batches
from seldepth.defaults import (
    DEFAULT_ABLATION_BATCH_SIZE,
    DEFAULT_ABLATION_SEEDS,
    DEFAULT_BY_BIN_GROUPS,
    check_number,
)
from seldepth.evaluation.metrics import (
    METRIC_NAMES,
    DepthMetrics,
    clamp_prediction,
    per_image_metrics,
)
from seldepth.evaluation.protocol import Protocol, crop_mask, get_protocol
from seldepth.inference import predict_depth
from seldepth.selectivity.ablation import (
    _ChannelMeans,
    _PrefixReplay,
    ablate_units,
    ablated_layer_units,
    ablation_order,
    channel_means,
    check_ablation_args,
)
from seldepth.selectivity.bins import (
    DEFAULT_BINS,
    DEFAULT_DEPTH_RANGE,
    BinScheme,
    bin_centres,
    depth_to_bins,
    parse_bins,
)
from seldepth.selectivity.dissect import (
    LayerSelectivity,
    check_depth_range,
    dissect,
    fit_bins,
)

ERRORS = ("rmse", "abs_rel")
UNIT_SELECTIONS = ("all", "tuned")  # which units are grouped: all, or those tuned to a depth range (tuning.py)
ERROR_NAMES = {"rmse": "RMSE", "abs_rel": "AbsRel"}
_ERROR_COLUMNS = [METRIC_NAMES.index(m) for m in ERRORS]  # their columns in per_image_metrics

CONVENTIONS = ("units grouped by the coarse depth group (G bins of the dissection's scheme) that contains the centre of "
               "their fine bin (preferred or assigned), right-closed; each non-empty group ablated, and per seed as "
               "many random units of the whole layer; errors per image over the pixels whose ground truth is in a "
               "group, averaged over the images with such pixels; excess = increase - mean random increase; "
               "near_diagonal: share of non-empty rows whose largest excess has |g - s| <= 1; contrast: mean "
               "diagonal minus mean off-diagonal excess; control: each seed's random increase minus the mean of the "
               "other seeds'")


# ---------------------------------------------------------------------------------------------
# Units, groups and controls
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UnitAssignment:
    """The fine depth bin the assign loss gave each unit of a regularised layer.

    Attributes:
        bins: (K,) int64 assigned bin of each unit, in [0, num_bins).
        num_bins: N_b of the assignment.
        scheme: the bin scheme spec of the assignment (``sid:32``); its edges are
            ``parse_bins(scheme).edges(num_bins)``.

    Example:
        >>> UnitAssignment(torch.tensor([0, 0, 1, 1]), num_bins=2, scheme="sid:32")
    """

    bins: torch.Tensor
    num_bins: int
    scheme: str

    def __post_init__(self):
        check_number("grouping.num_bins", self.num_bins, 2, integer=True)
        bins = torch.as_tensor(self.bins)
        if bins.ndim != 1 or bins.is_floating_point() or bins.is_complex() or bins.dtype == torch.bool:
            raise ValueError(f"grouping.bins: expected a (K,) integer tensor, got {bins.dtype} of shape {tuple(bins.shape)}")
        if bins.numel() and (int(bins.min()) < 0 or int(bins.max()) >= self.num_bins):
            raise ValueError(f"grouping.bins: assigned bins must lie in [0, {self.num_bins}), got "
                             f"{int(bins.min())}..{int(bins.max())}")
        parse_bins(self.scheme)  # names bins when the spec is wrong
        object.__setattr__(self, "bins", bins.long().cpu())

    @property
    def edges(self) -> torch.Tensor:
        """(N_b + 1,) float64 edges of the assigned bins, metres."""
        return parse_bins(self.scheme).edges(self.num_bins)


def read_assignment(path: str | os.PathLike, layer: str) -> UnitAssignment:
    """One layer's entry of a training run's ``selectivity_assignment.json``.

    The file maps layer names to ``{"num_bins": N_b, "bins_spec": "sid:32", "assigned": [ints]}``.

    Example:
        >>> read_assignment("runs/x/selectivity_assignment.json", "enc_6").num_bins
        32

    Raises:
        FileNotFoundError: naming the file when it does not exist.
        ValueError: naming the file and the key when it is not JSON, has no entry for ``layer``, or
            an entry is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"assignment file {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({exc})") from None
    problem = _assignment_problem(doc, layer)
    if problem:
        raise ValueError(f"{path}: {problem}")
    entry = doc[layer]
    try:
        return UnitAssignment(torch.tensor(entry["assigned"], dtype=torch.long), entry["num_bins"], entry["bins_spec"])
    except ValueError as exc:
        raise ValueError(f"{path}: {layer}.bins_spec: {exc}") from None


def _assignment_problem(doc, layer: str) -> str | None:
    """What is wrong with ``layer``'s entry of an assignment file (naming the key), or None."""
    if not isinstance(doc, dict):
        return f"expected an object mapping layer names to assignments, got {type(doc).__name__}"
    if layer not in doc:
        return f"no entry for layer {layer!r} (layers: {', '.join(map(str, doc)) or 'none'})"
    entry = doc[layer]
    if not isinstance(entry, dict):
        return f"{layer}: expected an object with num_bins, bins_spec and assigned"
    missing = [k for k in ("num_bins", "bins_spec", "assigned") if k not in entry]
    if missing:
        return f"{layer}: missing {', '.join(missing)}"
    num_bins, spec, assigned = entry["num_bins"], entry["bins_spec"], entry["assigned"]
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        return f"{layer}.num_bins: expected an integer >= 2, got {num_bins!r}"
    if not isinstance(spec, str):
        return f"{layer}.bins_spec: expected a bin spec such as 'sid:32', got {spec!r}"
    if not isinstance(assigned, list) or not assigned or not all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b < num_bins for b in assigned):
        return f"{layer}.assigned: expected a list of integers in [0, {num_bins}), one per unit"
    return None


def coarse_groups(fine_edges: torch.Tensor, group_edges: torch.Tensor) -> torch.Tensor:
    """The coarse group of each fine bin: the group that contains the fine bin's centre.

    Group g holds the centres c with ``group_edges[g] < c <= group_edges[g + 1]`` (right-closed,
    like the bins); a centre outside ``(group_edges[0], group_edges[-1]]`` gets -1.

    Args:
        fine_edges: (N_b + 1,) increasing edges of the fine bins, metres.
        group_edges: (G + 1,) increasing edges of the groups, metres.

    Returns:
        (N_b,) int64 group of each fine bin.

    Example:
        >>> coarse_groups(torch.tensor([0.0, 2, 4, 6, 8]), torch.tensor([0.0, 3, 8]))   # centres 1, 3, 5, 7
        tensor([0, 0, 1, 1])
    """
    fine = torch.as_tensor(fine_edges, dtype=torch.float64).flatten()
    coarse = torch.as_tensor(group_edges, dtype=torch.float64).flatten()
    if fine.numel() < 2 or coarse.numel() < 2:
        raise ValueError("fine_edges and group_edges: expected at least 2 edges each")
    groups = torch.bucketize(bin_centres(fine), coarse) - 1  # edges[i - 1] < c <= edges[i] -> i - 1
    return torch.where((groups >= 0) & (groups < coarse.numel() - 1), groups, torch.full_like(groups, -1))


def random_units(num_units: int, size: int, seed: int) -> list[int]:
    """The ``size`` units of a layer of ``num_units`` that the control of seed ``seed`` ablates, ascending.

    The first ``size`` entries of ``torch.randperm(num_units)`` seeded with ``seed`` (the random curve
    of :func:`~seldepth.selectivity.ablation.ablate`): the same seed gives the same units.

    Example:
        >>> random_units(8, 3, seed=0) == random_units(8, 3, seed=0)
        True
    """
    check_number("size", size, 0, num_units, integer=True)
    order = ablation_order(torch.zeros(num_units), "random", seed)
    return sorted(int(u) for u in order[:size])


# ---------------------------------------------------------------------------------------------
# Diagonal dominance
# ---------------------------------------------------------------------------------------------

def diagonal_dominance(matrix, band: int = 1) -> dict[str, float]:
    """How much a (G, G) matrix concentrates on its diagonal, over its non-empty rows.

    A row is non-empty when it has a finite entry; only finite entries count.

    Returns:
        ``near_diagonal``: share of the non-empty rows whose largest entry lies at ``|g - s| <= band``
        (a row whose maximum is tied counts the share of its tied columns within the band, i.e. ties
        broken at random; a row of equal values counts as chance); ``chance``: the mean over those rows of the share of their finite
        columns within the band (what ``near_diagonal`` would be with the maximum at a random
        column); ``contrast``: the mean of the finite diagonal entries of the non-empty rows minus
        the mean of their finite off-diagonal entries; ``rows``: the number of non-empty rows.
        NaN where undefined (no non-empty row; no finite diagonal or off-diagonal entry).

    Example:
        >>> diagonal_dominance([[3, 1, 0], [float("nan")] * 3, [4, 2, 1]])
        {'near_diagonal': 0.5, 'chance': 0.666..., 'contrast': 0.25, 'rows': 2}
    """
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"matrix: expected a square (G, G) matrix, got shape {m.shape}")
    finite = np.isfinite(m)
    rows = [g for g in range(m.shape[0]) if finite[g].any()]
    hits, chances, diagonal, off = [], [], [], []
    for g in rows:
        cols = np.flatnonzero(finite[g])
        near = np.abs(cols - g) <= band
        best = m[g, cols] == m[g, cols].max()
        hits.append(float(near[best].mean()))  # ties share the credit
        chances.append(float(near.mean()))
        diagonal += [m[g, s] for s in cols if s == g]
        off += [m[g, s] for s in cols if s != g]
    nan = float("nan")
    return {"near_diagonal": float(np.mean(hits)) if hits else nan, "chance": float(np.mean(chances)) if chances else nan,
            "contrast": float(np.mean(diagonal) - np.mean(off)) if diagonal and off else nan, "rows": len(rows)}


def control_matrices(random_increase) -> np.ndarray:
    """Null matrices of the random control: each seed's increase minus the mean of the other seeds' increases.

    Args:
        random_increase: (G, seeds, G) error increase of each group's random control per seed.

    Returns:
        (seeds, G, G): entry ``[j, g, s] = random_increase[g, j, s] - mean over k != j of
        random_increase[g, k, s]``; all NaN for fewer than 2 seeds.

    Example:
        >>> control_matrices(np.array([[[1.0], [2.0], [6.0]]]))[:, 0, 0]   # 1 - 4, 2 - 3.5, 6 - 1.5
        array([-3. , -1.5,  4.5])
    """
    r = np.asarray(random_increase, dtype=float)
    if r.ndim != 3:
        raise ValueError(f"random_increase: expected (G, seeds, G), got shape {r.shape}")
    seeds = r.shape[1]
    if seeds < 2:
        return np.full((seeds, r.shape[0], r.shape[2]), np.nan)
    total = r.sum(axis=1, keepdims=True)
    others = (total - r) / (seeds - 1)
    return np.transpose(r - others, (1, 0, 2))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

def _range_label(lo: float, hi: float) -> str:
    return f"{lo:.2f}-{hi:.2f}"


@dataclass
class ByBinAblation:
    """Errors per ground-truth depth group after ablating the units of each depth group of a layer.

    Attributes:
        layer: layer name as given (e.g. ``enc_7``).
        module: its module path.
        num_units: K.
        mode: ``zero`` or ``mean``.
        grouping: ``preferred`` (dissection) or ``assigned`` (assign loss).
        units: ``all`` or ``tuned`` (only the units tuned to a depth range are grouped).
        bins: the fine bins: the dissection's scheme spec, ``precomputed`` (a given dissection) or
            the assignment's spec.
        group_scheme: spec of the coarse scheme (``sid:8:alpha=0.75,beta=10``).
        protocol: name of the evaluation protocol.
        seeds: random controls per group (seeds 0 .. seeds - 1).
        num_images: images scored.
        group_edges: (G + 1,) float64 edges of the depth groups, metres.
        fine_edges: (N_b + 1,) float64 edges of the fine bins, metres.
        unit_bins: (K,) int64 fine bin of each unit (preferred or assigned).
        unit_groups: (K,) int64 depth group of each unit (-1: none).
        images_per_group: (G,) images with at least one scored pixel in each group.
        intact: {"rmse", "abs_rel"}: (G,) errors of the intact model per depth group.
        ablated: {"rmse", "abs_rel"}: (G, G) errors with group g's units ablated (row g; NaN rows
            for empty groups), per scored group s (column).
        random: {"rmse", "abs_rel"}: (G, seeds, G) errors with the random control of group g and seed.
        random_sets: per group, per seed, the units of the control (empty lists for empty groups).
        overall: {"intact": {metric: value}, "ablated": {metric: (G,)}, "random": {metric: (G, seeds)}}:
            the errors over all scored pixels (the metrics of ``seldepth eval``).
        info: provenance (``model``, ``data``, ``split``).

    Example:
        >>> result = ablate_by_bin(model, dataset, "enc_7", groups=8)
        >>> result.excess("rmse")[2]           # ablating group 2's units, per scored depth group
        >>> result.dominance("rmse")["near_diagonal"]
    """

    layer: str
    module: str
    num_units: int
    mode: str
    grouping: str
    bins: str
    group_scheme: str
    protocol: str
    seeds: int
    num_images: int
    group_edges: np.ndarray
    fine_edges: np.ndarray
    unit_bins: np.ndarray
    unit_groups: np.ndarray
    images_per_group: np.ndarray
    intact: dict[str, np.ndarray]
    ablated: dict[str, np.ndarray]
    random: dict[str, np.ndarray]
    random_sets: list[list[list[int]]]
    overall: dict
    info: dict = field(default_factory=dict)
    units: str = "all"

    @property
    def num_groups(self) -> int:
        return len(self.group_edges) - 1

    def group_units(self, group: int) -> list[int]:
        """The units of depth group ``group``, ascending."""
        return [int(u) for u in np.flatnonzero(self.unit_groups == group)]

    @property
    def units_per_group(self) -> list[int]:
        return [int((self.unit_groups == g).sum()) for g in range(self.num_groups)]

    def group_labels(self) -> list[str]:
        """``lo-hi`` (metres, 2 decimals) of each depth group."""
        e = self.group_edges
        return [_range_label(e[g], e[g + 1]) for g in range(self.num_groups)]

    def increase(self, metric: str = "rmse") -> np.ndarray:
        """(G, G) error_ablated(g)[s] - error_intact[s]."""
        return self.ablated[_metric(metric)] - self.intact[metric][None, :]

    def random_increase(self, metric: str = "rmse") -> np.ndarray:
        """(G, seeds, G) error_random(g, seed)[s] - error_intact[s]."""
        return self.random[_metric(metric)] - self.intact[metric][None, None, :]

    def excess(self, metric: str = "rmse") -> np.ndarray:
        """(G, G) increase minus the mean over seeds of the random controls' increase (NaN rows: empty groups)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of empty groups
            return self.increase(metric) - np.mean(self.random_increase(metric), axis=1)

    def dominance(self, metric: str = "rmse") -> dict:
        """:func:`diagonal_dominance` of :meth:`excess`, with the random control's statistics.

        Returns:
            ``near_diagonal``, ``chance``, ``contrast``, ``rows`` of the excess matrix, and ``control``:
            ``near_diagonal`` and ``contrast`` of each seed's null matrix (:func:`control_matrices`) as
            ``*_per_seed`` lists, their mean and std (ddof 0); NaN with fewer than 2 seeds.
        """
        out = diagonal_dominance(self.excess(metric))
        nulls = [diagonal_dominance(m) for m in control_matrices(self.random_increase(metric))]
        control: dict = {}
        for key in ("near_diagonal", "contrast"):
            values = np.array([n[key] for n in nulls], dtype=float)
            ok = values[np.isfinite(values)]
            control[f"{key}_per_seed"] = values.tolist()
            control[f"{key}_mean"] = float(ok.mean()) if self.seeds >= 2 and ok.size else float("nan")
            control[f"{key}_std"] = float(ok.std(ddof=0)) if self.seeds >= 2 and ok.size else float("nan")
        out["control"] = control
        return out

    def to_dict(self) -> dict:
        """The JSON document written to ``by_bin.json`` (read by the report's heatmap)."""
        def lists(a: dict) -> dict:
            return {k: np.asarray(v, dtype=float).tolist() for k, v in a.items()}

        return {"info": dict(self.info), "layer": self.layer, "module": self.module, "num_units": self.num_units,
                "mode": self.mode, "grouping": self.grouping, "units": self.units, "bins": self.bins,
                "group_scheme": self.group_scheme,
                "protocol": self.protocol, "seeds": self.seeds, "num_images": self.num_images,
                "groups": self.num_groups, "group_edges": [float(v) for v in self.group_edges],
                "group_labels": self.group_labels(), "fine_edges": [float(v) for v in self.fine_edges],
                "unit_bins": [int(v) for v in self.unit_bins], "unit_groups": [int(v) for v in self.unit_groups],
                "units_per_group": self.units_per_group,
                "group_units": [self.group_units(g) for g in range(self.num_groups)],
                "images_per_group": [int(v) for v in self.images_per_group],
                "intact": lists(self.intact), "ablated": lists(self.ablated), "random": lists(self.random),
                "random_units": [[list(s) for s in sets] for sets in self.random_sets],
                "overall": {"intact": {k: float(v) for k, v in self.overall["intact"].items()},
                            "ablated": lists(self.overall["ablated"]), "random": lists(self.overall["random"])},
                "increase": {m: self.increase(m).tolist() for m in ERRORS},
                "random_increase": {m: self.random_increase(m).tolist() for m in ERRORS},
                "excess": {m: self.excess(m).tolist() for m in ERRORS},
                "dominance": {m: self.dominance(m) for m in ERRORS},
                "conventions": CONVENTIONS}

    def format_table(self, metric: str = "rmse") -> str:
        """The excess matrix of ``metric`` as plain text (rows: ablated group, columns: scored group)."""
        return format_table(self.to_dict(), metric)

    def summary(self) -> list[str]:
        """One line per metric: the diagonal-dominance figures and the random control's spread."""
        return dominance_lines(self.to_dict())

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``by_bin.json`` and ``by_bin.csv`` (one row per ablated group x scored group) into ``out_dir``.

        The heatmap ``by_bin.png`` is drawn by :func:`seldepth.report.by_bin_plots.save_by_bin`, which
        calls this first (the library does not import the report).

        Returns:
            {"json": path, "csv": path}.
        """
        out = Path(out_dir)
        json_path = write_json_atomic(out / "by_bin.json", self.to_dict(), indent=1)
        csv_path = write_text_atomic(out / "by_bin.csv", csv_text(self))
        return {"json": json_path, "csv": csv_path}


def _metric(metric: str) -> str:
    if metric not in ERRORS:
        raise ValueError(f"metric: expected one of {', '.join(ERRORS)}, got {metric!r}")
    return metric


def csv_text(result: ByBinAblation) -> str:
    """``by_bin.csv``: one row per ablated group x scored group (empty cells where undefined)."""
    def cell(v) -> str:
        v = float(v)
        return repr(v) if np.isfinite(v) else ""

    e = result.group_edges
    table = io.StringIO()
    writer = csv.writer(table)
    head = ["ablated_group", "ablated_from_m", "ablated_to_m", "units", "scored_group", "scored_from_m", "scored_to_m",
            "images"]
    for m in ERRORS:
        head += [f"intact_{m}", f"ablated_{m}", f"random_{m}_mean", f"random_{m}_std", f"{m}_increase", f"{m}_excess"]
    writer.writerow(head)
    per = {m: (result.increase(m), result.excess(m)) for m in ERRORS}
    sizes = result.units_per_group
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for g in range(result.num_groups):
            for s in range(result.num_groups):
                row = [g, cell(e[g]), cell(e[g + 1]), sizes[g], s, cell(e[s]), cell(e[s + 1]),
                       int(result.images_per_group[s])]
                for m in ERRORS:
                    rnd = result.random[m][g, :, s]
                    row += [cell(result.intact[m][s]), cell(result.ablated[m][g, s]), cell(np.mean(rnd)),
                            cell(np.std(rnd)), cell(per[m][0][g, s]), cell(per[m][1][g, s])]
                writer.writerow(row)
    return table.getvalue()


def _num(v, fmt: str) -> str:
    return "nan" if v is None or not np.isfinite(float(v)) else format(float(v), fmt)


def dominance_lines(doc: dict) -> list[str]:
    """The diagonal-dominance figures of a ``by_bin.json`` document, one line per metric."""
    lines = []
    for m in ERRORS:
        d = doc["dominance"][m]
        c = d["control"]
        unit = " m" if m == "rmse" else ""
        lines.append(f"{ERROR_NAMES[m]}: share of the {d['rows']} ablated groups whose largest excess is on or next to "
                     f"the diagonal {_num(d['near_diagonal'], '.2f')} (chance {_num(d['chance'], '.2f')}; random "
                     f"control {_num(c['near_diagonal_mean'], '.2f')} ± {_num(c['near_diagonal_std'], '.2f')}); "
                     f"diagonal minus off-diagonal excess {_num(d['contrast'], '+.4f')}{unit} (random control "
                     f"{_num(c['contrast_mean'], '+.4f')} ± {_num(c['contrast_std'], '.4f')}{unit})")
    return lines


def format_table(doc: dict | ByBinAblation, metric: str = "rmse") -> str:
    """Plain text: the setup, the excess matrix of ``metric`` (rows: ablated group, columns: scored group), the
    intact error per group, and the diagonal-dominance lines."""
    d = doc.to_dict() if isinstance(doc, ByBinAblation) else doc
    metric = _metric(metric)
    labels = d["group_labels"]
    name = ERROR_NAMES[metric]
    unit = " (m)" if metric == "rmse" else ""
    which = "tuned units" if d.get("units") == "tuned" else "units"
    head = (f"Ablation per depth range of {d['layer']} ({d['num_units']} units, mode {d['mode']}, {which} grouped by "
            f"{d['grouping']} bin of {d['bins']} into {d['groups']} depth groups {d['group_scheme']}), protocol "
            f"{d['protocol']}, {d['num_images']} images; random control: {d['seeds']} seeds")
    width = max(9, *(len(s) for s in labels))
    lines = [head, "",
             (f"{name} excess{unit}: ablating a group's units minus ablating as many random units (mean over seeds); "
              "rows: ablated units' depth group, columns: ground-truth depth group (m)"),
             f"{'group (m)':<{width}} {'units':>5} | " + " ".join(f"{s:>{width}}" for s in labels)]
    for g, label in enumerate(labels):
        row = d["excess"][metric][g]
        cells = " ".join(f"{_num(v, '+.4f'):>{width}}" for v in row)
        lines.append(f"{label:<{width}} {d['units_per_group'][g]:>5} | {cells}")
    intact = " ".join(f"{_num(v, '.4f'):>{width}}" for v in d["intact"][metric])
    lines.append(f"{'intact ' + name:<{width + 6}} | {intact}")
    lines.append(f"{'images':<{width + 6}} | " + " ".join(f"{n:>{width}}" for n in d["images_per_group"]))
    lines += ["", *dominance_lines(d)]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Scoring per depth group
# ---------------------------------------------------------------------------------------------

class _GroupPixels:
    """The scored pixels of one batch, gathered per ground-truth depth group once and shared by every prediction.

    Scored as :class:`~seldepth.evaluation.metrics.DepthMetrics` scores (main range): valid,
    ``min_depth < gt < max_depth``, finite, inside the protocol's crop; and here also inside the
    group. Each group's pixels are packed to (B, 1, 1, L) (L: the most any image has; ``mask``
    marks the real ones), so that a prediction is scored on them without touching the others.
    """

    def __init__(self, gt: torch.Tensor, valid: torch.Tensor, group_edges: torch.Tensor, protocol: Protocol):
        b = gt.shape[0]
        scored = valid.bool() & torch.isfinite(gt) & (gt > protocol.min_depth) & (gt < protocol.max_depth)
        scored &= crop_mask(protocol.crop, gt.shape[-2], gt.shape[-1], device=gt.device)
        groups = depth_to_bins(gt, group_edges, scored).view(b, -1)
        self.packed: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] = []
        for g in range(len(group_edges) - 1):
            inside = groups == g
            counts = inside.sum(1)
            length = int(counts.max())
            if length == 0:
                self.packed.append(None)
                continue
            index = torch.sort((~inside).to(torch.uint8), dim=1, stable=True).indices[:, :length]  # the group's first
            mask = torch.arange(length, device=gt.device)[None] < counts[:, None]
            self.packed.append((index, gt.reshape(b, -1).gather(1, index).view(b, 1, 1, length),
                                mask.view(b, 1, 1, length)))


class _GroupScores:
    """The metrics of ``seldepth eval`` of one set of predictions: overall, and within each ground-truth depth group.

    Within a group: RMSE and AbsRel of each image over its scored pixels in the group
    (:func:`~seldepth.evaluation.metrics.per_image_metrics` on the clamped prediction, as
    :class:`~seldepth.evaluation.metrics.DepthMetrics` computes them), then the mean over the
    images that have such pixels.
    """

    def __init__(self, protocol: Protocol, num_groups: int):
        self.protocol = protocol
        self.overall = DepthMetrics(protocol)
        self.sums = torch.zeros(num_groups, len(ERRORS), dtype=torch.float64)
        self.counts = torch.zeros(num_groups, dtype=torch.long)

    def update(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, pixels: _GroupPixels) -> None:
        self.overall.update(pred, gt, valid)
        flat = pred.reshape(pred.shape[0], -1)
        for g, packed in enumerate(pixels.packed):
            if packed is None:  # no pixel of the group in this batch
                continue
            index, group_gt, mask = packed
            p = clamp_prediction(flat.gather(1, index).view(group_gt.shape), self.protocol.min_depth,
                                 self.protocol.max_depth)
            values = per_image_metrics(p, group_gt, mask)[:, _ERROR_COLUMNS]
            scored = ~torch.isnan(values[:, 0])
            self.sums[g] += values[scored].sum(0).cpu()
            self.counts[g] += int(scored.sum())

    def compute(self) -> dict:
        overall = self.overall.compute()
        means = self.sums / self.counts.clamp_min(1)[:, None]
        means[self.counts == 0] = float("nan")
        return {"overall": {m: float(overall[m]) for m in ERRORS}, "num_images": int(overall["num_images"]),
                **{m: means[:, i].numpy().copy() for i, m in enumerate(ERRORS)}, "images": self.counts.numpy().copy()}


# ---------------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------------

def check_by_bin_args(model: nn.Module, layer: str, groups: int = DEFAULT_BY_BIN_GROUPS,
                      grouping: str | UnitAssignment = "preferred", seeds: int = DEFAULT_ABLATION_SEEDS,
                      mode: str = "zero") -> str:
    """Check the arguments of :func:`ablate_by_bin` (no data is read).

    Returns:
        the module path of ``layer``.

    Raises:
        ValueError: naming the argument (``layer``, ``groups``, ``grouping``, ``seeds`` or ``mode``).
    """
    check_number("groups", groups, 2, integer=True)
    if not isinstance(grouping, UnitAssignment):
        if grouping == "assigned":
            raise ValueError("grouping: 'assigned' needs each unit's assigned bin: pass a UnitAssignment "
                             "(read_assignment(path, layer) reads a training run's selectivity_assignment.json)")
        if grouping != "preferred":
            raise ValueError(f"grouping: expected 'preferred' or a UnitAssignment, got {grouping!r}")
    path, _ = check_ablation_args(model, layer, (0.0,), seeds, mode)
    return path


@torch.no_grad()
def ablate_by_bin(model: nn.Module, dataset: Dataset, layer: str, groups: int = DEFAULT_BY_BIN_GROUPS,
                  grouping: str | UnitAssignment = "preferred", dissection: LayerSelectivity | None = None,
                  units: str = "all", seeds: int = DEFAULT_ABLATION_SEEDS, mode: str = "zero",
                  bins: str | BinScheme = DEFAULT_BINS,
                  depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE, protocol="nyu",
                  batch_size: int = DEFAULT_ABLATION_BATCH_SIZE, progress: bool = True) -> ByBinAblation:
    """Errors per ground-truth depth group after ablating the units selective to each depth group of a layer.

    Args:
        model: a depth model (eval mode for the passes, restored after; the model is unchanged afterwards).
        dataset: sample dicts: ``image`` (3, H, W) in [0, 1], ``depth`` (1, H, W) metres, ``valid``, ``meta``.
        layer: one layer name or module path whose output is (B, K, h, w).
        groups: G >= 2 depth groups: the G bins of ``bins``' kind and parameters (``sid:G``).
        grouping: ``preferred`` (each unit's preferred bin in ``dissection``) or a :class:`UnitAssignment`
            (each unit's assigned bin, for a regularised layer; no dissection is run unless ``units`` is ``tuned``).
        units: ``all`` units of the layer are grouped, or only those ``tuned`` to a depth range (the dissection's
            :func:`~seldepth.selectivity.tuning.tuning_of`: neither ramps nor flat); the others are in no group
            and are silenced only as part of a random control.
        dissection: the layer's :class:`~seldepth.selectivity.dissect.LayerSelectivity`; None dissects
            the layer on ``dataset`` with ``bins`` and ``depth_range``.
        seeds: random controls per group (seeds 0 .. seeds - 1); the control's spread needs >= 2.
        mode: ``zero`` or ``mean`` (the unit's mean activation over ``dataset``).
        bins: the dissection's scheme (default ``sid:64``); its kind and parameters with ``groups`` bins
            give the depth groups, which must span the fine bins' depth range.
        depth_range: valid ground truth of the dissection, metres.
        protocol: evaluation protocol name or :class:`~seldepth.evaluation.protocol.Protocol` (no median scaling).
        batch_size: images per forward pass.
        progress: show progress bars.

    Returns:
        :class:`ByBinAblation`.

    Example:
        >>> ablate_by_bin(model, open_dataset("nyu:nyu_test_sample"), "enc_7", groups=8, mode="mean")
        >>> ablate_by_bin(model, data, "enc_6", grouping=read_assignment("runs/x/selectivity_assignment.json", "enc_6"))

    Raises:
        ValueError: naming the argument: ``groups`` < 2, an unknown ``grouping``, an unknown ``layer``,
            ``seeds`` < 1, an unknown ``mode``, a ``dissection`` or assignment whose unit count is not
            the layer's, groups that do not span the fine bins, a median-scaling ``protocol``, ...
    """
    path = check_by_bin_args(model, layer, groups, grouping, seeds, mode)
    check_number("batch_size", batch_size, 1, integer=True)
    if units not in UNIT_SELECTIONS:
        raise ValueError(f"units: expected one of {', '.join(UNIT_SELECTIONS)}, got {units!r}")
    proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
    if proto.median_scaling:
        raise ValueError("protocol: median scaling is not supported by the ablation per depth range (the scale "
                         "would be fitted on each depth group's pixels)")
    depth_range = check_depth_range(depth_range)
    scheme = parse_bins(bins)
    if dissection is not None and not isinstance(dissection, LayerSelectivity):
        raise ValueError(f"dissection: expected a LayerSelectivity (one layer of a dissection), got "
                         f"{type(dissection).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset: no samples")
    module = dict(model.named_modules())[path]

    was_training = model.training
    model.eval()
    try:
        num_units = ablated_layer_units(model, module, dataset, layer, path)

        # each unit's fine bin (and, in mean mode, the channel means in the dissection's pass)
        means = None
        bins_label = "precomputed"
        if dissection is None and (not isinstance(grouping, UnitAssignment) or units == "tuned"):
            acc = _ChannelMeans(layer) if mode == "mean" else None
            handle = module.register_forward_hook(acc) if acc is not None else None
            try:
                result = dissect(model, dataset, layers=[layer], bins=scheme, depth_range=depth_range,
                                 batch_size=batch_size, progress=progress)
            finally:
                if handle is not None:
                    handle.remove()
            model.eval()
            dissection, scheme = result.layers[layer], result.bins
            means = acc.means() if acc is not None else None
            bins_label = bins if isinstance(bins, str) else scheme.spec()
        if dissection is not None and dissection.num_units != num_units:
            raise ValueError(f"dissection: it has {dissection.num_units} units, {layer!r} has {num_units}")
        if isinstance(grouping, UnitAssignment):
            if grouping.bins.numel() != num_units:
                raise ValueError(f"grouping: the assignment has {grouping.bins.numel()} units, {layer!r} has {num_units}")
            fine_edges, unit_bins = grouping.edges, grouping.bins
            kind, bins_label = "assigned", f"{grouping.scheme} (N_b {grouping.num_bins})"
        else:
            kind = "preferred"
            fine_edges, unit_bins = dissection.edges, dissection.preferred_bin
        # units="tuned": only the units whose response is tuned to a depth range (not ramps, not flat) are grouped
        grouped = (torch.tensor([k == "tuned" for k in dissection.tuning.kinds]) if units == "tuned"
                   else torch.ones(num_units, dtype=torch.bool))
        scheme = fit_bins(scheme, dataset, depth_range)  # a quantile scheme's groups need its fit
        group_edges = scheme.edges(groups).double()
        fine_edges = torch.as_tensor(fine_edges, dtype=torch.float64)
        tol = 1e-6 * max(1.0, float(fine_edges[-1]))
        if abs(float(group_edges[0] - fine_edges[0])) > tol or abs(float(group_edges[-1] - fine_edges[-1])) > tol:
            raise ValueError(f"bins: the depth groups {scheme.kind}:{groups} span {float(group_edges[0]):g}..."
                             f"{float(group_edges[-1]):g} m but the units' bins span {float(fine_edges[0]):g}..."
                             f"{float(fine_edges[-1]):g} m; give bins of the same range")
        unit_groups = coarse_groups(fine_edges, group_edges)[unit_bins.long().cpu()]
        unit_groups = torch.where(grouped, unit_groups, torch.full_like(unit_groups, -1))  # -1: in no group
        if mode == "mean" and means is None:
            means = channel_means(model, dataset, layer, batch_size=batch_size, progress=progress)
        fill = means if mode == "mean" else None

        members = [tuple(int(u) for u in torch.nonzero(unit_groups == g).flatten()) for g in range(groups)]
        controls = [[tuple(random_units(num_units, len(m), s)) for s in range(seeds)] if m else [] for m in members]
        unit_sets = sorted({s for s in members if s} | {s for sets in controls for s in sets},
                           key=lambda s: (len(s), s))
        scores = {(): _GroupScores(proto, groups), **{s: _GroupScores(proto, groups) for s in unit_sets}}

        replay = _PrefixReplay(model, path)
        loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
        bar = tqdm(total=len(loader) * len(scores), desc=f"ablate {layer} by depth group ({mode})", unit="pass",
                   disable=not progress)
        checked = False
        try:
            for batch in sample_batches(loader):
                images, gt, valid = batch["image"], batch["depth"], batch["valid"].bool()
                size = tuple(gt.shape[-2:])
                with replay.record():
                    pred = predict_depth(model, images, flip=proto.flip, size=size)
                gt, valid = gt.to(pred.device), valid.to(pred.device)
                pixels = _GroupPixels(gt, valid, group_edges, proto)
                scores[()].update(pred, gt, valid, pixels)
                bar.update(1)
                if not checked:  # the replay must reproduce the intact prediction exactly
                    with replay.replay():
                        again = predict_depth(model, images, flip=proto.flip, size=size)
                    if not torch.equal(again, pred):
                        warnings.warn(f"ablate_by_bin: replaying the modules before {layer!r} did not reproduce the "
                                      "intact prediction; running full forward passes (slower)", RuntimeWarning,
                                      stacklevel=2)
                        replay.disable()
                    checked = True
                for unit_set in unit_sets:
                    with replay.replay(), ablate_units(module, unit_set, fill):
                        pred = predict_depth(model, images, flip=proto.flip, size=size)
                    scores[unit_set].update(pred, gt, valid, pixels)
                    bar.update(1)
        finally:
            bar.close()
    finally:
        model.train(was_training)

    done = {unit_set: s.compute() for unit_set, s in scores.items()}
    intact = done[()]
    nan_row = np.full(groups, np.nan)
    ablated = {m: np.stack([done[s][m] if s else nan_row for s in members]) for m in ERRORS}
    random = {m: np.stack([np.stack([done[c][m] for c in controls[g]]) if members[g]
                           else np.full((seeds, groups), np.nan) for g in range(groups)]) for m in ERRORS}
    overall = {"intact": dict(intact["overall"]),
               "ablated": {m: np.array([done[s]["overall"][m] if s else np.nan for s in members]) for m in ERRORS},
               "random": {m: np.array([[done[c]["overall"][m] for c in controls[g]] if members[g] else [np.nan] * seeds
                                       for g in range(groups)]) for m in ERRORS}}
    info = {"model": str(getattr(model, "name", "") or type(model).__name__), "data": type(dataset).__name__,
            "split": str(getattr(dataset, "split", ""))}
    coarse = BinScheme(scheme.kind, groups, dict(scheme.params)).spec()
    return ByBinAblation(layer=layer, module=path, num_units=num_units, mode=mode, grouping=kind, units=units,
                         bins=str(bins_label),
                         group_scheme=coarse, protocol=proto.name, seeds=int(seeds), num_images=intact["num_images"],
                         group_edges=group_edges.numpy(), fine_edges=fine_edges.numpy(),
                         unit_bins=unit_bins.long().cpu().numpy(), unit_groups=unit_groups.numpy(),
                         images_per_group=intact["images"], intact={m: intact[m] for m in ERRORS}, ablated=ablated,
                         random=random, random_sets=[[list(c) for c in sets] for sets in controls], overall=overall,
                         info=info)
