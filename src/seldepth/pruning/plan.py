"""Which channels to keep: one global ranking over all prunable groups, cut where the FLOPs reach a target.

1. **Normalise per group.** ``rank`` (default): a channel's score becomes its rank within its group,
   (r + 0.5) / width with r = 0 for the lowest score, so the scales of different criteria and layers (DS in
   0..1, L1 norms that grow with the filter size) never decide between groups. Every group is then cut by
   about the same share of its channels (up to the floors and the FLOPs cut), and the criteria differ
   only in *which* channels each group loses. ``none``: the raw scores, compared across groups as they are
   (meaningful for DS, whose range is the same in every layer; it lets the criterion also decide how much
   each group loses).
2. **Floor per group.** A group keeps at least ``max(ceil(min_keep x width), min_channels)`` channels
   (all of them when it has fewer than ``min_channels``): no layer is cut to nothing or to a sliver.
3. **Whole blocks of channels** (``round_to``, default 1: off). Each group's kept width is rounded up to a
   multiple of ``round_to`` (never above its width): CPU kernels (ONNX Runtime's and OpenVINO's blocked
   NCHWc layouts) work on 8 or 16 channels at a time, so a width of 27 costs about what 32 does; with
   ``round_to: 8`` the FLOPs removed are FLOPs the CPU no longer spends.
4. **Cut.** Every channel above its group's floor is ordered by normalised score (ties: group order,
   then channel order), and the shortest prefix is removed (each group's share of it rounded as in 3, the group's
   lowest-scored channels first) whose removal brings the FLOPs at ``size``
   (:meth:`seldepth.models.base.DepthModel.flops`: torch's counter, 2 FLOPs per multiply-add) to at most
   ``flops_fraction`` of the model's. The FLOPs of a candidate are counted on the ``meta`` device, so a
   bisection over the prefix length costs about a dozen weight-free forward passes.

Example:
    >>> plan = plan_pruning(model, l1_importance(model), 0.6)
    >>> round(plan.achieved_fraction, 3), plan.widths["encoder.blocks.0.hidden"]
    (0.6, 24)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from seldepth.defaults import (
    DEFAULT_MIN_CHANNELS,
    DEFAULT_MIN_KEEP,
    DEFAULT_ROUND_TO,
    DEFAULT_SIZE,
)
from seldepth.pruning.groups import PrunableModel, config_with_widths, prunable_groups

NORMALISATIONS = ("rank", "none")
TOLERANCE = 0.05  # the achieved FLOPs fraction is within 5% (relative) of the target


@dataclass
class PruningPlan:
    """The channels a pruned model keeps.

    Attributes:
        keep: {group name: sorted (k,) int64 indices of the channels kept}.
        widths: {group name: channels kept}.
        flops_before, flops_after: FLOPs of the model and of the pruned model at ``size``.
        target_fraction: the ``flops_fraction`` asked for.
        size: (H, W) of the FLOPs count.
        removed: channels removed in all.
    """

    keep: dict[str, torch.Tensor]
    widths: dict[str, int]
    flops_before: int
    flops_after: int
    target_fraction: float
    size: tuple[int, int]
    removed: int = 0
    info: dict = field(default_factory=dict)

    @property
    def achieved_fraction(self) -> float:
        """FLOPs after / FLOPs before."""
        return self.flops_after / self.flops_before


def check_flops_fraction(flops_fraction) -> float:
    """``flops_fraction`` as a float after checking 0 < flops_fraction <= 1.

    Raises:
        ValueError: naming ``flops_fraction``.
    """
    if isinstance(flops_fraction, bool) or not isinstance(flops_fraction, (int, float)) \
            or not 0 < flops_fraction <= 1:  # also NaN
        raise ValueError(f"flops_fraction must be a number in (0, 1] (the FLOPs kept, as a fraction of the model's), "
                         f"got {flops_fraction!r}")
    return float(flops_fraction)


def floor_of(width: int, min_keep: float = DEFAULT_MIN_KEEP, min_channels: int = DEFAULT_MIN_CHANNELS,
             round_to: int = DEFAULT_ROUND_TO) -> int:
    """Channels a group of ``width`` always keeps: ``min(width, max(ceil(min_keep * width), min_channels))``, rounded
    up to a multiple of ``round_to`` (:func:`rounded_width`).

    Example: ``floor_of(48)`` is 12, ``floor_of(16)`` 8, ``floor_of(6)`` 6, ``floor_of(48, round_to=8)`` 16.
    """
    return rounded_width(min(width, max(math.ceil(min_keep * width), min_channels)), width, round_to)


def rounded_width(kept: int, width: int, round_to: int = DEFAULT_ROUND_TO) -> int:
    """``kept`` channels of a group of ``width`` rounded up to a multiple of ``round_to``, at most ``width``.

    Example: ``rounded_width(27, 48, 8)`` is 32, ``rounded_width(45, 48, 8)`` 48, ``rounded_width(27, 48)`` 27.
    """
    return min(width, -(-kept // round_to) * round_to)


def flops_of_widths(model: PrunableModel, widths: dict[str, int], size: tuple[int, int] = DEFAULT_SIZE) -> int:
    """FLOPs at ``size`` of ``model`` with the group widths ``widths`` (the others unchanged), counted without weights."""
    cfg = config_with_widths(model, widths)
    with torch.device("meta"):
        return type(model)(cfg, name=model.name).flops(*size)


def _check_floors(min_keep, min_channels, round_to=DEFAULT_ROUND_TO) -> None:
    if isinstance(min_keep, bool) or not isinstance(min_keep, (int, float)) or not 0 <= min_keep <= 1:
        raise ValueError(f"min_keep must be a fraction in [0, 1], got {min_keep!r}")
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"min_channels must be a positive integer, got {min_channels!r}")
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ValueError(f"round_to must be a positive integer (kept widths are multiples of it), got {round_to!r}")


def smallest_fraction(model: PrunableModel, size: tuple[int, int] = DEFAULT_SIZE,
                      min_keep: float = DEFAULT_MIN_KEEP, min_channels: int = DEFAULT_MIN_CHANNELS,
                      round_to: int = DEFAULT_ROUND_TO) -> float:
    """The smallest FLOPs fraction pruning can reach: every group cut to its floor (what to check a target against
    before measuring any criterion)."""
    _check_floors(min_keep, min_channels, round_to)
    groups = prunable_groups(model)
    floors = {g.name: floor_of(g.width, min_keep, min_channels, round_to) for g in groups}
    return flops_of_widths(model, floors, size) / flops_of_widths(model, {}, size)


def check_target(model: PrunableModel, flops_fraction: float, size: tuple[int, int] = DEFAULT_SIZE,
                 min_keep: float = DEFAULT_MIN_KEEP, min_channels: int = DEFAULT_MIN_CHANNELS,
                 round_to: int = DEFAULT_ROUND_TO) -> float:
    """``flops_fraction`` after checking that it is in (0, 1] and that pruning ``model`` can reach it.

    Raises:
        ValueError: naming ``flops_fraction`` and the smallest fraction the floors allow.
    """
    flops_fraction = check_flops_fraction(flops_fraction)
    _check_reachable(model, flops_fraction, smallest_fraction(model, size, min_keep, min_channels, round_to), size,
                     min_keep, min_channels, round_to)
    return flops_fraction


def _check_reachable(model, flops_fraction, lowest, size, min_keep, min_channels, round_to) -> None:
    if lowest > flops_fraction * (1 + TOLERANCE):
        rounding = f", round_to {round_to}" if round_to > 1 else ""
        raise ValueError(f"flops_fraction {flops_fraction:g} cannot be reached: with every prunable width cut to its "
                         f"floor (min_keep {min_keep:g}, min_channels {min_channels}{rounding}) {model.name} keeps "
                         f"{lowest:.3f} of its FLOPs at {size[0]}x{size[1]}")


def _normalised(scores: torch.Tensor, normalise: str) -> torch.Tensor:
    if normalise == "none":
        return scores
    ranks = torch.empty(scores.numel(), dtype=torch.float64)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(scores.numel(), dtype=torch.float64)
    return (ranks + 0.5) / scores.numel()


def check_importance(model: PrunableModel, importance: dict) -> dict[str, torch.Tensor]:
    """``importance`` as float64 CPU tensors after checking it scores every channel of every group of ``model``.

    Raises:
        ValueError: naming ``importance`` and the group missing, unknown or mis-shaped, or a score that is not finite.
    """
    groups = prunable_groups(model)
    names = [g.name for g in groups]
    if not isinstance(importance, dict):
        raise ValueError(f"importance must be a dict {{group name: scores}}, got {type(importance).__name__}")  # noqa: TRY004
    missing, unknown = [n for n in names if n not in importance], sorted(set(importance) - set(names))
    if missing or unknown:
        raise ValueError(f"importance: groups missing: {', '.join(missing) or 'none'}; unknown: {', '.join(unknown) or 'none'}")
    out = {}
    for g in groups:
        s = torch.as_tensor(importance[g.name]).detach().double().cpu().flatten()
        if s.numel() != g.width:
            raise ValueError(f"importance[{g.name!r}]: expected {g.width} scores, got {s.numel()}")
        if not torch.isfinite(s).all():
            raise ValueError(f"importance[{g.name!r}]: scores must be finite")
        out[g.name] = s
    return out


def plan_pruning(model: PrunableModel, importance: dict[str, torch.Tensor], flops_fraction: float,
                 size: tuple[int, int] = DEFAULT_SIZE, min_keep: float = DEFAULT_MIN_KEEP,
                 min_channels: int = DEFAULT_MIN_CHANNELS, normalise: str = "rank",
                 round_to: int = DEFAULT_ROUND_TO) -> PruningPlan:
    """The channels to keep so that ``model``'s FLOPs at ``size`` fall to ``flops_fraction`` of today's (module docstring).

    Args:
        model: a METER or a real-time network (:func:`~seldepth.pruning.groups.check_prunable`), pruned or not.
        importance: {group name: (width,) scores}, e.g. from :func:`seldepth.pruning.criteria.unit_importance`;
            the lowest go first.
        flops_fraction: in (0, 1]; 1 keeps everything.
        size: (H, W) input of the FLOPs count (the model's input size).
        min_keep, min_channels: the floor of every group (:func:`floor_of`).
        normalise: ``rank`` or ``none`` (module docstring).
        round_to: every kept width a multiple of it (or the group's whole width; module docstring).

    Raises:
        ValueError: naming the argument at fault; ``flops_fraction`` when the floors do not let it be reached.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
    flops_fraction = check_flops_fraction(flops_fraction)
    _check_floors(min_keep, min_channels, round_to)
    scores = check_importance(model, importance)
    groups = prunable_groups(model)
    # candidates: every channel above its group's floor, lowest normalised score first (stable: group, channel order)
    entries = []
    for gi, g in enumerate(groups):
        normal = _normalised(scores[g.name], normalise)
        order = torch.argsort(scores[g.name], stable=True)  # removal order within the group
        for channel in order[: g.width - floor_of(g.width, min_keep, min_channels, round_to)].tolist():
            entries.append((float(normal[channel]), gi, channel))
    entries.sort()

    def widths_after(count: int) -> dict[str, int]:
        """The widths once the first ``count`` candidates are removed, each rounded up (:func:`rounded_width`)."""
        widths = {g.name: g.width for g in groups}
        for _, gi, _ in entries[:count]:
            widths[groups[gi].name] -= 1
        return {g.name: rounded_width(widths[g.name], g.width, round_to) for g in groups}

    before = flops_of_widths(model, {}, size)
    target = flops_fraction * before
    lo, hi = 0, len(entries)  # the smallest prefix whose FLOPs are <= target lies in [lo, hi]
    lowest = flops_of_widths(model, widths_after(hi), size)
    _check_reachable(model, flops_fraction, lowest / before, size, min_keep, min_channels, round_to)
    if lowest > target:
        lo = hi  # the floors stop short, within the tolerance: remove every candidate
    while lo < hi:
        mid = (lo + hi) // 2
        if flops_of_widths(model, widths_after(mid), size) <= target:
            hi = mid
        else:
            lo = mid + 1
    removed = {g.name: set() for g in groups}
    after = widths_after(lo)
    cut = {g.name: g.width - after[g.name] for g in groups}
    for _, gi, channel in entries[:lo]:  # a group's lowest-scored candidates of the prefix, as many as it loses
        name = groups[gi].name
        if len(removed[name]) < cut[name]:
            removed[name].add(channel)
    keep = {g.name: torch.tensor([c for c in range(g.width) if c not in removed[g.name]], dtype=torch.long)
            for g in groups}
    widths = {name: int(k.numel()) for name, k in keep.items()}
    return PruningPlan(keep, widths, before, flops_of_widths(model, widths, size), flops_fraction, tuple(size),
                       sum(cut.values()), {"normalise": normalise, "min_keep": min_keep, "min_channels": min_channels,
                                           "round_to": round_to})
