"""Cost of dissection, measured side by side in one run (ratios, not absolute times).

1. dissection of a model's default selectivity layers (METER-xxs: 16 layers) against the
   ground truth at its own resolution (NYU 480x640), vs a plain evaluation pass of the same
   model over the same data with the same loader (``seldepth.evaluation.evaluate``);
2. dissection vs the plain per-image, per-bin loop (every channel upsampled with
   F.interpolate, then one masked sum per bin), timed on a few images and scaled per image.

Passes are interleaved over several rounds and the medians compared, so that a background
load affects both sides alike. Targets (issue 4): dissect / eval <= 2.5, loop / dissect >= 50.

Threads: one by default. On a 2-core machine shared with another busy job, a multi-threaded
torch op waits for the busy core (a scheduler time slice, milliseconds) at every parallel
region, which then dominates every pass (evaluation runs ~20x slower than single-threaded)
and measures the scheduler, not the code. ``--threads 0`` keeps torch's choice.

Usage:
    .venv/bin/python benchmarks/bench_dissect.py [--model FILE] [--data nyu:PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import ConcatDataset

from seldepth.data.spec import open_dataset
from seldepth.evaluation import evaluate
from seldepth.inference import model_preprocessing
from seldepth.models.loading import load_model
from seldepth.evaluation.protocol import get_protocol
from seldepth.selectivity.bins import depth_to_bins, parse_bins
from seldepth.selectivity.dissect import dissect, resolve_layers

from official_model import SHARED, model_path_or_official


def loop_dissect_image(model, layers: dict[str, str], sample: dict, scheme, depth_range, style: str = "formula") -> dict:
    """The plain reference path for one image: hooks, F.interpolate every layer (float32), loop over bins.

    ``formula``: each bin's sum is ``sum(up(A) * M_d)`` over the whole image, straight from the
    formula (the per-image, per-bin loop of the reference code of You et al.). ``indexed``: each bin gathers only its own pixels
    (boolean indexing), so every upsampled value is read once per layer: a faster loop, a
    stricter baseline.
    """
    modules = dict(model.named_modules())
    store = {}
    handles = [modules[p].register_forward_hook(lambda m, a, o, n=n: store.__setitem__(n, o.detach()))
               for n, p in layers.items()]
    with torch.no_grad():
        model(model_preprocessing(model)(sample["image"][None]))
    for h in handles:
        h.remove()
    depth = sample["depth"][None]
    valid = sample["valid"][None] & (depth > depth_range[0]) & (depth < depth_range[1])
    out = {}
    for name, act in store.items():
        n_b = scheme.bins_for(act.shape[1])
        bins = depth_to_bins(depth, scheme.edges(n_b), valid)[0]
        up = F.interpolate(act, size=bins.shape, mode="bilinear", align_corners=False)[0].flatten(1)  # (K, H*W)
        flat = bins.flatten()
        sums = torch.zeros(act.shape[1], n_b, dtype=torch.float64)
        counts = torch.zeros(n_b, dtype=torch.float64)
        for d in range(n_b):
            mask = flat == d
            if style == "indexed":
                sums[:, d] = up[:, mask].double().sum(dim=1)
            else:
                sums[:, d] = (up * mask).double().sum(dim=1)
            counts[d] = mask.sum()
        out[name] = (sums, counts)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model file (default: the official NYU METER-xxs, imported to a temporary file)")
    parser.add_argument("--data", default=f"nyu:{SHARED / 'data' / 'nyu_test_sample'}")
    parser.add_argument("--repeat", type=int, default=3, help="repeat the data set this many times (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of eval and dissect (default 3)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--bins", default="sid:64")
    parser.add_argument("--loop-images", type=int, default=1, help="images timed with the per-image, per-bin loop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # empty-bin warnings of every pass

    with tempfile.TemporaryDirectory() as tmp:
        model_path = model_path_or_official(args.model, tmp)
        model = load_model(model_path)
    base = open_dataset(args.data)
    dataset = ConcatDataset([base] * args.repeat)
    layers = resolve_layers(model)
    scheme = parse_bins(args.bins)
    depth_range = (1e-3, 10.0)
    h, w = base[0]["depth"].shape[-2:]
    print(f"model {model.name}: {len(layers)} layers; data {args.data}: {len(dataset)} images "
          f"({len(base)} x {args.repeat}), ground truth {h}x{w}; batch {args.batch_size}; "
          f"torch threads {torch.get_num_threads()}")

    protocol = get_protocol("nyu")
    evaluate(model, base, protocol, batch_size=args.batch_size, progress=False)  # warm-up
    t_eval, t_dis = [], []
    for r in range(args.rounds):
        t = time.perf_counter()
        evaluate(model, dataset, protocol, batch_size=args.batch_size, progress=False)
        t_eval.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = dissect(model, dataset, bins=scheme, depth_range=depth_range, batch_size=args.batch_size, progress=False)
        t_dis.append(time.perf_counter() - t)
        print(f"round {r + 1}: eval {t_eval[-1]:.2f} s, dissect {t_dis[-1]:.2f} s, ratio {t_dis[-1] / t_eval[-1]:.2f}")
    eval_s, dis_s = statistics.median(t_eval), statistics.median(t_dis)

    n_loop = min(args.loop_images, len(base))
    loop_times, indexed_times = [], []
    max_diff = 0.0
    for i in range(n_loop):
        t = time.perf_counter()
        sample = base[i]
        ref = loop_dissect_image(model, layers, sample, scheme, depth_range, "formula")
        loop_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        loop_dissect_image(model, layers, base[i], scheme, depth_range, "indexed")
        indexed_times.append(time.perf_counter() - t)
        one = dissect(model, [sample], bins=scheme, depth_range=depth_range, progress=False)
        for name, (sums, counts) in ref.items():
            r_loop = torch.where(counts > 0, sums / counts.clamp_min(1), torch.zeros_like(sums))
            max_diff = max(max_diff, float((r_loop - one.layers[name].responses).abs().max()))
    loop_per_image = statistics.mean(loop_times)
    dis_per_image = dis_s / len(dataset)
    eval_per_image = eval_s / len(dataset)

    ratio_eval = dis_s / eval_s
    ratio_loop = loop_per_image / dis_per_image
    indexed_per_image = statistics.mean(indexed_times)
    print(f"\nper image: eval {eval_per_image * 1e3:.0f} ms, dissect {dis_per_image * 1e3:.0f} ms, "
          f"per-image per-bin loop {loop_per_image * 1e3:.0f} ms (on {n_loop} images), "
          f"indexed loop {indexed_per_image * 1e3:.0f} ms")
    print(f"max |R_loop - R_dissect| on those images: {max_diff:.2e}")
    print(f"dissect / eval  = {ratio_eval:.2f}   (target <= 2.5)  {'OK' if ratio_eval <= 2.5 else 'MISSED'}")
    print(f"loop / dissect  = {ratio_loop:.0f}   (target >= 50)   {'OK' if ratio_loop >= 50 else 'MISSED'}")
    print(f"indexed loop / dissect = {indexed_per_image / dis_per_image:.0f}   (a stricter baseline than the formula's loop)")
    print(f"mean DS over layers {result.mean_ds:.4f}")
    return 0 if ratio_eval <= 2.5 and ratio_loop >= 50 else 1


if __name__ == "__main__":
    sys.exit(main())
