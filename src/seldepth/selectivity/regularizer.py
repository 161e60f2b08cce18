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

Example:
    >>> reg = SelectivityRegularizer(model, SelectivityConfig(layers=("enc_5", "dec_3"), weight=10.0))
    >>> with reg.capture():
    ...     pred = model(image)
    >>> loss = task_loss + reg(depth, valid).loss
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from seldepth.defaults import check_number
from seldepth.selectivity.bins import DEFAULT_DEPTH_RANGE, depth_to_bins, parse_bins
from seldepth.selectivity.dissect import resolve_layers
from seldepth.selectivity.responses import binned_responses, mean_responses, project_bins, selectivity_index

STATISTICS = ("batch", "ema")


@dataclass(frozen=True)
class SelectivityConfig:
    """The selectivity regulariser of a training run, and the layers whose selectivity is logged.

    Attributes:
        layers: layers to regularise (a model's short names such as ``enc_5`` or module paths); empty = off.
        weight: lambda. The task loss is in the loss's unit (cm for METER's balanced loss), so
            lambda is relative to it (the METER-xxs study of Diamadis used 10 and 100; the reference 0.1).
        bins: bin scheme spec (``sid:32``, ``linear:16``, ...); a layer of K units gets min(N, K) bins.
        statistics: ``batch`` (the reference) or ``ema`` (moving average of sums and counts).
        momentum: EMA momentum m in [0, 1).
        warmup_epochs: epochs trained without the regulariser first.
        depth_range: (min, max) metres; ground truth outside is not binned.
        log_layers: layers whose selectivity is logged on validation (dissection of the
            validation split each epoch); None = the regularised layers, [] = none.
    """

    layers: tuple[str, ...] = ()
    weight: float = 0.1
    bins: str = "sid:32"
    statistics: str = "batch"
    momentum: float = 0.9
    warmup_epochs: int = 0
    depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE
    log_layers: tuple[str, ...] | None = None

    def __post_init__(self):
        check_number("selectivity.weight", self.weight, 0)
        if self.statistics not in STATISTICS:
            raise ValueError(f"selectivity.statistics must be one of {', '.join(STATISTICS)}, got {self.statistics!r}")
        check_number("selectivity.momentum", self.momentum, 0, 1, high_open=True)
        check_number("selectivity.warmup_epochs", self.warmup_epochs, 0, integer=True)
        lo, hi = self.depth_range
        check_number("selectivity.depth_range[0]", lo, 0)
        check_number("selectivity.depth_range[1]", hi, lo, low_open=True)
        try:
            scheme = parse_bins(self.bins)
        except ValueError as exc:
            raise ValueError(f"selectivity.{exc}") from None
        if not scheme.is_fitted:
            raise ValueError("selectivity.bins: quantile bins are not supported for training (they need the data first); "
                             "use sid, linear or log")

    @property
    def enabled(self) -> bool:
        return bool(self.layers)

    @property
    def logged_layers(self) -> tuple[str, ...]:
        return tuple(self.layers if self.log_layers is None else self.log_layers)


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
    """loss: () -weight * sum of the layers' mean assigned DS (0 when off or in warm-up);
    ds: {layer: () mean assigned DS, detached}."""

    loss: torch.Tensor
    ds: dict[str, torch.Tensor]


class SelectivityRegularizer(nn.Module):
    """L_assign on named layers of a model, from activations captured by forward hooks.

    Activations are captured only inside :meth:`capture` (validation and inference runs pay
    nothing). Call the module with the batch's ground truth after the forward pass.

    Args:
        model: the network whose layers are regularised (not registered as a submodule).
        config: :class:`SelectivityConfig`.
    """

    def __init__(self, model: nn.Module, config: SelectivityConfig):
        super().__init__()
        self.config = config
        self.layers = resolve_layers(model, list(config.layers)) if config.layers else {}
        self.scheme = parse_bins(config.bins)
        self._acts: dict[str, torch.Tensor] = {}
        self._capturing = False
        self._edges: dict[int, torch.Tensor] = {}
        self.ema: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
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

    def _edges_for(self, n_b: int) -> torch.Tensor:
        if n_b not in self._edges:
            self._edges[n_b] = self.scheme.edges(n_b)
        return self._edges[n_b]

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
        bins_cache: dict[int, torch.Tensor] = {}
        proj_cache: dict[tuple, torch.Tensor] = {}
        total = zero
        logged = {}
        for name in self.layers:
            act = self._acts[name]
            B, K, h, w = act.shape
            n_b = self.scheme.bins_for(K)
            if n_b not in bins_cache:
                bins_cache[n_b] = depth_to_bins(depth, self._edges_for(n_b).to(depth.device), mask)
            key = (n_b, h, w)
            if key not in proj_cache:
                proj_cache[key] = project_bins(bins_cache[n_b], n_b, (h, w), act.dtype)
            out = binned_responses(act, bins_cache[n_b], n_b, projected=proj_cache[key])
            sums, counts = out.sums, out.counts
            if self.config.statistics == "ema" and self.training:
                sums, counts = self._ema_update(name, sums, counts)
            sel = assigned_selectivity(sums, counts)
            total = total + sel.mean_ds
            logged[name] = sel.mean_ds.detach()
        self._acts.clear()
        loss = -self.config.weight * total if active else zero
        return RegularizerOutput(loss, logged)

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
