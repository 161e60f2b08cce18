"""Training throughput: the real pipeline against a bare torch loop, measured side by side in one run.

Real pipeline: ``seldepth``'s Lightning training of METER-xxs at batch 16, 192x256, the balanced
loss, samples read from a synthetic data set on disk through the data module (PNG decoding,
augmentation, loader worker). Bare loop: the same model and optimiser over in-memory tensors
with an L1 loss. Prints images/s of both and their ratio (target: >= 0.8).

    python benchmarks/bench_training.py [--steps 30] [--warmup 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from seldepth.data.datamodule import DataConfig, DepthDataModule
from seldepth.data.synthetic import generate
from seldepth.models import create_model
from seldepth.training.config import TrainConfig, TrainerConfig
from seldepth.training import build_module


class StepTimer(L.Callback):
    def __init__(self, warmup: int):
        self.warmup, self.times = warmup, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.times.append(time.perf_counter())


def bare_loop(steps: int, warmup: int, batch: int, size: tuple[int, int]) -> float:
    torch.manual_seed(0)
    model = create_model("meter_xxs").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randn(batch, 3, *size)
    y = torch.rand(batch, 1, size[0] // 4, size[1] // 4) * 10
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        loss = (model(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def real_pipeline(data_dir: Path, steps: int, warmup: int, batch: int, size: tuple[int, int], workers: int) -> float:
    cfg = TrainConfig(data=DataConfig(path=f"synthetic:{data_dir}", input_size=size, batch_size=batch, num_workers=workers),
                      trainer=TrainerConfig(epochs=1, progress_bar=False))
    L.seed_everything(0, verbose=False)
    timer = StepTimer(warmup)
    trainer = L.Trainer(max_steps=warmup + steps + 1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
    trainer.fit(build_module(cfg), datamodule=DepthDataModule(cfg.data))
    t = timer.times
    return steps * batch / (t[warmup + steps] - t[warmup])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    size = (192, 256)
    with tempfile.TemporaryDirectory() as tmp:
        n = (args.steps + args.warmup + 2) * args.batch * 10 // 8 + 16
        generate(Path(tmp) / "synth", n, size=size, seed=0, progress=False)
        print(f"torch threads {torch.get_num_threads()}, batch {args.batch}, {size[0]}x{size[1]}, {args.steps} timed steps")
        bare = bare_loop(args.steps, args.warmup, args.batch, size)
        real = real_pipeline(Path(tmp) / "synth", args.steps, args.warmup, args.batch, size, args.num_workers)
        bare2 = bare_loop(args.steps, args.warmup, args.batch, size)  # again, to bracket machine noise
    bare_mean = (bare + bare2) / 2
    print(f"bare torch loop (in-memory tensors, L1):          {bare:7.1f} / {bare2:7.1f} images/s")
    print(f"seldepth training (disk, augmentation, balanced): {real:7.1f} images/s")
    print(f"ratio real / bare: {real / bare_mean:.2f} (target >= 0.80)")


if __name__ == "__main__":
    main()
