"""Run by test_selectivity_dissect.py: dissect a small random model in one process and in two (gloo).

Usage: python ddp_dissect_worker.py OUT.npz
Writes ``single/<layer>/<key>`` and ``ddp/<layer>/<key>`` arrays (sums, counts, ds) and ``*/num_images``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from seldepth.selectivity.dissect import dissect


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.b = nn.Conv2d(6, 10, 3, stride=2, padding=1)
        self.selectivity_layers = {"a": "a", "b": "b"}

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def make_model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


def make_data(n: int = 5) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    data = []
    for i in range(n):
        depth = torch.rand(1, 30, 38, generator=g) * 11
        valid = torch.rand(1, 30, 38, generator=g) > 0.2
        data.append({"image": torch.rand(3, 24, 32, generator=g), "depth": depth * valid, "valid": valid,
                     "meta": {"index": i}})
    return data


def flatten(result, prefix: str) -> dict:
    out = {f"{prefix}/num_images": np.array(result.num_images)}
    for name, layer in result.layers.items():
        out.update({f"{prefix}/{name}/sums": layer.sums.numpy(), f"{prefix}/{name}/counts": layer.counts.numpy(),
                    f"{prefix}/{name}/ds": layer.ds.numpy()})
    return out


def run(model, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dissect(model, data, bins="sid:8", batch_size=2, progress=False, preprocess=lambda x: x)


def worker(rank: int, world: int, init: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        result = run(make_model(), make_data())
        if rank == 0:
            np.savez(out, **flatten(result, "ddp"))
    finally:
        dist.destroy_process_group()


def main(out: str) -> None:
    single = flatten(run(make_model(), make_data()), "single")
    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{os.path.join(tmp, 'rendezvous')}"
        ddp_path = os.path.join(tmp, "ddp.npz")
        mp.spawn(worker, args=(2, init, ddp_path), nprocs=2, join=True)
        ddp = dict(np.load(ddp_path))
    np.savez(out, **single, **ddp)


if __name__ == "__main__":
    main(sys.argv[1])
