"""The ``seldepth`` command: parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from seldepth.selectivity import DEFAULT_BINS, DEFAULT_DEPTH_RANGE, DEFAULT_FRACTIONS

_RANGE = ",".join(f"{v:g}" for v in DEFAULT_DEPTH_RANGE)
_FRACTIONS = ",".join(f"{v:g}" for v in DEFAULT_FRACTIONS)

def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _open_data(args: argparse.Namespace):
    """Open ``--data`` (split, on-error policy) and print the layout found, before any work."""
    from seldepth.data.spec import describe_dataset, open_dataset

    dataset = open_dataset(args.data, split=args.split, on_error=args.on_error, key="--data")
    print(f"{args.data} (split {args.split}): {describe_dataset(dataset)}")
    return dataset


def _report_skipped(dataset, shown: int = 10) -> None:
    """Print how many samples ``--on-error skip`` left out, and which."""
    from seldepth.data.skipping import skipped_of

    skipped = skipped_of(dataset)
    if skipped:
        print(f"skipped {len(skipped)} bad samples (--on-error skip):")
        for message in skipped[:shown]:
            print(f"  {message}")
        if len(skipped) > shown:
            print(f"  ... and {len(skipped) - shown} more")


def cmd_import_meter(args: argparse.Namespace) -> None:
    from seldepth.models.import_meter import import_meter

    model = import_meter(args.weights, variant=args.variant, dataset=args.dataset, out=args.out)
    print(f"wrote {args.out}: {model.name}, {model.num_parameters():,} parameters, output in metres "
          f"({model.metadata['provenance']['unit_conversion']}), sha256 of source {model.metadata['provenance']['sha256'][:12]}...")


def cmd_eval(args: argparse.Namespace) -> None:
    from seldepth.evaluation import evaluate, format_table
    from seldepth.models.base import with_head
    from seldepth.models.model_file import load_model
    from seldepth.evaluation.protocol import get_protocol

    protocol = get_protocol(args.protocol, flip=args.flip, caps=args.caps, median_scaling=args.median_scaling)
    model = with_head(load_model(args.model), args.head)
    dataset = _open_data(args)
    result = evaluate(model, dataset, protocol, batch_size=args.batch_size, num_workers=args.workers)
    result["model"] = str(args.model)
    result["data"] = args.data
    print(f"model {args.model} on {args.data} ({len(dataset)} images, split {args.split})")
    print(format_table(result, protocol))
    _report_skipped(dataset)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


def cmd_dissect(args: argparse.Namespace) -> None:
    from seldepth.models.model_file import load_model
    from seldepth.report.selectivity_plots import save_selectivity_plots
    from seldepth.selectivity.dissect import dissect, format_table, resolve_layers

    model = load_model(args.model)
    resolve_layers(model, args.layers)  # unknown names fail before any data is read
    dataset = _open_data(args)
    result = dissect(model, dataset, layers=args.layers, bins=args.bins, depth_range=args.depth_range,
                     batch_size=args.batch_size, num_workers=args.workers)
    result.info.update(model=str(args.model), data=args.data, split=args.split)
    print(f"model {args.model} on {args.data} ({len(dataset)} images, split {args.split})")
    print(format_table(result))
    _report_skipped(dataset)
    paths = result.save(args.out)
    plots = save_selectivity_plots(result, args.out)
    print(f"wrote {paths['json']}, {paths['npz']} and {len(plots)} plots in {args.out}")


def cmd_ablate(args: argparse.Namespace) -> None:
    from seldepth.models.model_file import load_model
    from seldepth.report.ablation_plots import plot_ablation
    from seldepth.selectivity.ablation import ablate, check_ablation_args

    model = load_model(args.model)
    check_ablation_args(model, args.layer, args.fractions, args.seeds, args.mode)  # fail before any data is read
    dataset = _open_data(args)
    result = ablate(model, dataset, args.layer, fractions=args.fractions, seeds=args.seeds, mode=args.mode,
                    bins=args.bins, depth_range=args.depth_range, protocol=args.protocol, batch_size=args.batch_size)
    result.info.update(model=str(args.model), data=args.data, split=args.split)
    print(f"model {args.model} on {args.data} ({len(dataset)} images, split {args.split})")
    print(result.format_table())
    print("\n".join(result.verdicts()))
    _report_skipped(dataset)
    paths = result.save(args.out)
    plot = plot_ablation(result.to_dict(), Path(args.out) / "ablation.png")
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['md']} and {plot}")


def cmd_train(args: argparse.Namespace) -> None:
    from seldepth.training.config import build_parser, parse_train_args
    from seldepth.training import train

    if any(a in ("-h", "--help") for a in args.rest):
        build_parser().print_help()
        return
    cfg, resume = parse_train_args(args.rest)
    results = train(cfg, resume=resume)
    if results:
        _print_run_results(cfg.trainer.out_dir, results)


def _print_run_results(out_dir: str, results: dict) -> None:
    from seldepth.evaluation import format_table
    from seldepth.evaluation.protocol import Protocol

    for split in ("val", "test"):
        if split in results:
            r = results[split]
            print(f"\n{split} split of the best checkpoint:")
            print(format_table(r, Protocol(**{**r["protocol"], "caps": tuple(r["protocol"]["caps"])})))
    pose = results.get("pose")
    if pose and "error" not in pose:
        print(f"\npose network on the test split ({pose['num_pairs']} frame pairs): translation direction error "
              f"{pose['translation_deg']:.2f} deg, rotation error {pose['rotation_deg']:.3f} deg (pose.safetensors)")
    elif pose:
        print(f"\npose network not scored: {pose['error']}")
    print(f"\nrun folder {out_dir}: model.safetensors, checkpoints/, csv/metrics.csv, tb/, config.yaml, results.json "
          f"(trained {results['train_seconds']:.0f} s)")


def cmd_synth(args: argparse.Namespace) -> None:
    from seldepth.data.synthetic import generate, parse_size

    info = generate(args.out, args.num, size=parse_size(args.size), seed=args.seed, sequence_length=args.sequence_length,
                    preview=args.preview, workers=args.workers)
    print(f"wrote {info['num_frames']} frames to {args.out} (splits {info['splits']})"
          + (f"; contact sheet {Path(args.out) / 'preview.png'}" if args.preview else ""))


def cmd_demo(args: argparse.Namespace) -> None:
    from seldepth.experiments.demo import run_demo

    run_demo(quick=args.quick, out_dir=args.out)


def cmd_report(args: argparse.Namespace) -> None:
    from seldepth.report.html import write_report

    path = write_report(args.run_dirs, args.out, samples=args.samples)
    print(path)


def cmd_experiment(args: argparse.Namespace) -> None:
    from seldepth.experiments.runner import run_experiment

    start = time.time()
    summary = run_experiment(args.config, args.out, quick=args.quick, jobs=args.jobs)
    print(f"\n{(Path(args.out) / 'summary.md').read_text()}")
    print(f"experiment finished in {(time.time() - start) / 60:.1f} min ({summary['jobs']} runs at once); "
          f"{args.out}/summary.csv, summary.md, experiment.json; report: seldepth report {args.out}/*/ --out report.html")


def cmd_predict(args: argparse.Namespace) -> None:
    from seldepth.prediction import predict_paths, resolve_intrinsics

    intrinsics = resolve_intrinsics(args.fx, args.fy, args.cx, args.cy, args.fov)
    summary = predict_paths(args.model, args.inputs, args.out, batch_size=args.batch_size, depth_range=args.range,
                            ply=args.ply, intrinsics=intrinsics, flip=args.flip, video_npy=args.video_npy)
    print(summary.format(args.out))


def cmd_models(args: argparse.Namespace) -> None:
    from seldepth.models import create_model, list_models

    for name in list_models():
        model = create_model(name)
        print(f"{name:12s} {model.num_parameters():>10,} parameters  {model.flops(192, 256) / 1e9:6.3f} GFLOPs at 192x256 "
              "(2 FLOPs per multiply-add)")


def cmd_export(args: argparse.Namespace) -> None:
    from seldepth.deploy.onnx_export import check_export_args, export_onnx
    from seldepth.deploy.quantize import quantize_int8
    from seldepth.models.base import with_head
    from seldepth.models.model_file import load_model

    check_export_args(args.format, args.int8, args.calibration)
    model = with_head(load_model(args.model), args.head)
    dataset = None
    if args.int8:
        from seldepth.data.spec import describe_dataset, open_dataset

        dataset = open_dataset(args.calibration, split=args.split, key="--calibration")
        print(f"calibration {args.calibration}: {describe_dataset(dataset)}")
    out = Path(args.out)
    fp32_out = out.with_name(out.stem + "_fp32.onnx") if args.int8 else out
    check = [dataset[i]["image"] for i in range(min(2, len(dataset)))] if dataset is not None else None
    info = export_onnx(model, fp32_out, dynamic=args.dynamic, opset=args.opset, check_images=check, source=args.model)
    print(f"wrote {fp32_out}: {model.name}, opset {info['opset']}, input {'dynamic batch and HxW (multiples of ' + str(getattr(model, 'size_multiple', 1)) + ')' if args.dynamic else 'x'.join(map(str, info['input_size']))}; "
          f"max abs diff vs torch {info['max_abs_diff_m']:.2e} m over {info['checked_inputs']} inputs")
    if args.int8:
        q = quantize_int8(fp32_out, out, dataset, num_images=args.calibration_images)
        print(f"wrote {out}: INT8 ({q['settings']['quant_format']}, per-channel {q['settings']['per_channel']}, "
              f"{q['num_images']} calibration images); vs FP32 max abs diff {q['max_abs_diff_m']:.3f} m, "
              f"mean {q['mean_abs_diff_m']:.4f} m")


def cmd_bench(args: argparse.Namespace) -> None:
    from seldepth.deploy.bench import benchmark, check_benchmark_args, format_benchmark, parse_size

    size = parse_size(args.size)
    check_benchmark_args(args.model, size, args.threads, args.runs, args.warmup)
    if not Path(args.model).is_file():
        raise FileNotFoundError(f"model file not found: {args.model}")
    result = benchmark(args.model, size=size, threads=args.threads, runs=args.runs, warmup=args.warmup,
                       int8_calibration=args.calibration, int8_images=args.calibration_images,
                       compile=not args.no_compile, compile_budget_s=args.compile_budget, progress=True, head=args.head)
    print(format_benchmark(result))
    if args.json:
        from seldepth.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps(result, indent=2))
        print(f"wrote {args.json}")


def cmd_attention(args: argparse.Namespace) -> None:
    from seldepth.data.images import read_rgb
    from seldepth.models.model_file import load_model
    from seldepth.report.attention import capture_attention, check_attention_args, save_attention
    from seldepth.selectivity.dissect import resolve_layers

    check_attention_args(args.model, args.image)  # missing files and ONNX models fail before any work
    model = load_model(args.model)
    resolve_layers(model, args.layers)  # unknown names fail before the image is read
    image = read_rgb(args.image)
    result = capture_attention(model, image, args.layers)
    for path in save_attention(result, image, args.out, prefix=Path(args.image).stem):
        print(f"wrote {path}")


DATA_HELP = ("data spec KIND:PATH[?key=value&...]: nyu:PATH (labeled .mat, DenseDepth folder/zip/CSV, BTS sync "
             "list, .h5 files, annotation JSON, or a folder), kitti:PATH (raw drives via a file list or folder, "
             "annotation JSON), folder:PATH?scale=1000, synthetic:PATH or synthetic:default")


def cmd_select(args: argparse.Namespace) -> None:
    from seldepth.data.subsets import read_selection
    from seldepth.experiments.uncertainty import uncertainty_scores, write_selection
    from seldepth.data.spec import open_dataset
    from seldepth.models.model_file import load_model

    if args.budget < 1:
        raise ValueError(f"--budget must be >= 1, got {args.budget}")
    models = [load_model(m) for m in args.model]
    pool = open_dataset(args.pool, args.split)
    exclude = set(read_selection(args.exclude, len(pool), key="--exclude")) if args.exclude else set()
    if args.budget > len(pool) - len(exclude):
        raise ValueError(f"--budget {args.budget} is more than the {len(pool) - len(exclude)} unlabelled images of {args.pool}")
    scores = uncertainty_scores(models, pool, args.method, passes=args.passes, p=args.dropout, seed=args.seed)
    chosen = write_selection(scores, pool, args.budget, args.out, exclude)
    print(f"chose {len(chosen)} of {len(pool) - len(exclude)} unlabelled images by {args.method} "
          f"(uncertainty {float(scores[chosen].min()):.4g}..{float(scores[chosen].max()):.4g}; pool median "
          f"{float(scores.median()):.4g}): {args.out}, ranking in {Path(args.out).with_name('scores.csv')}; "
          f"train on them with --data.train_subset {args.out}")


def cmd_active(args: argparse.Namespace) -> None:
    from seldepth.experiments.active import run_active

    summary = run_active(args.config, args.out, quick=args.quick, jobs=args.jobs)
    print(f"\n{(Path(args.out) / 'summary.md').read_text()}\nactive learning finished in "
          f"{summary['wall_seconds'] / 60:.1f} min; {args.out}/summary.md, active.json, active.png")


def _add_experiment_arguments(p: argparse.ArgumentParser, example: str, units: str) -> None:
    p.add_argument("--config", required=True, help=f"experiment YAML, e.g. {example}")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per run; finished trainings are kept)")
    p.add_argument("--quick", action="store_true", help="apply the file's quick: overrides (minutes instead of an hour)")
    p.add_argument("--jobs", type=int, help=f"{units} trained at once (default the file's jobs:)")


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--split", default="test", help="split where the layout has several (default test)")
    p.add_argument("--on-error", default="stop", choices=["stop", "skip"],
                   help="a bad file stops with its name (stop, default) or is skipped, counted and listed at the end (skip)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seldepth", description="Efficient, interpretable monocular depth estimation.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import-meter", help="convert official METER weights into a seldepth model file")
    p.add_argument("weights", help="official METER state_dict, e.g. build_model_best_nyu_xxs")
    p.add_argument("--variant", default="xxs", choices=["xxs", "xs", "s"])
    p.add_argument("--dataset", default="nyu", choices=["nyu", "kitti"], help="sets input size and output unit")
    p.add_argument("--out", required=True, help="output model file (.safetensors)")
    p.set_defaults(func=cmd_import_meter)

    p = sub.add_parser("eval", help="evaluate a model on a data set under a protocol")
    p.add_argument("--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt)")
    _add_data_arguments(p)
    p.add_argument("--protocol", default="nyu", help="nyu (1e-3..10 m, Eigen crop), kitti (1e-3..80 m, Garg crop), kitti_eigen (Eigen crop), synthetic, none")
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time averaging")
    p.add_argument("--caps", type=_floats, default=(), help="extra depth caps in metres, e.g. 4,6,8")
    p.add_argument("--median-scaling", action="store_true",
                   help="scale each prediction by median(gt) / median(pred) first (depth up to scale: self-supervised "
                        "models); prints the ratios' mean and spread")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--head", help="output head of a multi-head model (realtime_depth: L, M, S, XS); computes only up to it")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("dissect", help="depth selectivity of a model's units over a data set (JSON, NPZ, plots)")
    p.add_argument("--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt)")
    _add_data_arguments(p)
    p.add_argument("--layers", help="comma-separated layer names or module paths (default the model's selectivity layers)")
    p.add_argument("--bins", default=DEFAULT_BINS, help=f"bin scheme, e.g. sid:64, linear:32, log:32, quantile:64, "
                   f"sid:64:alpha=3,beta=80 (layer with K units: min(N, K) bins; default {DEFAULT_BINS})")
    p.add_argument("--depth-range", type=_floats, default=DEFAULT_DEPTH_RANGE,
                   help=f"valid ground truth min,max in metres (default {_RANGE})")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=0, help="data loader processes")
    p.add_argument("--out", default="runs/dissect", help="output folder (default runs/dissect)")
    p.set_defaults(func=cmd_dissect)

    p = sub.add_parser("ablate", help="ablate a layer's most / least / random selective units and measure depth metrics")
    p.add_argument("--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt)")
    _add_data_arguments(p)
    p.add_argument("--layer", required=True, help="one layer name or module path, e.g. enc_7")
    p.add_argument("--fractions", type=_floats, default=DEFAULT_FRACTIONS,
                   help=f"fractions of the layer's units to ablate (default {_FRACTIONS})")
    p.add_argument("--seeds", type=int, default=3, help="random draws of the random-k curve (default 3)")
    p.add_argument("--mode", default="zero", choices=["zero", "mean"],
                   help="ablated units output 0 (zero) or their mean activation over the data set (mean)")
    p.add_argument("--bins", default=DEFAULT_BINS, help=f"bin scheme of the dissection that ranks the units (default {DEFAULT_BINS})")
    p.add_argument("--depth-range", type=_floats, default=DEFAULT_DEPTH_RANGE,
                   help=f"valid ground truth min,max in metres (default {_RANGE})")
    p.add_argument("--protocol", default="nyu", help="nyu (1e-3..10 m, Eigen crop), kitti, synthetic (no crop), none")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", default="runs/ablate", help="output folder (default runs/ablate)")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("attention", help="attention maps (sum of |activation| over channels) of a model's layers on one image")
    p.add_argument("--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt); not .onnx")
    p.add_argument("--image", required=True, help="RGB image file")
    p.add_argument("--layers", help="comma-separated layer names or module paths (default the model's selectivity layers)")
    p.add_argument("--out", default="runs/attention", help="output folder (default runs/attention)")
    p.set_defaults(func=cmd_attention)

    p = sub.add_parser("select", help="active learning: choose the unlabelled images whose predicted depth is most uncertain")
    p.add_argument("--model", required=True, action="append",
                   help="model file; give it several times for --method ensemble")
    p.add_argument("--pool", required=True, help="the unlabelled images: " + DATA_HELP)
    p.add_argument("--split", default="train", help="split of the pool (default train)")
    p.add_argument("--budget", required=True, type=int, help="number of images to choose")
    p.add_argument("--method", default="mc-dropout", choices=["mc-dropout", "ensemble", "random"])
    p.add_argument("--passes", type=int, default=8, help="dropout passes per image (mc-dropout)")
    p.add_argument("--dropout", type=float, default=0.2, help="channel dropout probability on the decoder layers (mc-dropout)")
    p.add_argument("--exclude", help="a chosen list of images already labelled, left out of the choice")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/select/chosen.txt", help="chosen list (index<TAB>path lines); scores.csv beside it")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("active", help="active-learning experiment: rounds of train and choose, uncertainty vs random")
    _add_experiment_arguments(p, "configs/experiments/active_synthetic.yaml", "chains (method, seed)")
    p.set_defaults(func=cmd_active)

    p = sub.add_parser("train", add_help=False, help="train a model from a YAML config (seldepth train --help)")
    p.set_defaults(func=cmd_train, takes_rest=True)

    p = sub.add_parser("synth", help="generate a synthetic indoor RGB-D data set (NYU layout)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, default=1000, help="number of scenes (frames = num x sequence length)")
    p.add_argument("--size", default="256x192", help="WxH, default 256x192")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sequence-length", type=int, default=1, help="frames per scene along a smooth camera path")
    p.add_argument("--preview", action="store_true", help="also write preview.png, a contact sheet")
    p.add_argument("--workers", type=int, default=2, help="rendering processes")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("demo", help="the main job: synthetic data, train METER-xxs, evaluate (15 min; --quick 3 min)")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (about 3 minutes on 2 cores)")
    p.add_argument("--out", help="run folder (default runs/demo or runs/demo_quick)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="one self-contained HTML page comparing training run folders side by side")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders written by seldepth train")
    p.add_argument("--out", default="report.html", help="output HTML file (default report.html)")
    p.add_argument("--samples", type=int, default=4, help="test images in the prediction grid (default 4; 0: none)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("experiment", help="train, dissect and ablate a grid of runs from one YAML; gather a table")
    _add_experiment_arguments(p, "configs/experiments/selectivity_meter_xxs.yaml", "runs")
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("predict", help="depth for images, folders, list files and videos: .npy, 16-bit PNG, colour map, PLY, .mp4")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image file, folder (searched recursively), text file listing image paths, or video (.mp4/.avi/.mov/.mkv/.webm)")
    p.add_argument("--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt)")
    p.add_argument("--out", required=True, help="output folder (sub-folders of a folder input are kept)")
    p.add_argument("--batch-size", type=int, default=4, help="images or video frames per forward pass (default 4)")
    p.add_argument("--range", help="fixed colour range MIN,MAX in metres (default: per image; per video from its first frames)")
    p.add_argument("--ply", action="store_true", help="also write NAME.ply point clouds (needs intrinsics)")
    p.add_argument("--fx", type=float, help="focal length in pixels (with --fy --cx --cy) for --ply")
    p.add_argument("--fy", type=float, help="default --fx")
    p.add_argument("--cx", type=float, help="principal point in pixels (default the image centre)")
    p.add_argument("--cy", type=float)
    p.add_argument("--fov", type=float, help="horizontal field of view in degrees instead of --fx/--fy (principal point at the centre)")
    p.add_argument("--video-npy", action="store_true", help="also save each video's depth frames as NAME_depth.npy (T, H, W)")
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time averaging")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list registered models with their size and cost")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("export", help="export a model to ONNX (checked against torch), optionally INT8-quantised")
    p.add_argument("--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt)")
    p.add_argument("--format", default="onnx", help="export format (only onnx)")
    p.add_argument("--out", required=True, help="output .onnx file (with --int8 the FP32 file goes beside it as *_fp32.onnx)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (multiples of the model's size multiple)")
    p.add_argument("--opset", type=int, help="ONNX opset (default the exporter's)")
    p.add_argument("--int8", action="store_true", help="static INT8 quantisation with ONNX Runtime (needs --calibration)")
    p.add_argument("--calibration", help="data spec of calibration images, e.g. nyu:PATH (see seldepth eval --help)")
    p.add_argument("--calibration-images", type=int, default=16, help="calibration images (default 16)")
    p.add_argument("--split", default="test", help="split of the calibration data (default test)")
    p.add_argument("--head", help="output head of a multi-head model (realtime_depth: L, M, S, XS); computes only up to it")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="parameters, FLOPs and CPU latency: eager, torch.compile, ORT FP32 and INT8 side by side")
    p.add_argument("--model", required=True, help="model file (.safetensors) or training checkpoint (.ckpt)")
    p.add_argument("--size", default="192x256", help="network input HxW (default 192x256)")
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads (default 2)")
    p.add_argument("--runs", type=int, default=50, help="timed calls per backend (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per backend first (default 10)")
    p.add_argument("--calibration", help="data spec of INT8 calibration images (default: no INT8)")
    p.add_argument("--calibration-images", type=int, default=16, help="calibration images (default 16)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-budget", type=float, default=180.0, help="seconds torch.compile's first call may take (default 180)")
    p.add_argument("--head", help="output head of a multi-head model (realtime_depth: L, M, S, XS); computes only up to it")
    p.add_argument("--json", help="also write the results as JSON here")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if getattr(args, "takes_rest", False):
        args.rest = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"seldepth {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
