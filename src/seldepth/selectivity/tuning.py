"""What a unit's depth response looks like beside its DS: tuned to a range, a ramp to one end, or flat.

DS scores how far a unit's largest |R| stands above the mean of the others, so a response that rises
steadily with depth and peaks in the farthest bin (a *ramp*) scores at least as high as one that
responds to a single depth range (a *tuned* unit). From the same responses R of a dissection this
module measures, per unit and over the non-empty bins only:

- the **peak**: the bin of the largest |R| (as DS's preferred bin) and whether it is the first or
  last non-empty bin (``peak_at_edge``);
- the **tuning width**: the run of consecutive non-empty bins around the peak where |R| is at least
  half the peak's |R| (full width at half maximum), in bins and in metres (from the first run bin's
  lower edge to the last one's upper edge);
- **monotonicity**: the Spearman rank correlation of |R| with the bin position (1: |R| only rises with
  depth, -1: only falls);

and classifies it:

- ``flat``: DS below ``flat_ds`` (default :data:`FLAT_DS` = 0.1: the peak is less than 1.22 times the
  mean |R| of the other bins);
- ``ramp``: not flat, the peak at the last non-empty bin with a monotonicity of at least ``ramp_rho``
  (default :data:`RAMP_RHO` = 0.7), or at the first with at most ``-ramp_rho``, and a tuning width of
  two bins or more (a rise, not a step);
- ``tuned``: every other unit: a peak inside the range, or at an end without a steady rise to it
  (a unit that answers only the farthest bins is tuned to the far range).

Example:
    >>> r = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.1, 2.0, 0.2, 0.1], [1.0, 1.05, 1.0, 1.02]])
    >>> tuning_of(r, torch.ones(4), torch.tensor([0.0, 1, 2, 3, 4])).kinds
    ['ramp', 'tuned', 'flat']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seldepth.selectivity.responses import selectivity_index

TUNING_KINDS = ("tuned", "ramp", "flat")
FLAT_DS = 0.1  # below this DS a unit is flat
RAMP_RHO = 0.7  # at least this rank correlation towards an end peak makes a ramp


@dataclass
class Tuning:
    """Per-unit tuning measures of one layer (see the module docstring).

    Attributes:
        peak_bin: (K,) int64 bin of the largest |R| among non-empty bins.
        peak_at_edge: (K,) bool, the peak is the first or last non-empty bin.
        width_bins: (K,) int64 half-maximum run length around the peak, in bins.
        width_m: (K,) float64 the same run in metres.
        monotonicity: (K,) float64 rank correlation of |R| with the bin position (positive: rising with depth).
        kinds: per unit ``tuned``, ``ramp`` or ``flat``.
    """

    peak_bin: torch.Tensor
    peak_at_edge: torch.Tensor
    width_bins: torch.Tensor
    width_m: torch.Tensor
    monotonicity: torch.Tensor
    kinds: list[str]

    def counts(self) -> dict[str, int]:
        """Units of each kind: ``{"tuned": n, "ramp": n, "flat": n}``."""
        return {kind: self.kinds.count(kind) for kind in TUNING_KINDS}

    def to_dict(self) -> dict:
        return {"counts": self.counts(), "kind": list(self.kinds), "peak_at_edge": self.peak_at_edge.tolist(),
                "width_bins": self.width_bins.tolist(), "width_m": self.width_m.tolist(),
                "monotonicity": self.monotonicity.tolist()}


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor, ties given their mean rank."""
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = torch.arange(len(values), dtype=torch.float64)
    _, inverse = torch.unique(values, return_inverse=True)
    sums = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64).index_add_(0, inverse, ranks)
    sizes = torch.bincount(inverse).double()
    return (sums / sizes)[inverse]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = _ranks(a) - (len(a) - 1) / 2, _ranks(b) - (len(b) - 1) / 2
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else 0.0


def tuning_of(responses: torch.Tensor, counts: torch.Tensor, edges: torch.Tensor, ds: torch.Tensor | None = None,
              flat_ds: float = FLAT_DS, ramp_rho: float = RAMP_RHO) -> Tuning:
    """Tuning measures and kind of each unit of a layer.

    Args:
        responses: (K, N_b) mean responses R.
        counts: (N_b,) valid pixels per bin (empty bins, count 0, are left out).
        edges: (N_b + 1,) bin edges in metres.
        ds: (K,) DS of the units (default: :func:`~seldepth.selectivity.responses.selectivity_index` of
            ``responses``).
        flat_ds: DS below which a unit is flat.
        ramp_rho: the monotonicity towards its end from which an end-peaking unit is a ramp.

    Returns:
        A :class:`Tuning`.

    Raises:
        ValueError: naming the argument, for shapes that do not fit.
    """
    r = responses.detach().double().abs()
    if r.ndim != 2:
        raise ValueError(f"responses: expected (K, N_b), got shape {tuple(responses.shape)}")
    k, n_b = r.shape
    if counts.shape != (n_b,) or edges.shape != (n_b + 1,):
        raise ValueError(f"counts and edges: expected ({n_b},) and ({n_b + 1},) for {n_b} bins, got "
                         f"{tuple(counts.shape)} and {tuple(edges.shape)}")
    nonempty = counts > 0
    if ds is None:
        ds = selectivity_index(responses.detach().double(), nonempty).ds
    present = torch.nonzero(nonempty).flatten()
    edges = edges.double()
    peak_bin = torch.zeros(k, dtype=torch.long)
    at_edge = torch.zeros(k, dtype=torch.bool)
    width_bins = torch.zeros(k, dtype=torch.long)
    width_m = torch.zeros(k, dtype=torch.float64)
    mono = torch.zeros(k, dtype=torch.float64)
    kinds = []
    positions = torch.arange(len(present), dtype=torch.float64)
    for unit in range(k):
        if len(present) == 0:
            kinds.append("flat")
            continue
        values = r[unit, present]
        p = int(values.argmax())
        peak_bin[unit] = present[p]
        at_edge[unit] = p in (0, len(present) - 1)
        half = values >= 0.5 * values[p]
        lo = p
        while lo > 0 and half[lo - 1]:
            lo -= 1
        hi = p
        while hi < len(present) - 1 and half[hi + 1]:
            hi += 1
        width_bins[unit] = hi - lo + 1
        width_m[unit] = edges[present[hi] + 1] - edges[present[lo]]
        towards = 1.0 if p == len(present) - 1 else -1.0 if p == 0 else 0.0  # the end the peak is at
        mono[unit] = rho = _spearman(values, positions) if len(present) > 1 else 0.0
        if float(ds[unit]) < flat_ds:
            kinds.append("flat")
        elif towards * rho >= ramp_rho and int(width_bins[unit]) >= 2:
            kinds.append("ramp")
        else:
            kinds.append("tuned")
    return Tuning(peak_bin, at_edge, width_bins, width_m, mono, kinds)
