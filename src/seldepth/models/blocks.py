"""Building blocks of METER: MobileNetV2 blocks, the transformer layer and the METER block.

All activations are ReLU (METER replaces MobileViT's SiLU). Shapes follow PyTorch's
(B, C, H, W) convention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvPointwise(nn.Module):
    """A full k x k convolution followed by a 1x1 convolution, both without bias.

    The official METER code calls this "SeparableConv2d", but its first convolution is not
    depthwise (groups=1); we keep the computation and give it an honest name. ``mid`` is the width
    between the two (default ``out_channels``, METER's; a pruned model has fewer), e.g.
    ``ConvPointwise(96, 48, mid=20)``: 3x3 conv 96 -> 20, then 1x1 conv 20 -> 48.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 mid: int | None = None):
        super().__init__()
        mid = out_channels if mid is None else mid
        self.spatial = nn.Conv2d(in_channels, mid, kernel_size, stride, kernel_size // 2, bias=False)
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.spatial(x))


def conv_pointwise_bn_relu(in_channels: int, out_channels: int, stride: int = 1, mid: int | None = None) -> nn.Sequential:
    """ConvPointwise (3x3 then 1x1, ``mid`` channels between them) -> BatchNorm -> ReLU."""
    return nn.Sequential(ConvPointwise(in_channels, out_channels, 3, stride, mid), nn.BatchNorm2d(out_channels),
                         nn.ReLU(inplace=True))


class MV2Block(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise (stride), 1x1 project.

    A residual connection is used when the stride is 1 and the channel count is kept. ``hidden`` is the
    expanded width (default ``in_channels * expansion``; a pruned model has fewer), e.g.
    ``MV2Block(16, 24, 2, hidden=20)``: 1x1 16 -> 20, 3x3 depthwise on 20, 1x1 20 -> 24.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 4,
                 hidden: int | None = None):
        super().__init__()
        hidden = in_channels * expansion if hidden is None else hidden
        self.use_residual = stride == 1 and in_channels == out_channels
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class SelfAttention(nn.Module):
    """Multi-head self-attention within groups of N tokens.

    ``forward(x, group_size)``: ``x`` (G*N, D) tokens, group after group; returns (G*N, D).
    """

    def __init__(self, dim: int, heads: int = 4, head_dim: int = 8):
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        inner = heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, group_size: int) -> torch.Tensor:
        n = group_size
        q, k, v = self.qkv(x).reshape(-1, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-1, -2) * self.head_dim**-0.5, dim=-1)
        return self.out((attn @ v).permute(0, 2, 1, 3).reshape(-1, self.heads * self.head_dim))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer: x + attn(norm(x)), then x + mlp(norm(x)), ReLU MLP, no dropout.

    ``forward(x)``: ``x`` (B, P, N, D), attention over the N tokens of each (b, p). The layer works
    on the (B*P*N, D) matrix, so every linear map is one matrix product (one ONNX Gemm, no reshapes).
    """

    def __init__(self, dim: int, mlp_dim: int, heads: int = 4, head_dim: int = 8):
        super().__init__()
        self.attn_norm = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, head_dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(inplace=True), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        x = x + self.attn(self.attn_norm(x), shape[-2])
        return (x + self.mlp(self.mlp_norm(x))).reshape(shape)


class METERBlock(nn.Module):
    """METER's MobileViT-style block (the METER architecture, Papa et al., 2023).

    Local 3x3+1x1 conv, 1x1 to the token dimension, 2x2 patch unfold, one transformer layer,
    fold, 1x1 back to the channels, concatenation with the block input, 3x3+1x1 fusion conv.

    Args:
        channels: input and output channels C.
        dim: token dimension d.
        mlp_dim: hidden width of the transformer MLP.
        patch: patch size (2 for METER); H and W of the input must be divisible by it.
        widths: the block's four internal widths: (the local 3x3 conv's output, the local conv's output,
            ``from_tokens``' output, the fusion 3x3 conv's output); default (C, C, C, C), METER's. A
            pruned model has fewer, e.g. ``METERBlock(48, 64, 128, widths=(24, 30, 20, 36))``: the
            fusion conv then takes 20 + 48 channels.
    """

    def __init__(self, channels: int, dim: int, mlp_dim: int, patch: int = 2,
                 widths: tuple[int, int, int, int] | None = None):
        super().__init__()
        local_mid, local, tokens_out, fusion_mid = widths or (channels,) * 4
        self.patch = patch
        self.local = conv_pointwise_bn_relu(channels, local, mid=local_mid)
        self.to_tokens = conv_bn_relu(local, dim)
        self.transformer = TransformerLayer(dim, mlp_dim)
        self.from_tokens = conv_bn_relu(dim, tokens_out)
        self.fusion = conv_pointwise_bn_relu(tokens_out + channels, channels, mid=fusion_mid)

    def _tokens_channels_last(self, local: torch.Tensor) -> torch.Tensor:
        """``to_tokens`` (1x1 conv, BN, ReLU) of (B*h*w, C) channels-last features, as a linear map over C.

        Training normalises with the batch's statistics over all B*h*w positions (as BatchNorm2d
        does on the (B, C, h, w) map); evaluation folds the BN into the linear map's weight and bias.
        """
        conv, bn, relu = self.to_tokens
        weight = conv.weight.flatten(1)
        if self.training or not bn.track_running_stats:
            t = F.linear(local, weight)
            return relu(bn(t[:, :, None, None]).flatten(1))
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        return relu(F.linear(local, weight * scale[:, None], bn.bias - bn.running_mean * scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        b, _, h, w = local.shape
        p = self.patch
        if h % p or w % p:
            raise ValueError(f"METERBlock needs H and W divisible by {p}, got {h}x{w}")
        # (B, C, h, w) -> (B, p*p, (h/p)*(w/p), d): tokens at the same position inside each patch attend to each other.
        # Channels go last first and the 1x1 convs act on channels-last maps, so that every reordering moves whole
        # channel vectors: ONNX Runtime runs a 6-D transpose that gathers single values about ten times slower.
        y = self._tokens_channels_last(local.permute(0, 2, 3, 1).reshape(b * h * w, -1))
        d = y.shape[-1]
        tokens = y.reshape(b, h // p, p, w // p, p, d).permute(0, 2, 4, 1, 3, 5).reshape(b, p * p, (h // p) * (w // p), d)
        tokens = self.transformer(tokens)
        y = tokens.reshape(b, p, p, h // p, w // p, d).permute(0, 3, 1, 4, 2, 5).reshape(b, h, w, d).permute(0, 3, 1, 2)
        y = self.from_tokens(y)
        return self.fusion(torch.cat((y, x), dim=1))


class UpBlock(nn.Module):
    """Decoder stage: 3x3 transposed conv (x2), concatenation with a skip, 3x3+1x1 conv, ReLU. No BN, no bias.

    ``widths``: (the transposed conv's output, the 3x3 conv's output); default (out, out), METER's. A pruned
    model has fewer, e.g. ``UpBlock(64, 80, 32, widths=(20, 24))``: 64 -> 20 up, 20 + 80 -> 24 -> 32.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int,
                 widths: tuple[int, int] | None = None):
        super().__init__()
        up, mid = widths or (out_channels, out_channels)
        self.upsample = nn.ConvTranspose2d(in_channels, up, 3, stride=2, padding=1, output_padding=1, bias=False)
        self.fuse = ConvPointwise(up + skip_channels, out_channels, mid=mid)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.act(self.fuse(torch.cat((self.upsample(x), skip), dim=1)))
