"""An extremely light-weight real-time depth network with four detachable output heads (Chiu et al., ICPR 2020).

Chiu et al., "Real-time monocular depth estimation with extremely light-weight neural
network", ICPR 2020, publish no code and no architecture, only its budget (0.32M parameters,
2.1 GFLOPs at 480x320) and its four detachable outputs L, M, S, XS at 1/2, 1/4, 1/8 and 1/16
of the input (240x160 ... 30x20 at 480x320). This is our design within that budget:

* encoder: two plain 3x3 conv stages at 1/2 and 1/4 (where the image detail is), then
  MobileNetV2 blocks at 1/8 and 1/16 (where channels are wide and depthwise convs are cheap);
* decoder, coarse to fine: at each scale upsample (bilinear), reduce with a 1x1 conv, concatenate
  the encoder's skip of that scale and fuse with a 3x3 conv; a head after each scale;
* each head is a 3x3 conv to 1 log-depth channel (plus ``semantic_classes`` logits);
  depth = exp(log m + g * log(M/m) / M) so a head's raw output g is exactly the log depth
  G(d) of the loss (:func:`seldepth.losses.logdepth.log_depth`) with this model's m and M.

Detachable: ``create_model("realtime_depth", head="M")`` builds only the layers up to head M
(the 1/2-scale decoder stage and head L are not built), so smaller outputs cost less; its
``forward`` returns head M's depth. A detached model loads a full model's weights
(:meth:`RealtimeDepth.up_to_head`).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from seldepth.models.base import DepthModel, pad_to_multiple
from seldepth.models.blocks import MV2Block, conv_bn_relu
from seldepth.models.registry import register_model

# Head names, finest first, and their output stride.
HEADS = ("L", "M", "S", "XS")
HEAD_STRIDE = {"L": 2, "M": 4, "S": 8, "XS": 16}


class RealtimeOutput(NamedTuple):
    """All computed heads, finest first (``L, M, S, XS``, or from the detached head down).

    ``depth[i]``: (B, 1, H/s, W/s) metres; ``semantics[i]``: (B, C, H/s, W/s) logits, or an
    empty tuple for a model without a semantic output.
    """

    depth: tuple[torch.Tensor, ...]
    semantics: tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class RealtimeDepthConfig:
    """Architecture of the real-time network.

    Attributes:
        channels: widths at 1/2, 1/4, 1/8 and 1/16 of the input (encoder and decoder).
        expansion: MobileNetV2 expansion of the 1/8 and 1/16 stages.
        blocks_16: MobileNetV2 blocks at 1/16 after the downsampling one.
        semantic_classes: semantic logits per head (0: depth only).
        head: the finest head built (``L``, ``M``, ``S``, ``XS``).
        min_depth, max_depth: m and M of the log-depth parameterisation (metres).
        conv_widths: the output widths of the first 3x3 conv of the 1/2 stage (``stem``) and of the 1/4 stage
            (``down4``); None: ``channels[0]``, ``channels[1]``.
        mv2_widths: the expanded (hidden) width of each MobileNetV2 block, in execution order (2 at 1/8, then
            1 + ``blocks_16`` at 1/16); None: input channels x ``expansion``.
        reduce_widths: the output widths of the decoder stages' 1x1 ``reduce`` convs at 1/2, 1/4 and 1/8 (stages
            L, M, S); None: the stage's output width (``decoder_widths``).
        decoder_widths: the output widths of the decoder stages at 1/2, 1/4 and 1/8 (stages L, M, S; what the
            heads L, M, S read); None: ``channels[:3]``, the encoder's widths at those scales.

    The four width fields are set by structured pruning (:mod:`seldepth.pruning`); every stage keeps its
    entries in a detached model (``head``), built or not.

    Example:
        >>> cfg = RealtimeDepthConfig(mv2_widths=(96, 192, 192, 384, 320))
        >>> RealtimeDepth(cfg).down16[2].conv[0]
        Conv2d(96, 320, kernel_size=(1, 1), stride=(1, 1), bias=False)
    """

    channels: tuple[int, int, int, int] = (16, 32, 48, 96)
    expansion: int = 4
    blocks_16: int = 2
    semantic_classes: int = 0
    head: str = "L"
    min_depth: float = 0.5
    max_depth: float = 10.0
    conv_widths: tuple[int, int] | None = None
    mv2_widths: tuple[int, ...] | None = None
    reduce_widths: tuple[int, int, int] | None = None
    decoder_widths: tuple[int, int, int] | None = None

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {self.head!r}")
        if len(self.channels) != 4 or min(self.channels) < 1:
            raise ValueError(f"channels must be 4 positive widths, got {self.channels}")
        if self.semantic_classes < 0:
            raise ValueError(f"semantic_classes must be >= 0, got {self.semantic_classes}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        for key, count in (("conv_widths", 2), ("mv2_widths", 3 + self.blocks_16), ("reduce_widths", 3),
                           ("decoder_widths", 3)):
            value = getattr(self, key)
            if value is None:
                continue
            if not isinstance(value, (tuple, list)) or len(value) != count \
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ValueError(f"{key} must be None or {count} positive integers, got {value!r:.120}")

    def explicit_widths(self) -> RealtimeDepthConfig:
        """This config with every width field written out (the widths None stands for): the same model.

        Example:
            >>> RealtimeDepthConfig().explicit_widths().mv2_widths
            (128, 192, 192, 384, 384)
        """
        c, e = self.channels, self.expansion
        decoder = self.decoder_widths or tuple(c[:3])
        mv2 = (c[1] * e, c[2] * e, c[2] * e, *(c[3] * e for _ in range(self.blocks_16)))
        return dataclasses.replace(self, conv_widths=self.conv_widths or (c[0], c[1]),
                                   mv2_widths=self.mv2_widths or mv2, reduce_widths=self.reduce_widths or decoder,
                                   decoder_widths=decoder)


class DecoderStage(nn.Module):
    """Upsample x2 (bilinear), 1x1 conv to ``reduce`` channels, concatenate the skip, fuse with a 3x3 conv.

    ``reduce`` defaults to ``out_channels``; a pruned model has fewer, e.g. ``DecoderStage(96, 48, 40, reduce=24)``:
    1x1 96 -> 24, then 3x3 24 + 48 -> 40.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, reduce: int | None = None):
        super().__init__()
        reduce = out_channels if reduce is None else reduce
        self.reduce = conv_bn_relu(in_channels, reduce, 1)
        self.fuse = conv_bn_relu(reduce + skip_channels, out_channels, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([self.reduce(x), skip], dim=1))


class RealtimeDepth(DepthModel):
    """A real-time depth network in the style of Chiu et al., ICPR 2020 (see the module docstring).

    ``forward(image)`` -> depth (B, 1, H/s, W/s) in metres of the finest built head (s = 2 for L);
    ``forward_heads(image)`` -> :class:`RealtimeOutput` with every built head.

    Example:
        >>> model = create_model("realtime_depth").eval()
        >>> [tuple(d.shape) for d in model.forward_heads(torch.rand(1, 3, 320, 480)).depth]
        [(1, 1, 160, 240), (1, 1, 80, 120), (1, 1, 40, 60), (1, 1, 20, 30)]
    """

    def __init__(self, cfg: RealtimeDepthConfig = RealtimeDepthConfig(), name: str = "realtime_depth"):
        super().__init__()
        self.config = cfg
        self.name = name
        self.size_multiple = 16
        self.outputs = ("depth", "heads")
        c, e = cfg.channels, cfg.expansion
        w = cfg.explicit_widths()  # every internal width (the defaults written out)
        self.heads = HEADS[HEADS.index(cfg.head):]  # built heads, finest first
        self.output_stride = HEAD_STRIDE[cfg.head]
        self.stem = nn.Sequential(conv_bn_relu(3, w.conv_widths[0], 3, stride=2),
                                  conv_bn_relu(w.conv_widths[0], c[0], 3))
        self.down4 = nn.Sequential(conv_bn_relu(c[0], w.conv_widths[1], 3, stride=2),
                                   conv_bn_relu(w.conv_widths[1], c[1], 3))
        hidden = w.mv2_widths
        self.down8 = nn.Sequential(MV2Block(c[1], c[2], 2, e, hidden[0]), MV2Block(c[2], c[2], 1, e, hidden[1]))
        self.down16 = nn.Sequential(MV2Block(c[2], c[3], 2, e, hidden[2]),
                                    *[MV2Block(c[3], c[3], 1, e, hidden[3 + i]) for i in range(cfg.blocks_16)])
        # decoder stages that produce the 1/8, 1/4 and 1/2 features, built only down to the finest head
        d, r = w.decoder_widths, w.reduce_widths  # at 1/2, 1/4, 1/8
        stages = {"S": DecoderStage(c[3], c[2], d[2], r[2]), "M": DecoderStage(d[2], c[1], d[1], r[1]),
                  "L": DecoderStage(d[1], c[0], d[0], r[0])}
        self.decoder = nn.ModuleDict({h: stages[h] for h in ("S", "M", "L") if h in self.heads})
        width = {"XS": c[3], "S": d[2], "M": d[1], "L": d[0]}
        self.head = nn.ModuleDict({h: nn.Conv2d(width[h], 1 + cfg.semantic_classes, 3, padding=1) for h in self.heads})
        self._log_m = math.log(cfg.min_depth)
        self._log_scale = math.log(cfg.max_depth / cfg.min_depth) / cfg.max_depth
        layers = {"enc_2": "stem", "enc_4": "down4", "enc_8": "down8", "enc_16": "down16"}
        layers.update({f"dec_{h}": f"decoder.{h}" for h in self.decoder})
        self.selectivity_layers = layers

    def _depth(self, g: torch.Tensor) -> torch.Tensor:
        # the head's output g is G(d) of the log-depth loss; clamp keeps exp finite early in training
        return torch.exp(self._log_m + self._log_scale * g.clamp(-4 * self.config.max_depth, 4 * self.config.max_depth))

    def forward_heads(self, image: torch.Tensor) -> RealtimeOutput:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"{self.name} expects an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        x = pad_to_multiple(image, self.size_multiple)
        s2 = self.stem(x)
        s4 = self.down4(s2)
        s8 = self.down8(s4)
        x = self.down16(s8)
        features = {"XS": x}
        for name, skip in (("S", s8), ("M", s4), ("L", s2)):
            if name not in self.decoder:
                break
            x = self.decoder[name](x, skip)
            features[name] = x
        depth, semantics = [], []
        for name in self.heads:
            out = self.head[name](features[name])
            s = HEAD_STRIDE[name]
            out = out[..., : math.ceil(h / s), : math.ceil(w / s)]
            depth.append(self._depth(out[:, :1]))
            if self.config.semantic_classes:
                semantics.append(out[:, 1:])
        return RealtimeOutput(tuple(depth), tuple(semantics))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward_heads(image).depth[0]

    def up_to_head(self, head: str) -> "RealtimeDepth":
        """A model computing only up to ``head``, with this model's weights (and preprocessing, if any)."""
        if head not in self.heads:
            raise ValueError(f"head {head!r} is not built in this model; available: {', '.join(self.heads)}")
        model = RealtimeDepth(dataclasses.replace(self.config, head=head), name=self.name)
        own = self.state_dict()
        model.load_state_dict({k: own[k] for k in model.state_dict()}, strict=True)
        for attr in ("preprocessing", "metadata"):
            if hasattr(self, attr):
                setattr(model, attr, getattr(self, attr))
        return model.train(self.training)

    def detach(self, head: str) -> "RealtimeDepth":
        """Deprecated alias of :meth:`up_to_head` (the name shadowed ``Tensor.detach``); removed in the next release."""
        warnings.warn("RealtimeDepth.detach(head) is deprecated; use up_to_head(head)", DeprecationWarning, stacklevel=2)
        return self.up_to_head(head)


def _build(**options) -> RealtimeDepth:
    return RealtimeDepth(RealtimeDepthConfig(**options))


register_model("realtime_depth", _build)
