"""METER: a light-weight MobileViT-style encoder with a small convolutional decoder (Papa et al., 2023).

Papa, Russo, Amerini, "METER: a mobile vision transformer architecture for monocular depth
estimation", IEEE TCSVT 2023. Variants xxs / xs / s are dataclass configs of one class.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seldepth.models.base import DepthModel, pad_to_multiple
from seldepth.models.blocks import MV2Block, METERBlock, UpBlock, conv_pointwise_bn_relu, conv_bn_relu
from seldepth.models.registry import register_model


@dataclass(frozen=True)
class METERConfig:
    """Architecture of a METER variant.

    Attributes:
        channels: C[0..10] of the encoder (stem, blocks, final 1x1 conv).
        dims: token dimensions d[0..2] of the three METER blocks.
        expansion: MV2 expansion factor.
        decoder_in: D0, width of the decoder's input 1x1 conv.
        decoder_widths: output widths of the three up blocks.
        mlp_ratios: MLP width of each METER block as a multiple of its token dimension.
        output: ``linear`` (METER's: the last conv's value is the depth) or ``softplus`` (always
            positive, for self-supervised training, where a depth <= 0 cannot be projected).
        mv2_widths: the expanded (hidden) width of each of the 7 MV2 blocks, in execution order; None:
            input channels x ``expansion`` (METER's). Set by structured pruning (:mod:`seldepth.pruning`).
        meter_widths: 4 internal widths of each of the 3 METER blocks, block after block (12 numbers: local
            3x3 output, local output, ``from_tokens`` output, fusion 3x3 output; see
            :class:`~seldepth.models.blocks.METERBlock`); None: the block's channels C everywhere (METER's).
        up_widths: 2 internal widths of each of the 3 up blocks (6 numbers: transposed conv output, 3x3
            output; see :class:`~seldepth.models.blocks.UpBlock`); None: the block's output width (METER's).

    Example:
        >>> cfg = dataclasses.replace(METER_VARIANTS["xxs"], mv2_widths=(24, 32, 48, 48, 40, 96, 128))
        >>> METER(cfg).encoder.blocks[0].conv[0]
        Conv2d(16, 24, kernel_size=(1, 1), stride=(1, 1), bias=False)
    """

    channels: tuple[int, ...]
    dims: tuple[int, int, int]
    expansion: int
    decoder_in: int
    decoder_widths: tuple[int, int, int]
    mlp_ratios: tuple[int, int, int] = (2, 4, 4)
    output: str = "linear"
    mv2_widths: tuple[int, ...] | None = None
    meter_widths: tuple[int, ...] | None = None
    up_widths: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.output not in ("linear", "softplus"):
            raise ValueError(f"output must be 'linear' or 'softplus', got {self.output!r}")
        for key, count in (("mv2_widths", 7), ("meter_widths", 12), ("up_widths", 6)):
            value = getattr(self, key)
            if value is None:
                continue
            if len(value) != count or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
                raise ValueError(f"{key} must be None or {count} positive integers, got {value!r:.120}")

    def mv2_hidden(self, i: int) -> int | None:
        """The hidden width of the ``i``-th MV2 block (0..6), None for METER's (input channels x expansion)."""
        return None if self.mv2_widths is None else self.mv2_widths[i]

    def meter_block_widths(self, i: int) -> tuple[int, int, int, int] | None:
        """The 4 internal widths of the ``i``-th METER block (0..2), None for METER's."""
        return None if self.meter_widths is None else tuple(self.meter_widths[4 * i: 4 * i + 4])

    def up_block_widths(self, i: int) -> tuple[int, int] | None:
        """The 2 internal widths of the ``i``-th up block (0..2), None for METER's."""
        return None if self.up_widths is None else tuple(self.up_widths[2 * i: 2 * i + 2])


METER_VARIANTS = {
    "xxs": METERConfig((16, 16, 24, 24, 48, 48, 64, 64, 80, 80, 160), (64, 80, 96), 2, 64, (32, 16, 8)),
    "xs": METERConfig((16, 32, 48, 48, 64, 64, 80, 80, 96, 96, 192), (96, 120, 144), 4, 128, (64, 32, 16)),
    "s": METERConfig((16, 32, 64, 64, 96, 96, 128, 128, 160, 160, 320), (144, 192, 240), 4, 128, (64, 32, 16)),
}

# Input height and width must be multiples of this: five stride-2 stages, then 2x2 patches.
METER_SIZE_MULTIPLE = 64


class METEREncoder(nn.Module):
    """Encoder: stem, ten blocks in execution order, final 1x1 conv. Returns the 1/32 features and three skips."""

    SKIP_AFTER = (1, 4, 6)  # indices into ``blocks`` whose outputs are skips 1..3 (1/4, 1/8, 1/16)

    def __init__(self, cfg: METERConfig):
        super().__init__()
        c, e = cfg.channels, cfg.expansion
        self.stem = conv_pointwise_bn_relu(3, c[0], stride=2)
        self.blocks = nn.ModuleList(
            [
                MV2Block(c[0], c[1], 1, e, cfg.mv2_hidden(0)),
                MV2Block(c[1], c[2], 2, e, cfg.mv2_hidden(1)),
                MV2Block(c[2], c[3], 1, e, cfg.mv2_hidden(2)),
                MV2Block(c[3], c[3], 1, e, cfg.mv2_hidden(3)),
                MV2Block(c[3], c[4], 2, e, cfg.mv2_hidden(4)),
                METERBlock(c[5], cfg.dims[0], cfg.mlp_ratios[0] * cfg.dims[0], widths=cfg.meter_block_widths(0)),
                MV2Block(c[5], c[6], 2, e, cfg.mv2_hidden(5)),
                METERBlock(c[7], cfg.dims[1], cfg.mlp_ratios[1] * cfg.dims[1], widths=cfg.meter_block_widths(1)),
                MV2Block(c[7], c[8], 2, e, cfg.mv2_hidden(6)),
                METERBlock(c[9], cfg.dims[2], cfg.mlp_ratios[2] * cfg.dims[2], widths=cfg.meter_block_widths(2)),
            ]
        )
        self.head = conv_bn_relu(c[9], c[10])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        skips = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.SKIP_AFTER:
                skips.append(x)
        return self.head(x), skips


class METERDecoder(nn.Module):
    """Decoder: 1x1 conv, three up blocks fed by skips 3, 2, 1, then a 3x3 conv to depth. No BN, no biases."""

    def __init__(self, cfg: METERConfig):
        super().__init__()
        c, w = cfg.channels, cfg.decoder_widths
        self.input = nn.Conv2d(c[10], cfg.decoder_in, 1, bias=False)
        self.up1 = UpBlock(cfg.decoder_in, c[6], w[0], cfg.up_block_widths(0))
        self.up2 = UpBlock(w[0], c[4], w[1], cfg.up_block_widths(1))
        self.up3 = UpBlock(w[1], c[2], w[2], cfg.up_block_widths(2))
        self.output = nn.Conv2d(w[2], 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.input(x)
        x = self.up1(x, skips[2])
        x = self.up2(x, skips[1])
        x = self.up3(x, skips[0])
        return self.output(x)


class METER(DepthModel):
    """METER depth network.

    ``forward(image)`` takes a normalised image (B, 3, H, W) of any size and returns depth
    (B, 1, ceil(H/4), ceil(W/4)) in metres. Inputs whose sides are not multiples of 64 are
    padded (replicate, bottom and right) and the output is cropped back.

    Example:
        >>> model = create_model("meter_xxs").eval()
        >>> model(torch.rand(1, 3, 192, 256)).shape
        torch.Size([1, 1, 48, 64])
    """

    def __init__(self, cfg: METERConfig, name: str = "meter"):
        super().__init__()
        self.config = cfg
        self.name = name
        self.encoder = METEREncoder(cfg)
        self.decoder = METERDecoder(cfg)
        layers = {"enc_0": "encoder.stem"}
        layers.update({f"enc_{i + 1}": f"encoder.blocks.{i}" for i in range(10)})
        layers["enc_out"] = "encoder.head"
        layers["dec_0"] = "decoder.input"
        layers.update({f"dec_{i}": f"decoder.up{i}" for i in (1, 2, 3)})
        self.selectivity_layers = layers
        self.size_multiple = METER_SIZE_MULTIPLE
        self.output_stride = 4

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"METER expects an image batch of shape (B, 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        padded = pad_to_multiple(image, METER_SIZE_MULTIPLE)
        depth = self.decoder(*self.encoder(padded))
        if self.config.output == "softplus":
            depth = F.softplus(depth)
        if padded.shape[-2:] != (h, w):
            depth = depth[..., : math.ceil(h / 4), : math.ceil(w / 4)]
        return depth


def _meter_factory(variant: str):
    def build(**options) -> METER:
        return METER(dataclasses.replace(METER_VARIANTS[variant], **options), name=f"meter_{variant}")

    return build


for _variant in METER_VARIANTS:
    register_model(f"meter_{_variant}", _meter_factory(_variant))
