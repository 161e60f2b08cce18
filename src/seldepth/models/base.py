"""What every seldepth depth model offers beyond ``nn.Module``: its size, its cost and its probe points."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad (bottom, right) a (B, C, H, W) batch so that H and W are multiples of ``multiple``."""
    ph, pw = (-x.shape[-2]) % multiple, (-x.shape[-1]) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class DepthModel(nn.Module):
    """Base class of depth models: ``forward(image (B,3,H,W)) -> depth (B,1,h,w)`` in metres.

    Subclasses set ``config`` (a dataclass, saved in model files), ``name`` (registry name)
    and ``selectivity_layers``: the default probe points for selectivity analysis, mapping a
    short layer name (e.g. ``enc_0``) to a module path of ``named_modules()``.
    ``size_multiple``: input sides the model runs without padding (others are padded inside
    ``forward``, so hidden activations then cover more than the image).
    ``output_stride``: the depth map is ceil(H / output_stride) x ceil(W / output_stride).
    ``outputs``: what the model can return besides ``forward``'s depth (see :func:`has_output`):
    ``"heads"`` when ``forward_heads(x)`` returns every built output head (depth maps at several
    strides and, with semantic classes, their logits), ``"tasks"`` when ``forward_tasks(x)``
    returns depth and semantic logits together.
    """

    name: str = ""
    config: object = None
    selectivity_layers: dict[str, str] = {}
    size_multiple: int = 1
    output_stride: int = 1
    outputs: tuple[str, ...] = ("depth",)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those that require gradients)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @torch.no_grad()
    def flops(self, height: int, width: int) -> int:
        """FLOPs of one forward pass on a (1, 3, height, width) input.

        Counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts 2 FLOPs per
        multiply-add (so multiply-adds = FLOPs / 2). Element-wise operations are not counted.
        """
        param = next(self.parameters())
        x = torch.zeros(1, 3, height, width, dtype=param.dtype, device=param.device)
        was_training = self.training
        self.eval()
        try:
            with FlopCounterMode(display=False) as counter:
                self(x)
        finally:
            self.train(was_training)
        return int(counter.get_total_flops())

    def config_dict(self) -> dict:
        """The model's config as a plain dict (saved in model files)."""
        return dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}

    def layer_module(self, layer: str) -> nn.Module:
        """The module behind a selectivity layer name or a ``named_modules()`` path."""
        path = self.selectivity_layers.get(layer, layer)
        modules = dict(self.named_modules())
        if path not in modules:
            known = list(self.selectivity_layers) or [n for n, _ in self.named_modules() if n]
            raise ValueError(f"no layer {layer!r} in {self.name or type(self).__name__}; available: {', '.join(known)}")
        return modules[path]


OUTPUTS = ("depth", "heads", "tasks")


def has_output(model, output: str) -> bool:
    """Whether ``model`` declares ``output`` in its ``outputs`` (``depth``, ``heads`` or ``tasks``; see :class:`DepthModel`).

    Models without the declaration (an ONNX Runtime session, a foreign module) have depth only.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    return output in getattr(model, "outputs", ("depth",))


def with_head(model, head: str | None):
    """``model`` computing only up to output ``head`` (multi-head models such as ``realtime_depth``); None: unchanged.

    Raises:
        ValueError: the model has no detachable heads, or no head of that name.
    """
    if head is None:
        return model
    if not has_output(model, "heads"):
        raise ValueError(f"head {head}: {getattr(model, 'name', type(model).__name__)} has no detachable output heads")
    return model.up_to_head(head)
