"""Cost of the selectivity regulariser: a training step with L_assign on two layers against the same step without it.

Both steps run ``DepthTrainingModule.training_step`` (METER-xxs, balanced loss, batch 16 at
192x256 by default, the regulariser binning the ground truth at the batch's resolution) plus
backward and an AdamW step, on the same in-memory batch, interleaved in rounds so that
machine noise hits both alike. Prints ms per step of each and their ratio (target: <= 1.15).

    python benchmarks/bench_regularizer.py [--layers enc_5,dec_3] [--rounds 5] [--steps 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from seldepth.data.datamodule import DataConfig
from seldepth.selectivity.regularizer import SelectivityConfig
from seldepth.training.config import TrainConfig
from seldepth.training import build_module


def make_step(selectivity: SelectivityConfig, size: tuple[int, int]):
    torch.manual_seed(0)
    module = build_module(TrainConfig(data=DataConfig(input_size=size), selectivity=selectivity)).train()
    module.log = module.log_dict = lambda *args, **kwargs: None  # no Trainer attached: logging is a no-op
    optimizer = module.configure_optimizers()["optimizer"]

    def step(batch: dict) -> None:
        loss = module.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="enc_5,dec_3", help="regularised layers (default: setup 2 of Huynh and Rumiantseva's METER study: the 2nd encoder skip and the decoder output)")
    parser.add_argument("--bins", default="sid:32")
    parser.add_argument("--statistics", default="batch", choices=["batch", "ema"])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", default="192x256", help="HxW")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per round and variant")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    layers = tuple(s for s in args.layers.split(",") if s)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(args.batch, 3, *size, generator=g),
             "depth": torch.rand(args.batch, 1, *size, generator=g) * 9.5 + 0.4,
             "valid": torch.rand(args.batch, 1, *size, generator=g) > 0.05}
    variants = {"without": make_step(SelectivityConfig(log_layers=()), size),
                "with": make_step(SelectivityConfig(layers=layers, weight=10.0, bins=args.bins,
                                                    statistics=args.statistics, log_layers=()), size)}
    for step in variants.values():  # warm-up
        step(batch)
        step(batch)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, step in variants.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(batch)
            times[name].append((time.perf_counter() - start) / args.steps)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    print(f"torch threads {torch.get_num_threads()}, METER-xxs, batch {args.batch}, {size[0]}x{size[1]}, "
          f"{args.rounds} rounds x {args.steps} steps, median per step")
    print(f"training step without the regulariser:                 {ms['without']:8.1f} ms")
    print(f"training step with L_assign on {', '.join(layers)} ({args.bins}, {args.statistics}): {ms['with']:8.1f} ms")
    print(f"ratio with / without: {ms['with'] / ms['without']:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
