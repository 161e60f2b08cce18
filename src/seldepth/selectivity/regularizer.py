"""The assign loss: a regulariser that makes each unit of named layers selective to one assigned depth bin.

You et al., ICCV 2021 (see docs/references.md)::

    d_{l,k}   = floor(k / (K_l / N_b))                       the bin assigned to unit k
    L_assign  = -lambda * sum_{l in L} mean_k DS_{l,k}(d_{l,k})

where ``DS(d)`` is the selectivity index with the assigned bin in place of the preferred one.
The responses ``R`` come from :func:`~seldepth.selectivity.responses.binned_responses` and the
index from :func:`~seldepth.selectivity.responses.selectivity_index`: the same functions, and
the same conventions (signed R, DS on |R|, empty bins left out), as the dissection. Units
whose assigned bin has no valid pixel in the statistics are left out of the mean.

Statistics are those of the batch (the reference), or an exponential moving average of the
per-bin sums and counts (``statistics: ema``): ``S = m * S_prev + (1 - m) * S_batch``, the
same for the counts, with gradients through the batch part only.

Options beyond the reference (:class:`SelectivityConfig`):

- ``assignment: preferred`` replaces the fixed ``d_k`` by a balanced assignment to the bins the
  units already prefer (:func:`balanced_assignment`), made from the statistics of the last warm-up
  epoch and, with ``assignment_refresh_epochs: n``, remade every n epochs from the previous epoch's.
- ``bins`` may name one scheme per layer (``{enc_2: sid:16, enc_out: log:32}``); ``quantile`` bins
  are fitted on the ground truth of the first (warm-up) epoch and frozen.
- ``layer_weighting: mean`` divides lambda by the number of regularised layers.

Example:
    >>> reg = SelectivityRegularizer(model, SelectivityConfig(layers=("enc_5", "dec_3"), weight=10.0))
    >>> with reg.capture():
    ...     pred = model(image)
    >>> loss = task_loss + reg(depth, valid).loss
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from seldepth.defaults import DEFAULT_BINS, check_number
from seldepth.selectivity.bins import (
    DEFAULT_DEPTH_RANGE,
    BinScheme,
    depth_to_bins,
    parse_bins,
)
from seldepth.selectivity.dissect import resolve_layers
from seldepth.selectivity.responses import (
    binned_responses,
    mean_responses,
    project_bins,
    selectivity_index,
)

STATISTICS = ("batch", "ema")
ASSIGNMENTS = ("fixed", "preferred")
LAYER_WEIGHTINGS = ("sum", "mean")
QUANTILE_SAMPLE = 200_000  # valid depths of the first epoch that quantile bins are fitted on (a uniform random subset)


@dataclass(frozen=True)
class SelectivityConfig:
    """The selectivity regulariser of a training run, and the layers whose selectivity is logged.

    Attributes:
        layers: layers to regularise (a model's short names such as ``enc_5`` or module paths); empty = off.
        weight: lambda. The task loss is in the loss's unit (cm for METER's balanced loss), so
            lambda is relative to it (the METER-xxs study of Diamadis used 10 and 100; the reference 0.1).
        bins: bin scheme spec (``sid:32``, ``linear:16``, ``log:32``, ``quantile:32``) for every layer, or a
            mapping ``{layer: spec}`` with an entry for each regularised layer (others are ignored); a layer
            of K units gets min(N, K) bins. ``quantile`` bins need ``warmup_epochs >= 1``: they are fitted
            on a uniform random subset (at most 200 000 values) of the valid ground truth of the first
            training epoch and frozen from then on.
        statistics: ``batch`` (the reference) or ``ema`` (moving average of sums and counts).
        momentum: EMA momentum m in [0, 1).
        warmup_epochs: epochs trained without the regulariser first.
        depth_range: (min, max) metres; ground truth outside is not binned.
        log_layers: layers whose selectivity is logged on validation (dissection of the
            validation split each epoch); None = the regularised layers, [] = none. They are
            dissected with ``bins`` when it is one sid, linear or log spec, else with ``sid:64``.
        assignment: ``fixed`` (the reference: unit k gets bin ``floor(k / (K / N_b))``) or ``preferred``:
            at the start of the first epoch after the warm-up each unit gets the bin it already prefers,
            balanced so that every bin gets as many units as under ``fixed`` (:func:`balanced_assignment`,
            on the warm-up's last epoch's responses); needs ``warmup_epochs >= 1`` (``>= 2`` with quantile
            bins, which are fitted in the first epoch).
        assignment_refresh_epochs: 0 = assign once; n > 0 = assign again every n epochs after the first
            assignment, from the previous epoch's responses (``preferred`` only).
        layer_weighting: ``sum`` (the reference: ``-lambda * sum_l mean DS_l``) or ``mean``
            (``-lambda * mean_l mean DS_l``: each layer weighs lambda / |L|, so 16 layers pull as hard
            in total as one).

    Example:
        >>> SelectivityConfig(layers=("enc_2", "enc_out"), bins={"enc_2": "sid:16", "enc_out": "log:32"},
        ...                   assignment="preferred", warmup_epochs=1).layer_bins("enc_out")
        'log:32'
    """

    layers: tuple[str, ...] = ()
    weight: float = 0.1
    bins: str | dict[str, str] = "sid:32"
    statistics: str = "batch"
    momentum: float = 0.9
    warmup_epochs: int = 0
    depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE
    log_layers: tuple[str, ...] | None = None
    assignment: str = "fixed"
    assignment_refresh_epochs: int = 0
    layer_weighting: str = "sum"

    def __post_init__(self):
        check_number("selectivity.weight", self.weight, 0)
        if self.statistics not in STATISTICS:
            raise ValueError(f"selectivity.statistics must be one of {', '.join(STATISTICS)}, got {self.statistics!r}")
        check_number("selectivity.momentum", self.momentum, 0, 1, high_open=True)
        check_number("selectivity.warmup_epochs", self.warmup_epochs, 0, integer=True)
        lo, hi = self.depth_range
        check_number("selectivity.depth_range[0]", lo, 0)
        check_number("selectivity.depth_range[1]", hi, lo, low_open=True)
        if self.assignment not in ASSIGNMENTS:
            raise ValueError(f"selectivity.assignment must be one of {', '.join(ASSIGNMENTS)}, got {self.assignment!r}")
        check_number("selectivity.assignment_refresh_epochs", self.assignment_refresh_epochs, 0, integer=True)
        if self.layer_weighting not in LAYER_WEIGHTINGS:
            raise ValueError(f"selectivity.layer_weighting must be one of {', '.join(LAYER_WEIGHTINGS)}, "
                             f"got {self.layer_weighting!r}")
        if self.assignment_refresh_epochs and self.assignment != "preferred":
            raise ValueError("selectivity.assignment_refresh_epochs: reassigning bins needs selectivity.assignment: "
                             f"preferred, got {self.assignment!r}")
        quantile = any(scheme.kind == "quantile" for scheme in self._schemes().values())
        if quantile and self.warmup_epochs < 1:
            raise ValueError("selectivity.warmup_epochs must be >= 1 with quantile selectivity.bins (they are fitted "
                             "on the ground truth of the first epoch), got 0")
        needed = 2 if quantile else 1
        if self.assignment == "preferred" and self.warmup_epochs < needed:
            why = ("quantile bins are fitted in the first epoch, the units' preferences measured in the second"
                   if quantile else "the units' preferences are measured in the warm-up")
            raise ValueError(f"selectivity.warmup_epochs must be >= {needed} with selectivity.assignment: preferred "
                             f"({why}), got {self.warmup_epochs}")

    def _schemes(self) -> dict[str, BinScheme]:
        """{spec key: parsed scheme}: ``""`` for one spec of every layer, else each layer's; errors name the key."""
        if not isinstance(self.bins, (str, dict)):
            raise ValueError(f"selectivity.bins: expected a spec such as 'sid:32' or a mapping {{layer: spec}}, "  # noqa: TRY004 (a config value)
                             f"got {self.bins!r}")
        if isinstance(self.bins, str):
            specs = {"": self.bins}
        else:
            bad = [k for k, v in self.bins.items() if not isinstance(k, str) or not isinstance(v, str)]
            if bad:
                raise ValueError(f"selectivity.bins: expected a spec string per layer ({{enc_5: 'sid:16'}}), "
                                 f"got {bad[0]!r}: {self.bins[bad[0]]!r}")
            missing = [name for name in self.layers if name not in self.bins]
            if missing:
                raise ValueError(f"selectivity.bins has no entry for layer {missing[0]!r} "
                                 f"(a mapping of bins names every layer of selectivity.layers)")
            specs = dict(self.bins)
        schemes = {}
        for key, spec in specs.items():
            try:
                schemes[key] = parse_bins(spec)
            except ValueError as exc:
                where = f"selectivity.bins.{key}" if key else "selectivity.bins"
                raise ValueError(f"{where}: {str(exc).removeprefix('bins: ')}") from None
        return schemes

    @property
    def enabled(self) -> bool:
        return bool(self.layers)

    @property
    def logged_layers(self) -> tuple[str, ...]:
        return tuple(self.layers if self.log_layers is None else self.log_layers)

    def layer_bins(self, layer: str) -> str:
        """The bin spec of a regularised ``layer``."""
        return self.bins if isinstance(self.bins, str) else self.bins[layer]

    @property
    def log_bins(self) -> str:
        """The one bin spec of the validation dissection of ``log_layers``: ``bins`` when it is a single sid,
        linear or log spec, else ``sid:64`` (per-layer or quantile bins)."""
        if isinstance(self.bins, str) and parse_bins(self.bins).kind != "quantile":
            return self.bins
        return DEFAULT_BINS


def assigned_bins(num_units: int, num_bins: int, device: torch.device | None = None) -> torch.Tensor:
    """The bin assigned to each unit, ``d_k = floor(k / (K / N_b))`` (integer arithmetic: ``k * N_b // K``).

    Returns:
        (K,) int64 in [0, N_b).

    Example:
        >>> assigned_bins(6, 3)
        tensor([0, 0, 1, 1, 2, 2])
    """
    if num_units < 1 or num_bins < 1:
        raise ValueError(f"assigned_bins: expected positive K and N_b, got {num_units}, {num_bins}")
    return torch.arange(num_units, device=device) * num_bins // num_units


def bin_scores(responses: torch.Tensor, nonempty: torch.Tensor | None = None) -> torch.Tensor:
    """The selectivity index each unit would have towards each bin: DS with bin b as the assigned one.

    ``score[k, b] = (|R[k, b]| - m) / (|R[k, b]| + m)`` with ``m`` the mean ``|R|`` of unit k over the other
    non-empty bins (the DS of :func:`assigned_selectivity`). In [-1, 1], free of the unit's scale, and
    largest at the bin of largest ``|R|``. 0 for empty bins, for all-zero units and when fewer than two bins
    are non-empty.

    Args:
        responses: (K, N_b) mean responses R.
        nonempty: (N_b,) bool (default: all bins).

    Returns:
        (K, N_b) float64.

    Example:
        >>> bin_scores(torch.tensor([[3.0, 1.0], [-1.0, 3.0]]))
        tensor([[ 0.5000, -0.5000],
                [-0.5000,  0.5000]], dtype=torch.float64)
    """
    a = responses.detach().double().abs()
    n_b = a.shape[-1]
    nonempty = (torch.ones(n_b, dtype=torch.bool, device=a.device) if nonempty is None
                else nonempty.to(device=a.device, dtype=torch.bool))
    n = int(nonempty.sum())
    if n < 2:
        return torch.zeros_like(a)
    a = a * nonempty
    others = (a.sum(-1, keepdim=True) - a) / (n - 1)
    denom = a + others
    score = (a - others) / denom.clamp_min(1e-300)
    return torch.where(nonempty & (denom > 0), score, torch.zeros_like(score))


def balanced_assignment(responses: torch.Tensor, nonempty: torch.Tensor | None = None) -> torch.Tensor:
    """Each unit's bin: the one it prefers, balanced so that every bin gets as many units as under :func:`assigned_bins`.

    An optimal assignment (``scipy.optimize.linear_sum_assignment``) of the K units to K slots, slot j
    belonging to bin ``assigned_bins(K, N_b)[j]`` (so the bin sizes are K / N_b, or its floor and ceil
    exactly as the fixed assignment's), maximising the sum of :func:`bin_scores`: the mean DS towards the
    assigned bins under these responses. A unit whose preferred bin is full goes where it loses least.
    The slots of an empty bin score the same for every unit (they must be filled all the same), so the
    units left in them are those that lose least by it. With fewer than two non-empty bins (no
    preference to measure) the fixed assignment is returned.

    Args:
        responses: (K, N_b) mean responses R (signed; their magnitudes count).
        nonempty: (N_b,) bool, bins with pixels (default: all).

    Returns:
        (K,) int64 in [0, N_b), on ``responses``' device.

    Example:
        >>> R = torch.tensor([[1.0, 3.0], [2.0, 1.0], [4.0, 1.0], [3.0, 1.0]])   # three units prefer bin 0
        >>> balanced_assignment(R)                                              # the weakest of them moves
        tensor([1, 1, 0, 0])
    """
    if responses.ndim != 2:
        raise ValueError(f"responses: expected (K, N_b), got shape {tuple(responses.shape)}")
    K, n_b = responses.shape
    fixed = assigned_bins(K, n_b)
    nonempty = (torch.ones(n_b, dtype=torch.bool) if nonempty is None else nonempty.detach().bool().cpu())
    if nonempty.shape != (n_b,):
        raise ValueError(f"nonempty: expected ({n_b},), got shape {tuple(nonempty.shape)}")
    if int(nonempty.sum()) < 2:
        return fixed.to(responses.device)
    score = bin_scores(responses.detach().cpu(), nonempty)
    units, slots = linear_sum_assignment((-score[:, fixed]).numpy())
    out = torch.empty(K, dtype=torch.long)
    out[torch.from_numpy(units)] = fixed[torch.from_numpy(slots)]
    return out.to(responses.device)


class AssignedSelectivity(NamedTuple):
    """Selectivity of a layer's units towards their assigned bins.

    Attributes:
        mean_ds: () mean DS over the included units (0 if none); differentiable.
        ds: (K,) DS of each unit towards its assigned bin.
        included: (K,) bool, units whose assigned bin is non-empty and whose DS is defined.
    """

    mean_ds: torch.Tensor
    ds: torch.Tensor
    included: torch.Tensor


def assigned_selectivity(sums: torch.Tensor, counts: torch.Tensor, assigned: torch.Tensor | None = None) -> AssignedSelectivity:
    """Mean selectivity index of a layer's units, each towards its assigned bin.

    Args:
        sums: (K, N_b) per-unit per-bin activation sums (:func:`binned_responses`).
        counts: (N_b,) valid pixels per bin.
        assigned: (K,) int64 bins (default :func:`assigned_bins`).

    Returns:
        :class:`AssignedSelectivity`.

    Example:
        >>> sums = torch.tensor([[4.0, 0.0], [0.0, 2.0]]); counts = torch.tensor([2.0, 2.0])
        >>> assigned_selectivity(sums, counts).mean_ds
        tensor(1.)
    """
    if sums.ndim != 2 or counts.shape != sums.shape[-1:]:
        raise ValueError(f"sums, counts: expected (K, N_b) and (N_b,), got {tuple(sums.shape)} and {tuple(counts.shape)}")
    K, n_b = sums.shape
    if assigned is None:
        assigned = assigned_bins(K, n_b, sums.device)
    nonempty = counts > 0
    sel = selectivity_index(mean_responses(sums, counts), nonempty, preferred=assigned)
    included = nonempty[assigned] & sel.defined
    n = included.sum()
    mean_ds = torch.where(included, sel.ds, torch.zeros_like(sel.ds)).sum() / n.clamp_min(1)
    return AssignedSelectivity(mean_ds, sel.ds, included)


class RegularizerOutput(NamedTuple):
    """loss: () -weight * sum of the layers' mean assigned DS (the mean with ``layer_weighting: mean``; 0 when
    off or in warm-up); ds: {layer: () mean assigned DS, detached} (a quantile layer's once its bins are fitted)."""

    loss: torch.Tensor
    ds: dict[str, torch.Tensor]


class SelectivityRegularizer(nn.Module):
    """L_assign on named layers of a model, from activations captured by forward hooks.

    Activations are captured only inside :meth:`capture` (validation and inference runs pay
    nothing). Call the module with the batch's ground truth after the forward pass, and
    :meth:`start_epoch` at the start of every training epoch (the training module does): after the
    first epoch it fits quantile bins, and with ``assignment: preferred`` it assigns the bins when due.
    In training mode it adds up each epoch's per-bin sums and counts (detached, float64) for that.

    Args:
        model: the network whose layers are regularised (not registered as a submodule).
        config: :class:`SelectivityConfig`.

    Attributes:
        schemes: {layer: :class:`~seldepth.selectivity.bins.BinScheme`}; ``scheme``: the one of every
            layer when ``bins`` is one spec (None with per-layer bins).
        edges: {layer: (N_b + 1,) float64 edges}, once the layer's width is seen (quantile: once fitted).
        assigned: {layer: (K,) int64 assigned bins}, fixed until a ``preferred`` assignment replaces them.
        epoch_stats: {layer: ((K, N_b) sums, (N_b,) counts)} of the training epoch so far (``preferred``).
        epoch: the last epoch started (-1 before training); ``assigned_epoch``: the epoch at whose start
            the last ``preferred`` assignment was made (-1: none yet).
    """

    def __init__(self, model: nn.Module, config: SelectivityConfig):
        super().__init__()
        self.config = config
        self.layers = resolve_layers(model, list(config.layers)) if config.layers else {}
        self.schemes = {name: parse_bins(config.layer_bins(name)) for name in self.layers}
        self.scheme = parse_bins(config.bins) if isinstance(config.bins, str) else None
        self._acts: dict[str, torch.Tensor] = {}
        self._capturing = False
        self.ema: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.edges: dict[str, torch.Tensor] = {}
        self.assigned: dict[str, torch.Tensor] = {}
        self.epoch_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.num_units: dict[str, int] = {}
        self.epoch = -1
        self.assigned_epoch = -1
        fitting = any(not scheme.is_fitted for scheme in self.schemes.values())
        # quantile bins: a bottom-k sample (values, random keys) of the first epoch's valid depths
        self._sample = (torch.zeros(0), torch.zeros(0, dtype=torch.float64)) if fitting else None
        self._sample_batches = 0
        modules = dict(model.named_modules())
        self._handles = [modules[path].register_forward_hook(self._hook(name)) for name, path in self.layers.items()]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if not self._capturing:
                return
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                what = f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(f"selectivity.layers: {name!r} outputs {what}; regularised layers must output (B, K, h, w)")
            self._acts[name] = output
        return hook

    @contextlib.contextmanager
    def capture(self):
        """Capture the regularised layers' activations during the forward passes inside this block."""
        self._acts.clear()
        self._capturing = bool(self.layers)
        try:
            yield self
        finally:
            self._capturing = False

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _layer_edges(self, name: str, num_units: int) -> torch.Tensor | None:
        """The layer's edges (None while its quantile bins wait for the first epoch's ground truth)."""
        if name not in self.edges:
            scheme = self.schemes[name]
            if not scheme.is_fitted:
                return None
            self.edges[name] = scheme.edges(scheme.bins_for(num_units))
        return self.edges[name]

    def forward(self, depth: torch.Tensor, valid: torch.Tensor | None = None, active: bool = True) -> RegularizerOutput:
        """L_assign of the activations captured in the last :meth:`capture` block.

        Args:
            depth: (B, 1, H, W) ground truth, metres, at any resolution (activations are upsampled to it).
            valid: optional (B, 1, H, W) bool.
            active: False in warm-up: statistics are updated and logged, the loss is 0.

        Returns:
            :class:`RegularizerOutput`.
        """
        zero = depth.new_zeros(())
        if not self.layers:
            return RegularizerOutput(zero, {})
        missing = [n for n in self.layers if n not in self._acts]
        if missing:
            raise RuntimeError(f"no activations captured for {', '.join(missing)}: run the model inside capture()")
        lo, hi = self.config.depth_range
        mask = (depth > lo) & (depth < hi)
        if valid is not None:
            mask &= valid.bool()
        if self.training and self._sample is not None:
            self._collect_depths(depth, mask)
        bins_cache: dict[tuple, torch.Tensor] = {}
        proj_cache: dict[tuple, torch.Tensor] = {}
        total = zero
        logged = {}
        for name in self.layers:
            act = self._acts[name]
            _, K, h, w = act.shape
            self.num_units.setdefault(name, K)
            edges = self._layer_edges(name, K)
            if edges is None:
                continue
            n_b = edges.numel() - 1
            key = (self.config.layer_bins(name), n_b)  # layers of one spec and N_b share bins (and projections)
            if key not in bins_cache:
                bins_cache[key] = depth_to_bins(depth, edges.to(depth.device), mask)
            if (*key, h, w) not in proj_cache:
                proj_cache[(*key, h, w)] = project_bins(bins_cache[key], n_b, (h, w), act.dtype)
            out = binned_responses(act, bins_cache[key], n_b, projected=proj_cache[(*key, h, w)])
            sums, counts = out.sums, out.counts
            if self.training and self.config.assignment == "preferred":
                self._accumulate(name, sums, counts)
            if self.config.statistics == "ema" and self.training:
                sums, counts = self._ema_update(name, sums, counts)
            assigned = self.assigned.get(name)
            if assigned is None or assigned.device != sums.device:
                assigned = self.assigned[name] = (assigned_bins(K, n_b) if assigned is None else assigned).to(sums.device)
            sel = assigned_selectivity(sums, counts, assigned)
            total = total + sel.mean_ds
            logged[name] = sel.mean_ds.detach()
        self._acts.clear()
        weight = self.config.weight / (len(self.layers) if self.config.layer_weighting == "mean" else 1)
        loss = -weight * total if active else zero
        return RegularizerOutput(loss, logged)

    def _accumulate(self, name: str, sums: torch.Tensor, counts: torch.Tensor) -> None:
        s, c = sums.detach().double(), counts.detach().double()
        if name in self.epoch_stats:
            prev_s, prev_c = self.epoch_stats[name]
            s, c = prev_s.to(s.device) + s, prev_c.to(c.device) + c
        self.epoch_stats[name] = (s, c)

    def _collect_depths(self, depth: torch.Tensor, mask: torch.Tensor) -> None:
        """Keep a uniform random subset of the epoch's valid depths: the QUANTILE_SAMPLE of smallest random
        keys, drawn per batch from a generator seeded by the batch's number (the same subset after a resume)."""
        values = depth.detach()[mask].float().cpu()
        keys = torch.rand(values.numel(), generator=torch.Generator().manual_seed(self._sample_batches), dtype=torch.float64)
        self._sample_batches += 1
        kept_values, kept_keys = self._sample
        self._sample = (torch.cat([kept_values, values]), torch.cat([kept_keys, keys]))
        if self._sample[0].numel() > 2 * QUANTILE_SAMPLE:
            self._prune_sample()

    def _prune_sample(self) -> None:
        values, keys = self._sample
        if values.numel() > QUANTILE_SAMPLE:
            keep = keys.topk(QUANTILE_SAMPLE, largest=False).indices.sort().values
            self._sample = (values[keep], keys[keep])

    def start_epoch(self, epoch: int, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    broadcast: Callable[[dict], dict] | None = None) -> None:
        """Begin training epoch ``epoch`` (0, 1, ...): fit the quantile bins on the first epoch's ground truth (from
        epoch 1 on), make the ``preferred`` assignment when due (:meth:`assign_from_statistics`), then start the
        epoch's statistics afresh. Does nothing for an epoch already started (a run resumed mid-epoch).

        Args:
            epoch: the epoch about to be trained.
            reduce: sums a tensor over the training processes (DDP), so that all of them assign alike.
            broadcast: gives every process the first process's object (the fitted edges, under DDP).
        """
        if epoch <= self.epoch:
            return
        if epoch >= 1 and self._sample is not None:
            self._fit_quantile_bins(broadcast)
        c = self.config
        if c.assignment == "preferred" and epoch >= c.warmup_epochs and (
                self.assigned_epoch < 0 or (c.assignment_refresh_epochs
                                            and epoch - self.assigned_epoch >= c.assignment_refresh_epochs)):
            self.assign_from_statistics(reduce)
            self.assigned_epoch = epoch
        self.epoch_stats.clear()
        self.epoch = epoch

    def _fit_quantile_bins(self, broadcast: Callable[[dict], dict] | None) -> None:
        self._prune_sample()
        values = self._sample[0]
        fitted: dict[str, BinScheme] = {}
        edges = {}
        for name, scheme in self.schemes.items():
            if scheme.is_fitted or name not in self.num_units:
                continue
            spec = self.config.layer_bins(name)
            if spec not in fitted:
                try:
                    fitted[spec] = scheme.fit(values, max_samples=QUANTILE_SAMPLE)
                except ValueError as exc:
                    raise ValueError(f"selectivity.bins: cannot fit {spec} on the first epoch's ground truth: {exc}") from None
            edges[name] = fitted[spec].edges(fitted[spec].bins_for(self.num_units[name]))
        if broadcast is not None:
            edges = broadcast(edges)
        self.edges.update(edges)
        self._sample = None

    def assign_from_statistics(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, list[int]]:
        """Assign each layer's bins by :func:`balanced_assignment` on the responses accumulated since the last
        :meth:`start_epoch` (layers without statistics keep their bins).

        Args:
            reduce: sums a tensor over the training processes (DDP); None: this process's statistics.

        Returns:
            :meth:`assignments`.
        """
        for name in self.layers:
            if name not in self.epoch_stats:
                continue
            sums, counts = self.epoch_stats[name]
            if reduce is not None:
                sums, counts = reduce(sums.clone()), reduce(counts.clone())
            self.assigned[name] = balanced_assignment(mean_responses(sums, counts), counts > 0).cpu()
        return self.assignments()

    def assignments(self) -> dict[str, list[int]]:
        """{layer: the bin assigned to each unit} (layers seen in a forward pass or restored from a checkpoint)."""
        return {name: self.assigned[name].tolist() for name in self.layers if name in self.assigned}

    def assignment_summary(self) -> dict[str, dict]:
        """{layer: {num_bins, bins_spec, edges, assigned}}: what ``selectivity_assignment.json`` of a run holds.

        Example:
            >>> reg.assignment_summary()["enc_5"]
            {'num_bins': 4, 'bins_spec': 'sid:32:alpha=0.75,beta=10', 'edges': [0.0, 0.75, ...], 'assigned': [0, 0, 1, ...]}
        """
        out = {}
        for name in self.layers:
            if name in self.assigned and name in self.edges:
                edges = self.edges[name]
                out[name] = {"num_bins": edges.numel() - 1, "bins_spec": self.schemes[name].spec(),
                             "edges": edges.tolist(), "assigned": self.assigned[name].tolist()}
        return out

    def _ema_update(self, name: str, sums: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.config.momentum
        if name in self.ema:
            prev_s, prev_c = self.ema[name]
            sums = m * prev_s.to(sums) + (1 - m) * sums
            counts = m * prev_c.to(counts) + (1 - m) * counts
        self.ema[name] = (sums.detach(), counts.detach())
        return sums, counts

    def ema_state(self) -> dict[str, list[torch.Tensor]]:
        """The moving averages, for a training checkpoint."""
        return {name: [s.cpu(), c.cpu()] for name, (s, c) in self.ema.items()}

    def load_ema_state(self, state: dict) -> None:
        self.ema = {name: (s, c) for name, (s, c) in state.items()}

    def training_state(self) -> dict:
        """The assignments, the epoch's statistics, fitted quantile edges and the depth sample they are fitted on
        (while it is being collected), for a training checkpoint (plain tensors, ints and dicts)."""
        quantile = [name for name, scheme in self.schemes.items() if not scheme.is_fitted and name in self.edges]
        state = {"epoch": self.epoch, "assigned_epoch": self.assigned_epoch,
                 "assigned": {name: a.cpu() for name, a in self.assigned.items()},
                 "epoch_stats": {name: [s.cpu(), c.cpu()] for name, (s, c) in self.epoch_stats.items()},
                 "num_units": dict(self.num_units), "quantile_edges": {name: self.edges[name] for name in quantile}}
        if self._sample is not None:
            self._prune_sample()
            state["sample"] = list(self._sample)
            state["sample_batches"] = self._sample_batches
        return state

    def load_training_state(self, state: dict) -> None:
        """Restore :meth:`training_state`."""
        self.epoch, self.assigned_epoch = int(state["epoch"]), int(state["assigned_epoch"])
        self.assigned = dict(state["assigned"])
        self.epoch_stats = {name: (s, c) for name, (s, c) in state["epoch_stats"].items()}
        self.num_units = {name: int(k) for name, k in state["num_units"].items()}
        self.edges.update(state["quantile_edges"])
        if "sample" in state:
            self._sample = tuple(state["sample"])
            self._sample_batches = int(state["sample_batches"])
        elif self._sample is not None:
            self._sample = None
