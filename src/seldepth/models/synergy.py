"""Joint depth and semantics with lateral sharing units (Jiao et al., ECCV 2018; see docs/references.md).

Jiao et al., "Look deeper into depth: monocular depth estimation with semantic booster and
attention-driven loss", ECCV 2018. A shared encoder (here METER's, variant ``backbone``) feeds
two decoder branches of METER's decoder shape, depth and semantics, with four stages each (the
1x1 input conv at 1/32, then three up blocks fed by the encoder's skips at 1/16, 1/8, 1/4).

``structure`` selects how the branches share information (Fig. 2 of the paper's supplementary material, and its synergy net):

* ``lateral`` (the synergy network): after every stage a :class:`LateralSharing` unit mixes the
  two branches, ``d' = (1 + phi_D) d + phi_S s`` and ``s' = (1 + gamma_S) s + gamma_D d``, with
  four learned scalars per stage (zero at start: two independent branches);
* ``branch_out``: the first ``shared_stages`` decoder stages are common, then two branches;
* ``merge_in``: two branches up to the last ``shared_stages`` stages, which are common (their
  input is the sum of the two branches) and feed both heads;
* ``cascaded``: the first task's branch runs whole, and the second task's head works on its
  final features (``cascade_first``: which task is first);
* ``fine_tuned``: one decoder with both heads; the paper trains it on one task and fine-tunes it
  on the other (a training schedule: ``synergy.tasks`` and ``init_from`` in the training config;
  the architecture is this single shared branch);
* ``depth_only``: the single-task baseline: the encoder, the depth branch and the depth head, no
  semantic branch and no sharing units (``semantic_classes`` becomes 0). It is METER's
  architecture, so it is the same network as ``meter_xxs``, trained with the synergy depth loss.

Every structure ends in a 3x3 conv per task: depth in metres (ReLU-free linear output, like
METER) and ``semantic_classes`` logits, both at 1/4 of the input.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from seldepth.models.base import DepthModel, pad_to_multiple
from seldepth.models.blocks import UpBlock
from seldepth.models.meter import METER_SIZE_MULTIPLE, METER_VARIANTS, METEREncoder
from seldepth.models.registry import register_model

STRUCTURES = ("lateral", "branch_out", "merge_in", "cascaded", "fine_tuned", "depth_only")
STAGES = 4  # decoder stages: input conv, up1, up2, up3


class SynergyOutput(NamedTuple):
    """``depth`` (B, 1, H/4, W/4) metres; ``semantics`` (B, C, H/4, W/4) logits (None for ``depth_only``)."""

    depth: torch.Tensor
    semantics: torch.Tensor | None


@dataclass(frozen=True)
class SynergyConfig:
    """Architecture of the synergy network.

    Attributes:
        backbone: METER variant of the shared encoder and the decoder widths (``xxs``, ``xs``, ``s``).
        semantic_classes: logits of the semantic head (>= 1; ``depth_only`` sets it to 0).
        structure: one of :data:`STRUCTURES` (module docstring).
        shared_stages: decoder stages in common for ``branch_out`` (the first ones) and ``merge_in``
            (the last ones), 1..3.
        cascade_first: ``depth`` or ``semantics``, the first task of ``cascaded``.
    """

    backbone: str = "xxs"
    semantic_classes: int = 5
    structure: str = "lateral"
    shared_stages: int = 2
    cascade_first: str = "depth"

    def __post_init__(self):
        if self.backbone not in METER_VARIANTS:
            raise ValueError(f"backbone must be one of {', '.join(METER_VARIANTS)}, got {self.backbone!r}")
        if self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {', '.join(STRUCTURES)}, got {self.structure!r}")
        if self.structure == "depth_only":
            object.__setattr__(self, "semantic_classes", 0)  # no semantic output (frozen dataclass)
        elif self.semantic_classes < 1:
            raise ValueError(f"semantic_classes must be >= 1, got {self.semantic_classes}")
        if not 1 <= self.shared_stages < STAGES:
            raise ValueError(f"shared_stages must be 1..{STAGES - 1}, got {self.shared_stages}")
        if self.cascade_first not in ("depth", "semantics"):
            raise ValueError(f"cascade_first must be 'depth' or 'semantics', got {self.cascade_first!r}")


class LateralSharing(nn.Module):
    """``(d, s) -> ((1 + phi_D) d + phi_S s, (1 + gamma_S) s + gamma_D d)``; the four scalars start at 0."""

    def __init__(self):
        super().__init__()
        self.phi_d = nn.Parameter(torch.zeros(()))
        self.phi_s = nn.Parameter(torch.zeros(()))
        self.gamma_s = nn.Parameter(torch.zeros(()))
        self.gamma_d = nn.Parameter(torch.zeros(()))

    def forward(self, d: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (1 + self.phi_d) * d + self.phi_s * s, (1 + self.gamma_s) * s + self.gamma_d * d


class DecoderBranch(nn.Module):
    """Stages ``first..last-1`` of METER's decoder (stage 0: 1x1 input conv; stage i: up block i with skip 3 - i)."""

    def __init__(self, cfg, first: int = 0, last: int = STAGES):
        super().__init__()
        c, w = cfg.channels, cfg.decoder_widths
        widths = [c[10], cfg.decoder_in, *w]  # input width of stage i is widths[i], output widths[i + 1]
        skips = [None, c[6], c[4], c[2]]
        self.first = first
        self.stages = nn.ModuleList([
            nn.Conv2d(widths[0], widths[1], 1, bias=False) if i == 0 else UpBlock(widths[i], skips[i], widths[i + 1])
            for i in range(first, last)])

    def stage(self, i: int, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        module = self.stages[i - self.first]
        return module(x) if i == 0 else module(x, skips[3 - i])

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for i in range(self.first, self.first + len(self.stages)):
            x = self.stage(i, x, skips)
        return x


class SynergyDepth(DepthModel):
    """Shared METER encoder, depth and semantic decoder branches, sharing by ``structure`` (module docstring).

    ``forward(image)`` -> depth (B, 1, ceil(H/4), ceil(W/4)) metres; ``forward_tasks(image)`` ->
    :class:`SynergyOutput` with the semantic logits too.

    Example:
        >>> model = create_model("synergy_depth", structure="branch_out").eval()
        >>> out = model.forward_tasks(torch.rand(1, 3, 128, 192))
        >>> tuple(out.depth.shape), tuple(out.semantics.shape)
        ((1, 1, 32, 48), (1, 5, 32, 48))
    """

    def __init__(self, cfg: SynergyConfig = SynergyConfig(), name: str = "synergy_depth"):
        super().__init__()
        self.config = cfg
        self.name = name
        self.outputs = ("depth", "tasks")
        self.size_multiple = METER_SIZE_MULTIPLE
        self.output_stride = 4
        meter = METER_VARIANTS[cfg.backbone]
        self.encoder = METEREncoder(meter)
        k, structure = cfg.shared_stages, cfg.structure
        if structure == "depth_only":
            self.depth_branch = DecoderBranch(meter)
        elif structure == "lateral":
            self.depth_branch, self.semantic_branch = DecoderBranch(meter), DecoderBranch(meter)
            self.sharing = nn.ModuleList([LateralSharing() for _ in range(STAGES)])
        elif structure == "branch_out":
            self.shared = DecoderBranch(meter, 0, k)
            self.depth_branch, self.semantic_branch = DecoderBranch(meter, k), DecoderBranch(meter, k)
        elif structure == "merge_in":
            self.depth_branch = DecoderBranch(meter, 0, STAGES - k)
            self.semantic_branch = DecoderBranch(meter, 0, STAGES - k)
            self.shared = DecoderBranch(meter, STAGES - k)
        else:  # cascaded, fine_tuned: one decoder branch
            self.shared = DecoderBranch(meter)
        width = meter.decoder_widths[-1]
        if structure == "cascaded":  # the second task's own layers on the first task's features
            self.second = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.ReLU(inplace=True))
        self.depth_head = nn.Conv2d(width, 1, 3, padding=1, bias=False)
        self.semantic_head = nn.Conv2d(width, cfg.semantic_classes, 3, padding=1) if cfg.semantic_classes else None
        layers = {"enc_0": "encoder.stem", "enc_out": "encoder.head"}
        layers.update({f"enc_{i + 1}": f"encoder.blocks.{i}" for i in range(10)})
        self.selectivity_layers = layers

    def _decode(self, x: torch.Tensor, skips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(depth features, semantic features) at 1/4."""
        structure = self.config.structure
        if structure == "depth_only":
            return self.depth_branch(x, skips), None
        if structure == "lateral":
            d = s = x
            for i in range(STAGES):
                d, s = self.sharing[i](self.depth_branch.stage(i, d, skips), self.semantic_branch.stage(i, s, skips))
            return d, s
        if structure == "branch_out":
            x = self.shared(x, skips)
            return self.depth_branch(x, skips), self.semantic_branch(x, skips)
        if structure == "merge_in":
            x = self.shared(self.depth_branch(x, skips) + self.semantic_branch(x, skips), skips)
            return x, x
        x = self.shared(x, skips)
        if structure == "cascaded":
            y = self.second(x)
            return (x, y) if self.config.cascade_first == "depth" else (y, x)
        return x, x  # fine_tuned

    def forward_tasks(self, image: torch.Tensor) -> SynergyOutput:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"{self.name} expects an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        x, skips = self.encoder(pad_to_multiple(image, self.size_multiple))
        d, s = self._decode(x, skips)
        oh, ow = math.ceil(h / 4), math.ceil(w / 4)
        semantics = self.semantic_head(s)[..., :oh, :ow] if self.semantic_head is not None else None
        return SynergyOutput(self.depth_head(d)[..., :oh, :ow], semantics)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_tasks(image).depth

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """The parameters that belong to one task's branch only (``depth`` or ``semantics``).

        A batch with targets of the other task only leaves these unchanged (weak supervision: the
        paper freezes the unsupervised branch's backward pass): its branch, its head, its side of
        the lateral sharing units (phi for depth, gamma for semantics) and, in a cascade, the
        second task's own layers. Shared layers are in neither list.
        """
        if task not in ("depth", "semantics"):
            raise ValueError(f"task must be 'depth' or 'semantics', got {task!r}")
        depth = task == "depth"
        head = self.depth_head if depth else self.semantic_head
        modules = [head] if head is not None else []
        branch = "depth_branch" if depth else "semantic_branch"
        if hasattr(self, branch):
            modules.append(getattr(self, branch))
        if hasattr(self, "second") and (self.config.cascade_first == "depth") != depth:
            modules.append(self.second)
        params = [p for m in modules for p in m.parameters()]
        if hasattr(self, "sharing"):
            params += [p for unit in self.sharing for p in ((unit.phi_d, unit.phi_s) if depth else (unit.gamma_s, unit.gamma_d))]
        return params


def _build(**options) -> SynergyDepth:
    return SynergyDepth(dataclasses.replace(SynergyConfig(), **options))


register_model("synergy_depth", _build)
