"""Pruning criteria: an importance score for every channel of every prunable group; the lowest go first.

``ds``          the channel's depth selectivity (You et al., ICCV 2021), measured by
                :func:`seldepth.selectivity.dissect.dissect` on the group's ``probe`` module (the same
                function and conventions as ``seldepth dissect``): the least selective channels go first.
                A channel whose DS is undefined (fewer than two depth bins with data) counts as 0.
``ds-inverse``  minus DS: the most selective channels go first (the control of ``ds``).
``l1``          the L1 norm of the filter that makes the channel (the first of the group's ``producers``;
                for an MV2 hidden channel the 1x1 expand filter, for a transposed conv its (in, k, k)
                slice), as in L1 filter pruning (Li et al., ICLR 2017): the smallest go first.
``random``      uniform draws from numpy's ``default_rng(draw)``: the same ``draw`` gives the same scores.

Scores are compared within a group only after a per-group normalisation
(:func:`seldepth.pruning.plan.plan_pruning`), so their scales need not agree across groups.

Example:
    >>> scores = unit_importance(model, "ds", dataset)
    >>> scores["encoder.blocks.0.hidden"].shape
    torch.Size([32])
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from seldepth.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BINS,
    DEFAULT_DEPTH_RANGE,
    DEFAULT_NUM_WORKERS,
)
from seldepth.pruning.groups import prunable_groups

CRITERIA = ("ds", "ds-inverse", "l1", "random")
DATA_CRITERIA = ("ds", "ds-inverse")  # the criteria that dissect a data set


def check_criterion(criterion: str) -> str:
    """``criterion`` when it is one of :data:`CRITERIA`.

    Raises:
        ValueError: naming ``criterion`` and the known ones.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {', '.join(CRITERIA)}, got {criterion!r}")
    return criterion


def l1_importance(model: nn.Module) -> dict[str, torch.Tensor]:
    """{group: (width,) L1 norm of each channel's filter} (module docstring).

    Example: a 1x1 expand conv whose filter 3 is all zeros gives channel 3 of that MV2 block's
    ``hidden`` group the score 0, the first to go.
    """
    scores = {}
    for group in prunable_groups(model):
        conv = model.get_submodule(group.producers[0])
        weight = conv.weight.detach().double()
        dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0  # ConvTranspose2d weights are (in, out, k, k)
        scores[group.name] = weight.transpose(0, dim).flatten(1).abs().sum(1).cpu()
    return scores


def random_importance(model: nn.Module, draw: int = 0) -> dict[str, torch.Tensor]:
    """{group: (width,) uniform scores in [0, 1)} from ``numpy.random.default_rng(draw)``, group after group.

    Example: ``random_importance(model, 3)`` twice gives the same scores; another ``draw``, others.
    """
    if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
        raise ValueError(f"draw must be a non-negative integer, got {draw!r}")
    rng = np.random.default_rng(draw)
    return {g.name: torch.from_numpy(rng.random(g.width)) for g in prunable_groups(model)}


def ds_importance(model: nn.Module, dataset, bins: str = DEFAULT_BINS,
                  depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE, batch_size: int = DEFAULT_BATCH_SIZE,
                  num_workers: int = DEFAULT_NUM_WORKERS, progress: bool = True) -> dict[str, torch.Tensor]:
    """{group: (width,) depth selectivity of each channel} from one dissection of ``dataset`` that probes every
    group's ``probe`` module (module docstring); undefined DS counts as 0.

    Raises:
        ValueError: naming ``dataset`` when some group has no channel with a defined DS (no valid ground truth in
            ``depth_range``, or all of it in one depth bin): its DS would rank nothing.
    """
    from seldepth.selectivity.dissect import dissect

    groups = prunable_groups(model)
    probes = list(dict.fromkeys(g.probe for g in groups))
    result = dissect(model, dataset, layers=probes, bins=bins, depth_range=depth_range, batch_size=batch_size,
                     num_workers=num_workers, progress=progress)
    empty = [p for p in probes if p not in result.layers or not bool(result.layers[p].ds_defined.any())]
    if empty:
        raise ValueError(f"dataset: its dissection ({result.num_images} images, valid depth {depth_range[0]:g} .. "
                         f"{depth_range[1]:g} m) leaves no unit with a defined depth selectivity in {len(empty)} of the "
                         f"{len(probes)} probed layers (e.g. {', '.join(empty[:3])}): the ground truth needs valid "
                         f"pixels in at least two depth bins")
    scores = {}
    for g in groups:
        layer = result.layers[g.probe]
        ds = torch.where(layer.ds_defined, layer.ds, torch.zeros_like(layer.ds))
        scores[g.name] = torch.nan_to_num(ds.double(), nan=0.0).cpu()
    return scores


def unit_importance(model: nn.Module, criterion: str, dataset=None, draw: int = 0, **dissect_options) -> dict[str, torch.Tensor]:
    """{group name: (width,) importance of each channel} under ``criterion`` (module docstring); lowest pruned first.

    Args:
        model: a METER or a real-time network (:func:`seldepth.pruning.groups.check_prunable`).
        criterion: ``ds``, ``ds-inverse``, ``l1`` or ``random``.
        dataset: sample dicts with depth (``ds`` and ``ds-inverse`` only).
        draw: the random draw of ``random``.
        dissect_options: ``bins``, ``depth_range``, ``batch_size``, ``num_workers``, ``progress`` of the dissection.

    Raises:
        ValueError: an unknown ``criterion``, a model pruning does not support, no ``dataset`` for a DS criterion.
    """
    check_criterion(criterion)
    if criterion in DATA_CRITERIA:
        if dataset is None:
            raise ValueError(f"dataset: criterion {criterion!r} measures depth selectivity on a data set; none was given")
        scores = ds_importance(model, dataset, **dissect_options)
        return {k: -v for k, v in scores.items()} if criterion == "ds-inverse" else scores
    if criterion == "l1":
        return l1_importance(model)
    return random_importance(model, draw)
