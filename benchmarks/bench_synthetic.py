"""Throughput of the synthetic RGB-D generator: images per second, rendering only and with files written.

Prints, side by side in one run, frames/s of ``render_frame`` in this process and of
``generate`` (render + PNG/JSON writing) with one and with several worker processes, each as
a ratio to the 20 images/s target.

    python benchmarks/bench_synthetic.py --size 192x256 --frames 200
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

TARGET = 20.0  # images/s at 192x256 (HxW) on 2 CPU cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="192x256", help="HxW, height x width (default 192x256)")
    parser.add_argument("--frames", type=int, default=200, help="frames per measurement (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=os.cpu_count() or 1,
                        help="processes for the parallel generate run (default: CPU count)")
    parser.add_argument("--sequence-length", type=int, default=1)
    args = parser.parse_args()

    from seldepth.data.synthetic import generate, parse_size, render_frame
    from seldepth.data.synthetic.render import render_sequence

    size = parse_size(args.size)
    n = args.frames
    length = args.sequence_length
    scenes = max(1, n // length)
    render_frame((args.seed, 10**6), size)  # warm up caches and imports

    t0 = time.perf_counter()
    for s in range(scenes):
        render_sequence((args.seed, s), size, length)
    render_rate = scenes * length / (time.perf_counter() - t0)

    rates = {"render only (1 process)": render_rate}
    for workers in sorted({1, max(1, args.num_workers)}):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            generate(tmp, scenes, size=size, seed=args.seed, sequence_length=length, progress=False, workers=workers)
            rates[f"render + write ({workers} process{'es' if workers > 1 else ''})"] = \
                scenes * length / (time.perf_counter() - t0)

    print(f"synthetic RGB-D generator, {size[0]}x{size[1]} (HxW), {scenes * length} frames, "
          f"sequence_length {length}, {os.cpu_count()} CPU cores")
    width = max(len(k) for k in rates)
    for name, rate in rates.items():
        print(f"  {name:<{width}}  {rate:7.1f} images/s   {rate / TARGET:5.2f}x the {TARGET:.0f}/s target")


if __name__ == "__main__":
    main()
