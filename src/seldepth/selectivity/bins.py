"""Depth bins for selectivity: schemes, spec strings, and the map from depth to bin indices.

A scheme gives ``N_b + 1`` increasing edges ``e_0 < e_1 < ... < e_{N_b}``; bin ``d`` holds the
depths in ``(e_d, e_{d+1}]`` (right-closed, so SID's first bin is ``(0, alpha]``). Depth at or
below ``e_0``, above ``e_{N_b}``, not finite, or marked invalid gets index ``-1``: it is left
out, never put in bin 0 (the reference code of You et al., ICCV 2021, puts depth above ``beta`` into bin 0,
a bug not copied here).

Schemes (``sid`` as in the reference code of You et al., ICCV 2021):
    ``sid``       spacing-increasing discretisation: edges 0, alpha, then
                  ``t_i = exp(log(beta + 1 - alpha) * i / (N_b - 1)) - (1 - alpha)`` for
                  ``i = 1 .. N_b - 2``, then beta. NYU alpha 0.75, beta 10; KITTI alpha 3, beta 80.
    ``linear``    equal widths over ``(min, max]``.
    ``log``       equal widths in log depth over ``(min, max]`` (``min > 0``).
    ``quantile``  equal pixel counts over ``(min, max]``, fitted on a data set
                  (:meth:`BinScheme.fit`).

Spec strings: ``KIND[:N][:key=value,...]``, e.g. ``sid:64``, ``linear:32``,
``sid:64:alpha=0.75,beta=10``, ``log:32:min=0.5,max=10``, ``sid:64:preset=kitti``.
The number of bins of a layer with ``K`` units is ``min(N, K)`` (:meth:`BinScheme.bins_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from seldepth.defaults import DEFAULT_BINS, DEFAULT_DEPTH_RANGE, DEFAULT_NUM_BINS  # noqa: F401  (re-exported)

KINDS = ("sid", "linear", "log", "quantile")

# Per data set defaults of each scheme's parameters.
PRESETS: dict[str, dict[str, dict[str, float]]] = {
    "nyu": {"sid": {"alpha": 0.75, "beta": 10.0}, "linear": {"min": 0.0, "max": 10.0},
            "log": {"min": 0.5, "max": 10.0}, "quantile": {"min": 0.0, "max": 10.0}},
    "kitti": {"sid": {"alpha": 3.0, "beta": 80.0}, "linear": {"min": 0.0, "max": 80.0},
              "log": {"min": 1.0, "max": 80.0}, "quantile": {"min": 0.0, "max": 80.0}},
}
_KEYS = {"sid": ("alpha", "beta"), "linear": ("min", "max"), "log": ("min", "max"), "quantile": ("min", "max")}


def sid_edges(num_bins: int, alpha: float = 0.75, beta: float = 10.0) -> torch.Tensor:
    """Edges of the spacing-increasing discretisation (as in You et al., ICCV 2021).

    Args:
        num_bins: N_b >= 2.
        alpha: upper edge of the first bin ``(0, alpha]``, metres.
        beta: last edge, metres (``beta > alpha``).

    Returns:
        (N_b + 1,) float64 edges ``0, alpha, t_1, ..., t_{N_b-2}, beta``.

    Example:
        >>> sid_edges(4, 0.75, 10.0)
        tensor([ 0.0000,  0.7500,  1.9222,  4.4686, 10.0000], dtype=torch.float64)
    """
    _check_num_bins(num_bins)
    if not (0 < alpha < beta):
        raise ValueError(f"sid bins need 0 < alpha < beta, got alpha={alpha}, beta={beta}")
    i = torch.arange(1, num_bins - 1, dtype=torch.float64)
    t = torch.exp(math.log(beta + 1 - alpha) * i / (num_bins - 1)) - (1 - alpha)
    return torch.cat([torch.tensor([0.0, alpha], dtype=torch.float64), t, torch.tensor([beta], dtype=torch.float64)])


def linear_edges(num_bins: int, min_depth: float = 0.0, max_depth: float = 10.0) -> torch.Tensor:
    """(N_b + 1,) float64 edges of equal width over ``(min_depth, max_depth]``."""
    _check_num_bins(num_bins)
    if not (0 <= min_depth < max_depth):
        raise ValueError(f"linear bins need 0 <= min < max, got min={min_depth}, max={max_depth}")
    return torch.linspace(min_depth, max_depth, num_bins + 1, dtype=torch.float64)


def log_edges(num_bins: int, min_depth: float = 0.5, max_depth: float = 10.0) -> torch.Tensor:
    """(N_b + 1,) float64 edges of equal width in log depth over ``(min_depth, max_depth]``."""
    _check_num_bins(num_bins)
    if not (0 < min_depth < max_depth):
        raise ValueError(f"log bins need 0 < min < max, got min={min_depth}, max={max_depth}")
    return torch.logspace(math.log10(min_depth), math.log10(max_depth), num_bins + 1, dtype=torch.float64)


def quantile_edges(depths: torch.Tensor, num_bins: int, min_depth: float = 0.0, max_depth: float = 10.0) -> torch.Tensor:
    """Edges with (about) equal numbers of ``depths`` per bin over ``(min_depth, max_depth]``.

    Args:
        depths: (N,) sample of valid depths, metres (values outside the range are ignored).
        num_bins: N_b >= 2.
        min_depth, max_depth: the first and last edge.

    Returns:
        (N_b + 1,) float64 strictly increasing edges. Ties in ``depths`` (e.g. millimetre
        quantisation) can make inner quantiles equal; such edges are nudged apart by the
        smallest float64 step so that every bin is a proper interval.
    """
    _check_num_bins(num_bins)
    if not (0 <= min_depth < max_depth):
        raise ValueError(f"quantile bins need 0 <= min < max, got min={min_depth}, max={max_depth}")
    d = depths.detach().flatten().double().cpu()
    d = d[(d > min_depth) & (d <= max_depth)]
    if d.numel() == 0:
        raise ValueError(f"depths: no value in ({min_depth}, {max_depth}] to fit quantile bins on")
    s = d.sort().values
    pos = torch.linspace(0, 1, num_bins + 1, dtype=torch.float64)[1:-1] * (len(s) - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp_max(len(s) - 1)
    inner = s[lo] + (s[hi] - s[lo]) * (pos - lo)  # linear interpolation between order statistics
    edges = torch.cat([torch.tensor([min_depth], dtype=torch.float64), inner, torch.tensor([max_depth], dtype=torch.float64)])
    for k in range(1, len(edges)):  # strictly increasing
        if edges[k] <= edges[k - 1]:
            edges[k] = torch.nextafter(edges[k - 1], torch.tensor(math.inf, dtype=torch.float64))
    if edges[-1] > max_depth:
        raise ValueError(f"depths: too few distinct values to fit {num_bins} quantile bins in ({min_depth}, {max_depth}]")
    return edges


def _check_num_bins(num_bins: int) -> None:
    if not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")


@dataclass(frozen=True)
class BinScheme:
    """A depth bin scheme: kind, requested number of bins and parameters.

    Attributes:
        kind: one of ``sid``, ``linear``, ``log``, ``quantile``.
        num_bins: requested N; a layer of K units gets ``min(N, K)`` bins (at least 2).
        params: ``alpha``/``beta`` (sid) or ``min``/``max`` (others), metres.
        sample: quantile only: the sorted depth sample the edges are fitted on (``fit``).

    Example:
        >>> scheme = parse_bins("sid:64")
        >>> scheme.bins_for(16), scheme.edges(16).shape
        (16, torch.Size([17]))
    """

    kind: str = "sid"
    num_bins: int = DEFAULT_NUM_BINS
    params: dict[str, float] = field(default_factory=lambda: dict(PRESETS["nyu"]["sid"]))
    sample: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"bins: unknown kind {self.kind!r}; available: {', '.join(KINDS)}")
        _check_num_bins(self.num_bins)
        unknown = set(self.params) - set(_KEYS[self.kind])
        if unknown:
            raise ValueError(f"bins: {self.kind} takes parameters {', '.join(_KEYS[self.kind])}, "
                             f"got {', '.join(sorted(unknown))}")
        missing = set(_KEYS[self.kind]) - set(self.params)
        if missing:
            raise ValueError(f"bins: {self.kind} needs parameters {', '.join(sorted(missing))}")
        p = self.params
        if self.kind == "quantile":
            if not (0 <= p["min"] < p["max"]):
                raise ValueError(f"bins: quantile bins need 0 <= min < max, got min={p['min']}, max={p['max']}")
        else:
            self.edges(2)  # validates the parameters

    @property
    def is_fitted(self) -> bool:
        """False only for a quantile scheme that has not seen data yet."""
        return self.kind != "quantile" or self.sample is not None

    def bins_for(self, num_units: int) -> int:
        """N_b of a layer with ``num_units`` units: ``min(num_bins, num_units)``, at least 2."""
        return max(2, min(self.num_bins, int(num_units)))

    def edges(self, num_bins: int | None = None) -> torch.Tensor:
        """(N_b + 1,) float64 edges for ``num_bins`` bins (default the requested number)."""
        n = self.num_bins if num_bins is None else num_bins
        p = self.params
        if self.kind == "sid":
            return sid_edges(n, p["alpha"], p["beta"])
        if self.kind == "linear":
            return linear_edges(n, p["min"], p["max"])
        if self.kind == "log":
            return log_edges(n, p["min"], p["max"])
        if self.sample is None:
            raise ValueError("bins: a quantile scheme must be fitted on data first (BinScheme.fit)")
        return quantile_edges(self.sample, n, p["min"], p["max"])

    def fit(self, depths: torch.Tensor, max_samples: int = 2_000_000, seed: int = 0) -> "BinScheme":
        """A quantile scheme fitted on ``depths`` (any shape, metres; out-of-range values ignored).

        Keeps at most ``max_samples`` values (a seeded random subset). Other kinds are returned unchanged.
        """
        if self.kind != "quantile":
            return self
        d = depths.detach().flatten().double().cpu()
        d = d[(d > self.params["min"]) & (d <= self.params["max"])]
        if d.numel() == 0:
            raise ValueError(f"depths: no value in ({self.params['min']}, {self.params['max']}] to fit quantile bins on")
        if d.numel() > max_samples:
            g = torch.Generator().manual_seed(seed)
            d = d[torch.randperm(d.numel(), generator=g)[:max_samples]]
        return replace(self, sample=d.sort().values)

    def spec(self) -> str:
        """The spec string of this scheme (parseable by :func:`parse_bins`)."""
        opts = ",".join(f"{k}={self.params[k]:g}" for k in _KEYS[self.kind])
        return f"{self.kind}:{self.num_bins}:{opts}"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "num_bins": self.num_bins, "params": dict(self.params), "spec": self.spec()}


def parse_bins(spec: str | BinScheme, preset: str = "nyu") -> BinScheme:
    """A :class:`BinScheme` from a spec string ``KIND[:N][:key=value,...]``.

    Args:
        spec: e.g. ``sid:64``, ``linear:32``, ``sid:64:alpha=0.75,beta=10``, ``quantile:32``,
            ``sid:64:preset=kitti``. A :class:`BinScheme` is returned as is.
        preset: data set whose defaults fill parameters the spec leaves out (``nyu``, ``kitti``).

    Raises:
        ValueError: naming ``bins`` and what was expected.
    """
    if isinstance(spec, BinScheme):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"bins: expected a spec such as 'sid:64', got {spec!r}")
    parts = spec.strip().split(":")
    kind = parts[0].strip().lower()
    if kind not in KINDS:
        raise ValueError(f"bins: spec {spec!r}: unknown kind {kind!r}; available: {', '.join(KINDS)}")
    num_bins = DEFAULT_NUM_BINS
    options: dict[str, str] = {}
    rest = parts[1:]
    if rest and "=" not in rest[0]:
        try:
            num_bins = int(rest[0])
        except ValueError:
            raise ValueError(f"bins: spec {spec!r}: number of bins {rest[0]!r} is not an integer") from None
        rest = rest[1:]
    if len(rest) > 1:
        raise ValueError(f"bins: spec {spec!r}: expected KIND[:N][:key=value,...]")
    for item in (rest[0].split(",") if rest else []):
        if not item.strip():
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"bins: spec {spec!r}: option {item!r} is not key=value")
        options[key.strip().lower()] = value.strip()
    preset = options.pop("preset", preset).lower()
    if preset not in PRESETS:
        raise ValueError(f"bins: spec {spec!r}: unknown preset {preset!r}; available: {', '.join(PRESETS)}")
    params = dict(PRESETS[preset][kind])
    for key, value in options.items():
        if key not in _KEYS[kind]:
            raise ValueError(f"bins: spec {spec!r}: {kind} takes {', '.join(_KEYS[kind])} (and preset), not {key!r}")
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"bins: spec {spec!r}: {key}={value!r} is not a number") from None
    return BinScheme(kind, num_bins, params)


def depth_to_bins(depth: torch.Tensor, edges: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Bin index of every pixel; -1 where invalid or outside ``(edges[0], edges[-1]]``.

    Args:
        depth: (B, 1, H, W) or (B, H, W) depth, metres.
        edges: (N_b + 1,) increasing bin edges, metres, ``edges[0] >= 0``; bin ``d`` is
            ``(edges[d], edges[d+1]]``.
        valid: optional bool mask of the same shape as ``depth``.

    Returns:
        (B, H, W) int64 bin indices in ``[-1, N_b)``. Not finite depth gets -1.

    Example:
        >>> depth_to_bins(torch.tensor([[[0.0, 0.75, 0.8, 10.0, 12.0]]]), sid_edges(4))
        tensor([[[-1,  0,  1,  3, -1]]])
    """
    depth, valid = _squeeze_channel(depth, valid)
    if edges.ndim != 1 or edges.numel() < 2:
        raise ValueError(f"edges: expected a 1-D tensor of at least 2 edges, got shape {tuple(edges.shape)}")
    if float(edges[0]) < 0:
        raise ValueError(f"edges: the first edge must be >= 0, got {float(edges[0])}")
    return _bucket(depth, edges, valid)


def _squeeze_channel(depth: torch.Tensor, valid: torch.Tensor | None):
    if depth.ndim == 4:
        if depth.shape[1] != 1:
            raise ValueError(f"depth: expected (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
        depth = depth[:, 0]
        if valid is not None and valid.ndim == 4:
            valid = valid[:, 0]
    if depth.ndim != 3:
        raise ValueError(f"depth: expected (B, 1, H, W) or (B, H, W), got {tuple(depth.shape)}")
    if valid is not None and valid.shape != depth.shape:
        raise ValueError(f"valid: expected shape {tuple(depth.shape)} like depth, got {tuple(valid.shape)}")
    return depth, valid


def _bucket(depth: torch.Tensor, edges: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(B, H, W) int64 in [-1, len(edges) - 1): edges[i] < d <= edges[i+1] -> i; else -1 (edges[0] >= 0)."""
    d = depth.double()
    if valid is not None:
        d = d.masked_fill(~valid.bool(), 0.0)  # 0 <= edges[0]: falls below the first bin
    idx = torch.bucketize(d, edges.to(device=d.device, dtype=torch.float64)).sub_(1)  # NaN and > last: len - 1
    return idx.masked_fill_(idx >= edges.numel() - 1, -1)


class EdgeRefinement:
    """Bin indices under several edge sets from ONE search over their common refinement.

    The union ``u`` (U edges) of the edge sets splits depth into *slots*: slot 0 is at or
    below ``u[0]`` (and every invalid pixel), slot ``s`` in 1..U-1 is ``(u[s-1], u[s]]``,
    slot U is above ``u[-1]`` (and NaN). Every slot lies inside one bin of each edge set (or
    outside its range), so a table maps slots to the bins of any set whose edges are among
    ``u``. Exact: the same indices as :func:`depth_to_bins` with each set.

    Args:
        edge_sets: (N_j + 1,) float64 edges, each with ``edges[0] >= 0``.

    Example:
        >>> ref = EdgeRefinement([sid_edges(8), sid_edges(16)])
        >>> slots = ref.slots(depth, valid)
        >>> ref.coarse(slots, sid_edges(16))   # == depth_to_bins(depth, sid_edges(16), valid)
    """

    def __init__(self, edge_sets):
        sets = [torch.as_tensor(e, dtype=torch.float64).cpu() for e in edge_sets]
        if not sets:
            raise ValueError("edge_sets: expected at least one edge set")
        if any(e.ndim != 1 or e.numel() < 2 or float(e[0]) < 0 for e in sets):
            raise ValueError("edge_sets: each must be 1-D, at least 2 edges, the first >= 0")
        self.union = torch.unique(torch.cat(sets))  # sorted

    @property
    def num_slots(self) -> int:
        """U + 1."""
        return self.union.numel() + 1

    def slots(self, depth: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, W) int64 slot of every pixel, in [0, U]; invalid pixels get slot 0."""
        depth, valid = _squeeze_channel(depth, valid)
        d = depth.double()
        if valid is not None:
            d = torch.where(valid.bool(), d, -1.0)  # below every edge (edges[0] >= 0)
        return torch.bucketize(d, self.union.to(d.device))

    def slot_map(self, edges: torch.Tensor) -> torch.Tensor:
        """(U + 1,) int64: slot of this refinement -> slot of the refinement made by ``edges`` alone."""
        e = torch.as_tensor(edges, dtype=torch.float64).cpu()
        if not torch.isin(e, self.union).all():
            raise ValueError("edges: not all of them are edges of this refinement")
        inner = torch.bucketize(self.union[1:], e)  # slot s (1..U-1) is named by its right end u[s]
        return torch.cat([torch.tensor([0]), inner, torch.tensor([e.numel()])])

    def bin_map(self, edges: torch.Tensor, invalid: int = -1) -> torch.Tensor:
        """(U + 1,) int64: slot -> bin index of ``edges`` (``invalid`` outside its range and for slot 0 / U)."""
        k = self.slot_map(edges) - 1
        return torch.where((k >= 0) & (k < len(edges) - 1), k, torch.full_like(k, invalid))

    def coarse(self, slots: torch.Tensor, edges: torch.Tensor, invalid: int = -1) -> torch.Tensor:
        """Bin indices of ``edges`` from :meth:`slots`."""
        return self.bin_map(edges, invalid).to(slots.device)[slots]


def bin_centres(edges: torch.Tensor) -> torch.Tensor:
    """(N_b,) midpoints of the bins given by (N_b + 1,) ``edges``."""
    return 0.5 * (edges[1:] + edges[:-1])
