"""Structured channel pruning of METER and the real-time network guided by depth selectivity, L1 norms or chance
(docs/pruning.md).

- :mod:`~seldepth.pruning.groups`: the prunable widths (channel groups) of each architecture and their weights.
- :mod:`~seldepth.pruning.criteria`: importance of every channel: ``ds``, ``ds-inverse``, ``l1``, ``random``.
- :mod:`~seldepth.pruning.plan`: one global ranking, per-group floors, the cut at a FLOPs target.
- :mod:`~seldepth.pruning.structured`: the kept channels sliced into a fresh, smaller model.
- :mod:`~seldepth.pruning.pipeline`: checks, criterion, cut and model file, end to end (``seldepth prune``).
- :mod:`~seldepth.pruning.finetune`: fine-tuning a pruned model with the training pipeline (``--finetune-epochs``).

Example:
    >>> from seldepth.pruning import prune, save_pruned
    >>> result = prune(load_model("meter_xxs_nyu"), "l1", 0.6)
    >>> result.plan.achieved_fraction
    0.5996...
"""

from seldepth.pruning.criteria import CRITERIA, unit_importance
from seldepth.pruning.finetune import finetune_pruned
from seldepth.pruning.groups import (
    ChannelGroup,
    meter_groups,
    prunable_groups,
    realtime_groups,
)
from seldepth.pruning.pipeline import PruneResult, prune, save_pruned
from seldepth.pruning.plan import PruningPlan, plan_pruning
from seldepth.pruning.structured import prune_model, slice_model

__all__ = ["CRITERIA", "ChannelGroup", "PruneResult", "PruningPlan", "finetune_pruned", "meter_groups", "plan_pruning",
           "prunable_groups", "prune", "prune_model", "realtime_groups", "save_pruned", "slice_model",
           "unit_importance"]
