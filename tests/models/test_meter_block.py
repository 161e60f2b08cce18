"""METERBlock against a pixel-by-pixel reference of MobileViT's unfold and a per-group, per-head attention."""

import torch

from seldepth.models.blocks import METERBlock


def _reference_transformer(layer, tokens: torch.Tensor) -> torch.Tensor:
    """Pre-norm attention and MLP, one (batch, patch position) group and one head at a time."""
    attn = layer.attn
    hd = attn.head_dim
    out = tokens.clone()
    b, p, n, d = tokens.shape
    for i in range(b):
        for j in range(p):
            x = tokens[i, j]
            q, k, v = attn.qkv(layer.attn_norm(x)).chunk(3, dim=-1)
            heads = []
            for h in range(attn.heads):
                qh, kh, vh = (t[:, h * hd:(h + 1) * hd] for t in (q, k, v))
                heads.append(torch.softmax(qh @ kh.T / hd**0.5, dim=-1) @ vh)
            x = x + attn.out(torch.cat(heads, dim=-1))
            out[i, j] = x + layer.mlp(layer.mlp_norm(x))
    return out


def _reference_block(block: METERBlock, x: torch.Tensor) -> torch.Tensor:
    """The block as written in the paper: 1x1 conv to tokens on (B, d, h, w), tokens gathered pixel by pixel."""
    y = block.to_tokens(block.local(x))
    b, d, h, w = y.shape
    p = block.patch
    hp, wp = h // p, w // p
    tokens = torch.empty(b, p * p, hp * wp, d)
    for i in range(h):
        for j in range(w):
            # position inside the patch (i % p, j % p); patch index (i // p, j // p)
            tokens[:, (i % p) * p + j % p, (i // p) * wp + j // p] = y[:, :, i, j]
    tokens = _reference_transformer(block.transformer, tokens)
    folded = torch.empty_like(y)
    for i in range(h):
        for j in range(w):
            folded[:, :, i, j] = tokens[:, (i % p) * p + j % p, (i // p) * wp + j // p]
    return block.fusion(torch.cat((block.from_tokens(folded), x), dim=1))


def _block(seed: int = 0) -> METERBlock:
    torch.manual_seed(seed)
    block = METERBlock(channels=6, dim=8, mlp_dim=16)
    for m in block.modules():  # non-trivial batch-norm statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return block


def test_eval_output_equals_pixelwise_reference():
    block = _block().eval()
    x = torch.randn(2, 6, 6, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), _reference_block(block, x), atol=1e-5)


def test_training_output_gradients_and_batch_statistics_equal_reference():
    x = torch.randn(3, 6, 4, 6)
    fast, ref = _block(1).train(), _block(1).train()
    out_fast, out_ref = fast(x), _reference_block(ref, x)
    assert torch.allclose(out_fast, out_ref, atol=1e-5)
    out_fast.square().sum().backward()
    out_ref.square().sum().backward()
    for (name, a), b in zip(fast.named_parameters(), ref.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-4, rtol=1e-4), name
    bn_fast, bn_ref = fast.to_tokens[1], ref.to_tokens[1]
    assert torch.allclose(bn_fast.running_mean, bn_ref.running_mean, atol=1e-6)
    assert torch.allclose(bn_fast.running_var, bn_ref.running_var, atol=1e-6)
    assert int(bn_fast.num_batches_tracked) == int(bn_ref.num_batches_tracked) == 1
