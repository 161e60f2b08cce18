"""Structured channel pruning of METER and of the real-time network: the kept channels' weights, sliced into a
fresh, smaller model of the same class.

For every channel group (:mod:`seldepth.pruning.groups`) the producers' output channels (conv filters,
batch-norm parameters and running statistics) and the consumers' input channels are cut to the kept
indices; the result is built as ``type(model)(config with the new widths)`` and loaded strictly, so it is an
ordinary seldepth model (saved, loaded, evaluated, exported and dissected like any other). Removing a
channel is exactly the same as zeroing the consumers' weights that read it: the pruned model computes
what the original computes with those weights zeroed.

Own slicing rather than a dependency-graph pruner (DepGraph, Fang et al., CVPR 2023, as torch-pruning
implements it): METER's block applies ``to_tokens`` through its weight (a channels-last matrix product,
for fast ONNX graphs) rather than by calling the module, so a graph traced from autograd ties the local
conv's channels to the token dimension and leaves ``to_tokens`` out; and a pruned model must be one the
config's widths describe. The groups here are exactly those widths.

Example:
    >>> pruned = prune_model(model, l1_importance(model), 0.6)
    >>> pruned.flops(192, 256) / model.flops(192, 256)
    0.5998...
"""

from __future__ import annotations

import torch
from torch import nn

from seldepth.defaults import (
    DEFAULT_MIN_CHANNELS,
    DEFAULT_MIN_KEEP,
    DEFAULT_ROUND_TO,
    DEFAULT_SIZE,
)
from seldepth.pruning.groups import (
    PrunableModel,
    check_prunable,
    config_with_widths,
    prunable_groups,
)
from seldepth.pruning.plan import plan_pruning


def _check_keep(model: PrunableModel, keep: dict) -> dict[str, torch.Tensor]:
    groups = {g.name: g for g in prunable_groups(model)}
    unknown = sorted(set(keep) - set(groups))
    if unknown:
        raise ValueError(f"keep: no channel group {', '.join(map(repr, unknown))} in {model.name}")
    out = {}
    for name, idx in keep.items():
        idx = torch.as_tensor(idx).flatten()
        width = groups[name].width
        if idx.dtype.is_floating_point or idx.dtype == torch.bool:
            raise ValueError(f"keep[{name!r}]: expected channel indices (integers), got {idx.dtype}")
        idx = idx.long().cpu()
        if idx.numel() == 0 or idx.unique().numel() != idx.numel() or idx.min() < 0 or idx.max() >= width:
            raise ValueError(f"keep[{name!r}]: expected distinct channel indices in 0..{width - 1}, at least one; "
                             f"got {idx.tolist()[:20]}")
        out[name] = idx.sort().values
    return out


def slice_model(model: PrunableModel, keep: dict[str, torch.Tensor]) -> PrunableModel:
    """A new model of ``model``'s class with only the channels ``keep`` lists ({group name: channel indices}; groups
    not named keep all).

    The new model has ``model``'s name, device, dtype, train/eval mode and ``preprocessing`` (when set).

    Example:
        >>> small = slice_model(model, {"encoder.blocks.0.hidden": [0, 5, 7]})
        >>> small.config.mv2_widths[0], small.encoder.blocks[0].conv[0].out_channels
        (3, 3)

    Raises:
        ValueError: naming ``keep`` and the group whose indices are not distinct channels of it.
    """
    model = check_prunable(model)
    keep = _check_keep(model, keep)
    groups = {g.name: g for g in prunable_groups(model)}
    state = dict(model.state_dict())
    for name, idx in keep.items():
        group = groups[name]
        for path in group.producers:
            module = model.get_submodule(path)
            for key, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                if tensor is None or tensor.ndim == 0:  # BatchNorm's num_batches_tracked
                    continue
                dim = 1 if isinstance(module, nn.ConvTranspose2d) and key == "weight" else 0  # (in, out, k, k)
                full = f"{path}.{key}"
                state[full] = state[full].index_select(dim, idx.to(tensor.device))
        for consumer in group.consumers:
            module = model.get_submodule(consumer.module)
            dim = 0 if isinstance(module, nn.ConvTranspose2d) else 1
            full = f"{consumer.module}.weight"
            total = state[full].shape[dim]
            end = consumer.offset + group.width
            rows = torch.cat([torch.arange(consumer.offset), idx + consumer.offset, torch.arange(end, total)])
            state[full] = state[full].index_select(dim, rows.to(state[full].device))
    cfg = config_with_widths(model, {name: int(idx.numel()) for name, idx in keep.items()})
    param = next(model.parameters())
    pruned = type(model)(cfg, name=model.name).to(device=param.device, dtype=param.dtype)
    pruned.load_state_dict(state, strict=True)
    pruned.train(model.training)
    if hasattr(model, "preprocessing"):
        pruned.preprocessing = model.preprocessing
    return pruned


def prune_model(model: PrunableModel, importance: dict[str, torch.Tensor], flops_fraction: float,
                size: tuple[int, int] = DEFAULT_SIZE, min_keep: float = DEFAULT_MIN_KEEP,
                min_channels: int = DEFAULT_MIN_CHANNELS, normalise: str = "rank",
                round_to: int = DEFAULT_ROUND_TO) -> PrunableModel:
    """``model`` pruned to ``flops_fraction`` of its FLOPs at ``size``, lowest ``importance`` first.

    :func:`~seldepth.pruning.plan.plan_pruning` chooses the channels (arguments as there), :func:`slice_model`
    cuts them; the plan is kept as the pruned model's ``pruning_plan``.

    Raises:
        ValueError: naming the argument at fault (``model`` for an architecture other than METER and
            the real-time network).
    """
    plan = plan_pruning(model, importance, flops_fraction, size, min_keep, min_channels, normalise, round_to)
    pruned = slice_model(model, plan.keep)
    pruned.pruning_plan = plan
    return pruned
