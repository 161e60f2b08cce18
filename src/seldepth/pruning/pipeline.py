"""Prune a model end to end: every argument checked first, then the criterion, the cut and the model file.

``prune`` refuses, before any dissection or cut, an unknown criterion, a FLOPs fraction outside (0, 1] or
below what the floors allow, a model that is neither a METER nor a real-time network, and a DS criterion without
data; the data's dissection then refuses data that leaves a probed layer without any defined depth selectivity.
``save_pruned`` writes the pruned model as an ordinary model file whose provenance says what it was pruned
from, how, and on which data.

Example:
    >>> model = load_model("meter_xxs_nyu")
    >>> result = prune(model, "l1", 0.6)
    >>> save_pruned(result, "meter_xxs_nyu_l1_060.safetensors", source="meter_xxs_nyu")
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seldepth.defaults import (
    DEFAULT_MIN_CHANNELS,
    DEFAULT_MIN_KEEP,
    DEFAULT_ROUND_TO,
    DEFAULT_SIZE,
)
from seldepth.pruning.criteria import DATA_CRITERIA, check_criterion, unit_importance
from seldepth.pruning.groups import SUPPORTED_TEXT, PrunableModel, check_prunable
from seldepth.pruning.plan import (
    NORMALISATIONS,
    PruningPlan,
    check_target,
    plan_pruning,
)
from seldepth.pruning.structured import slice_model

# the source's provenance keys that seldepth reads back (the evaluation protocol, PNG scale, camera): kept as they are
INHERITED_PROVENANCE = ("dataset", "png_scale", "intrinsics", "intrinsics_note")
EXPORTS = (".onnx", ".xml")


@dataclass
class PruneResult:
    """A pruned model and how it was made.

    Attributes:
        model: the pruned model (a METER or a real-time network).
        original: the model it was pruned from.
        plan: the channels kept and the FLOPs (:class:`~seldepth.pruning.plan.PruningPlan`).
        criterion: ``ds``, ``ds-inverse``, ``l1`` or ``random``.
        draw: the random draw (criterion ``random``), else None.
        parameters_before, parameters_after: parameter counts.
    """

    model: PrunableModel
    original: PrunableModel
    plan: PruningPlan
    criterion: str
    draw: int | None
    parameters_before: int
    parameters_after: int

    def summary(self) -> dict:
        """The numbers of the pruning, as JSON-ready values (what the provenance records)."""
        p = self.plan
        return {"criterion": self.criterion, "flops_fraction": p.target_fraction,
                "achieved_flops_fraction": round(p.achieved_fraction, 6), "flops_before": p.flops_before,
                "flops_after": p.flops_after, "size": list(p.size), "parameters_before": self.parameters_before,
                "parameters_after": self.parameters_after, "channels_removed": p.removed, "widths": dict(p.widths),
                **({"draw": self.draw} if self.draw is not None else {}), **p.info}


def check_source(source: str | os.PathLike) -> None:
    """Refuse a model source pruning cannot use before it is read: an ONNX export or an OpenVINO IR.

    Raises:
        ValueError: naming ``source``.
    """
    if Path(str(source)).suffix.lower() in EXPORTS:
        raise ValueError(f"model: {source} is an exported graph; structured pruning needs the PyTorch model (a "
                         f".safetensors model file or a .ckpt checkpoint) of one of the {SUPPORTED_TEXT}")


def check_out(path: str | os.PathLike) -> Path:
    """``path`` as a Path after checking it names a ``.safetensors`` file (what a pruned model is written as).

    Raises:
        ValueError: naming ``path``.
    """
    if Path(str(path)).suffix.lower() != ".safetensors":
        raise ValueError(f"path: a pruned model is written as a .safetensors model file, got {str(path)!r}")
    return Path(path)


def check_prune_args(model, criterion: str, flops_fraction: float, dataset=None, size: tuple[int, int] = DEFAULT_SIZE,
                     min_keep: float = DEFAULT_MIN_KEEP, min_channels: int = DEFAULT_MIN_CHANNELS,
                     normalise: str = "rank", round_to: int = DEFAULT_ROUND_TO) -> None:
    """Every check of :func:`prune` that needs no work (no dissection, no cut).

    Raises:
        ValueError: naming the argument at fault.
    """
    check_criterion(criterion)
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
    check_prunable(model)
    if criterion in DATA_CRITERIA and dataset is None:
        raise ValueError(f"dataset: criterion {criterion!r} measures depth selectivity on a data set; none was given")
    check_target(model, flops_fraction, size, min_keep, min_channels, round_to)


def prune(model: PrunableModel, criterion: str, flops_fraction: float, dataset=None,
          size: tuple[int, int] = DEFAULT_SIZE,
          draw: int = 0, min_keep: float = DEFAULT_MIN_KEEP, min_channels: int = DEFAULT_MIN_CHANNELS,
          normalise: str = "rank", round_to: int = DEFAULT_ROUND_TO, **dissect_options) -> PruneResult:
    """``model`` pruned to ``flops_fraction`` of its FLOPs at ``size`` by ``criterion``.

    Args:
        model: a METER or a real-time network (pruned or not), e.g. from :func:`seldepth.load_model`.
        criterion: ``ds``, ``ds-inverse``, ``l1`` or ``random`` (:mod:`seldepth.pruning.criteria`).
        flops_fraction: in (0, 1].
        dataset: sample dicts with depth, for ``ds`` and ``ds-inverse``.
        size: (H, W) of the FLOPs count: the model's input size.
        draw: the random draw of ``random``.
        min_keep, min_channels, normalise, round_to: see :func:`seldepth.pruning.plan.plan_pruning`.
        dissect_options: ``bins``, ``depth_range``, ``batch_size``, ``num_workers``, ``progress``.

    Raises:
        ValueError: naming the argument at fault (before any work), or ``dataset`` when its dissection leaves a
            layer without defined depth selectivity.
    """
    check_prune_args(model, criterion, flops_fraction, dataset, size, min_keep, min_channels, normalise, round_to)
    importance = unit_importance(model, criterion, dataset, draw=draw, **dissect_options)
    plan = plan_pruning(model, importance, flops_fraction, size, min_keep, min_channels, normalise, round_to)
    pruned = slice_model(model, plan.keep)
    return PruneResult(pruned, model, plan, criterion, draw if criterion == "random" else None,
                       model.num_parameters(), pruned.num_parameters())


def save_pruned(result: PruneResult, path: str | os.PathLike, source: str, data: str | None = None,
                split: str | None = None) -> Path:
    """Write ``result.model`` as a model file (:func:`~seldepth.models.model_file.save_model_file`).

    Provenance: ``pruned_from`` (``source``), ``source_provenance`` (the original's), ``pruning``
    (:meth:`PruneResult.summary` with ``data`` and ``split``: the data of a DS criterion, None otherwise), and
    the original's keys that seldepth reads back (``dataset``, ``png_scale``, ``intrinsics``, ``intrinsics_note``).
    The preprocessing and the camera (``intrinsics``) are the original's.
    """
    from seldepth.models.model_file import save_model_file
    from seldepth.models.preprocessing import Preprocessing

    path = check_out(path)
    original = result.original
    metadata = getattr(original, "metadata", None) or {}
    before = dict(metadata.get("provenance") or {})
    uses_data = result.criterion in DATA_CRITERIA
    provenance = {k: before[k] for k in INHERITED_PROVENANCE if k in before}
    provenance.update(pruned_from=str(source), source_provenance=before,
                      pruning={**result.summary(), "data": data if uses_data else None,
                               "split": split if uses_data else None, "fine_tuned_epochs": 0})
    preprocessing = getattr(original, "preprocessing", None) or Preprocessing()
    return save_model_file(result.model, path, preprocessing, provenance, intrinsics=metadata.get("intrinsics"))
