"""The ``seldepth`` command: one typed parser per subcommand (jsonargparse), then a call into the library.

Conventions shared by every subcommand:

* ``--config FILE.yaml`` reads the subcommand's arguments from YAML (keys are the option names with ``_``
  for ``-``, e.g. ``batch_size: 8``; options given after it override it); ``--print_config`` prints the
  arguments as YAML and exits. ``--help`` shows every default; the defaults come from
  :mod:`seldepth.defaults`, which the library's functions take theirs from too.
* One spelling for each thing: ``--num-workers`` (processes), ``--batch-size``, ``--out`` (each help says
  whether it is a file or a folder; checked before any work), sizes ``HxW`` (height x width),
  ``--device auto|cpu|cuda[:N]|mps`` wherever a torch model runs.
* Exit codes: 0 done; 1 nothing was produced (every input skipped, no image scored) or the work failed;
  2 a usage error (unknown option, bad value, missing input, impossible output path); 130 interrupted
  (Ctrl-C). Errors print one line; ``--verbose`` (anywhere on the line) adds the traceback and lets
  Lightning's tips and warnings through.

``seldepth train`` is parsed by the training config's own jsonargparse parser
(:func:`seldepth.training.config.build_parser`: ``--config``, ``--print_config``, dotted keys such as
``--optim.lr``).

Start-up time: this module imports only jsonargparse and torch-free modules (:mod:`seldepth.defaults`), and
the parser of a subcommand is built only when that subcommand is named. Each command function imports the
library it calls, so ``seldepth --help`` and ``seldepth SUBCOMMAND --help`` never import torch.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, Namespace
from jsonargparse.typing import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, register_type

from seldepth import __version__
from seldepth.defaults import (
    DEFAULT_ABLATION_BATCH_SIZE,
    DEFAULT_ABLATION_SEEDS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_BINS,
    DEFAULT_BY_BIN_GROUPS,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_CMAP,
    DEFAULT_COMPILE_BUDGET_S,
    DEFAULT_DEPTH_RANGE,
    DEFAULT_DEVICE,
    DEFAULT_FRACTIONS,
    DEFAULT_MAX_RMSE_INCREASE,
    DEFAULT_MC_DROPOUT,
    DEFAULT_MC_PASSES,
    DEFAULT_MIN_CHANNELS,
    DEFAULT_MIN_KEEP,
    DEFAULT_NUM_WORKERS,
    DEFAULT_OUTPUTS,
    DEFAULT_PNG_COMPRESSION,
    DEFAULT_PREDICT_MODEL,
    DEFAULT_PREDICT_OUT,
    DEFAULT_RENDER_WORKERS,
    DEFAULT_REPORT_SAMPLES,
    DEFAULT_ROUND_TO,
    DEFAULT_RUNS,
    DEFAULT_SCENES,
    DEFAULT_SIZE,
    DEFAULT_SPLIT,
    DEFAULT_THREADS,
    DEFAULT_WARMUP,
    IMAGE_OUTPUTS,
    check_number,
)

DEFAULT_SIZE_TEXT = f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}"
OLD_SYNTH_SIZE = f"{DEFAULT_SIZE[1]}x{DEFAULT_SIZE[0]}"  # synth's default before 0.2, when --size was WxH

# options spelt differently before 0.2: old -> new
RENAMED_OPTIONS = {"--workers": "--num-workers"}


# ---------------------------------------------------------------------------------------------
# Types and help
# ---------------------------------------------------------------------------------------------

class Numbers(tuple):
    """Comma-separated numbers on the command line (``4,6,8``), a list in a YAML config (``[4, 6, 8]``)."""

    help_name = "N,N,..."

    def __str__(self) -> str:  # how --help shows a default
        return ",".join(f"{v:g}" for v in self) or "none"


def _numbers(value) -> Numbers:
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [v for v in str(value).split(",") if v.strip()]
    try:
        return Numbers(float(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"expected comma-separated numbers such as 4,6,8; got {value!r}") from None


register_type(Numbers, serializer=lambda v: [float(x) for x in v], deserializer=_numbers)


class _HelpFormatter(DefaultHelpFormatter):
    """jsonargparse's help (type and default after each option), with readable names for this module's types."""

    def _get_type_str(self, action):
        if action.choices is not None:
            return None  # the choices are listed
        name = getattr(getattr(action, "_typehint", None) or action.type, "help_name", None)
        return name if name is not None else super()._get_type_str(action)


# ---------------------------------------------------------------------------------------------
# Shared arguments
# ---------------------------------------------------------------------------------------------

DATA_HELP = ("data spec KIND:PATH[?key=value&...]: nyu:PATH (labeled .mat, DenseDepth folder/zip/CSV, BTS sync "
             "list, .h5 files, annotation JSON, or a folder), kitti:PATH (raw drives via a file list or folder, "
             "annotation JSON), folder:PATH?scale=1000, synthetic:PATH or synthetic:default")
MODEL_HELP = "model file: .safetensors, a training checkpoint (.ckpt), an ONNX export (.onnx) or an OpenVINO IR (.xml)"
PRETRAINED_HELP = ("; or the name of a pretrained model (meter_xxs_nyu, ...: seldepth models --pretrained), downloaded "
                   "and converted once, then read from the cache")
ALLOW_UNVERIFIED_HELP = ("download a pretrained model whose sha256 is not known (the sha256 of the file downloaded is "
                         "recorded in the model file and printed)")
HEAD_HELP = "output head of a multi-head model (realtime_depth: L, M, S, XS); computes only up to it"
PROTOCOL_HELP = ("nyu (1e-3..10 m, Eigen crop), kitti (1e-3..80 m, Garg crop), kitti_eigen (Eigen crop), synthetic "
                 "(no crop), none; null: from the data spec's kind (nyu:, kitti:, synthetic:), else from the model's "
                 "metadata")


def _add_model(p: ArgumentParser, help: str = MODEL_HELP) -> None:
    p.add_argument("--model", type=str, required=True, help=help + PRETRAINED_HELP)
    _add_allow_unverified(p)


def _add_allow_unverified(p: ArgumentParser) -> None:
    p.add_argument("--allow-unverified", action="store_true", help=ALLOW_UNVERIFIED_HELP)


def _add_device(p: ArgumentParser) -> None:
    p.add_argument("--device", type=str, default=DEFAULT_DEVICE,
                   help="where the model runs: auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps")


def _add_data(p: ArgumentParser, split: str = DEFAULT_SPLIT) -> None:
    p.add_argument("--data", type=str, required=True, help=DATA_HELP)
    p.add_argument("--split", type=str, default=split, help="split where the layout has several")
    p.add_argument("--on-error", type=str, default="stop", choices=["stop", "skip"],
                   help="a bad file stops with its name (stop) or is skipped, counted and listed at the end (skip)")


def _add_loader(p: ArgumentParser, batch_size: int = DEFAULT_BATCH_SIZE, workers: bool = True) -> None:
    p.add_argument("--batch-size", type=PositiveInt, default=batch_size, help="images per forward pass")
    if workers:
        p.add_argument("--num-workers", type=NonNegativeInt, default=DEFAULT_NUM_WORKERS,
                       help="data loader processes (0: load in the main process)")


def _add_bins(p: ArgumentParser, help: str) -> None:
    p.add_argument("--bins", type=str, default=DEFAULT_BINS, help=help)
    p.add_argument("--depth-range", type=Numbers, default=Numbers(DEFAULT_DEPTH_RANGE), metavar="MIN,MAX",
                   help="valid ground truth min,max in metres")


# ---------------------------------------------------------------------------------------------
# Helpers of the commands (they import the library: only once a command runs)
# ---------------------------------------------------------------------------------------------

def _note(command: str, text: str) -> None:
    """A status line (device chosen, steps of long work) on stderr, apart from the results on stdout."""
    print(f"seldepth {command}: {text}", file=sys.stderr, flush=True)


def _check_output(path, kind: str, key: str = "--out") -> None:
    from seldepth.atomic import check_output

    check_output(path, kind, key=key)


def _load_model(path: str, device: str, command: str, allow_unverified: bool = False):
    """``load_model(path)`` (a model file or a pretrained model's name) on the device ``--device`` names; says which
    device and why."""
    from seldepth.inference import choose_device
    from seldepth.models.loading import load_model

    chosen, reason = choose_device(device)
    model = load_model(path, device=chosen, allow_unverified=allow_unverified)
    _note(command, f"device {chosen} ({reason})")
    return model


def _model_file(source: str, allow_unverified: bool = False, key: str = "--model") -> str:
    """The model file ``source`` names (a pretrained model's name: its cached model file, downloaded if need be),
    for the commands that take a path; a missing one is named with ``key``."""
    from seldepth.models.loading import resolve_model_file

    try:
        return str(resolve_model_file(source, allow_unverified=allow_unverified))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{key}: {exc}") from None


def _open_data(args: Namespace):
    """Open ``--data`` (split, on-error policy) and print the layout found, before any work."""
    from seldepth.data.spec import describe_dataset, open_dataset

    dataset = open_dataset(args.data, split=args.split, on_error=args.on_error, key="--data")
    print(f"{args.data} (split {args.split}): {describe_dataset(dataset)}")
    return dataset


def _protocol(name: str | None, data: str, model=None, **options):
    """The protocol ``--protocol`` names, or the data spec's / model's one (printed with the reason)."""
    from seldepth.evaluation.protocol import get_protocol, protocol_for_data

    if name is None:
        name, reason = protocol_for_data(data, model)
        print(f"protocol {name}: {reason} (--protocol to choose another)")
    return get_protocol(name, **options)


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


class NothingProduced(Exception):
    """The command ran but produced nothing (every input skipped, no image scored): exit status 1."""


def _check_produced(args: Namespace, dataset, count: int, verb: str) -> None:
    """Say which model ran on which data; with no image ``verb`` (scored, dissected), list the skipped samples and
    stop with exit status 1 (:class:`NothingProduced`)."""
    print(f"model {args.model} on {args.data} ({len(dataset)} images, split {args.split})")
    if not count:
        _report_skipped(dataset)
        raise NothingProduced(f"no image of {args.data} (split {args.split}) was {verb}")


# ---------------------------------------------------------------------------------------------
# The commands: arguments, then what they run
# ---------------------------------------------------------------------------------------------

def args_predict(p: ArgumentParser) -> None:
    p.add_argument("inputs", type=str, nargs="+", metavar="INPUT",
                   help="image file, folder (searched recursively), text file listing image paths, or video "
                        "(.mp4/.avi/.mov/.mkv/.webm)")
    p.add_argument("--model", type=str, default=DEFAULT_PREDICT_MODEL, help=MODEL_HELP + PRETRAINED_HELP)
    _add_allow_unverified(p)
    p.add_argument("--out", type=str, default=DEFAULT_PREDICT_OUT,
                   help="output folder (sub-folders of a folder input are kept)")
    p.add_argument("--outputs", type=str | None, default=None, metavar="NAMES",
                   help=f"what to write per image, comma-separated, of {','.join(IMAGE_OUTPUTS)}: float32 metres (.npy), "
                        "16-bit PNG, colour-mapped depth, image and colour-mapped depth side by side, point cloud; "
                        "per video color (.mp4), side (.mp4) and npy (null: "
                        f"{','.join(DEFAULT_OUTPUTS)} per image, color per video)")
    p.add_argument("--cmap", type=str, default=DEFAULT_CMAP,
                   help="matplotlib colour map of the pictures; near is its low end, far its high end (turbo: near "
                        "blue, far red)")
    p.add_argument("--grayscale", action="store_true", help="grayscale pictures: near black, far white")
    p.add_argument("--png-compression", type=NonNegativeInt, default=DEFAULT_PNG_COMPRESSION,
                   help="zlib level of the PNGs, 0..9 (higher: smaller and slower)")
    p.add_argument("--sequential", action="store_true",
                   help="read, predict and write one step after another on one thread instead of overlapping them")
    _add_loader(p, workers=False)
    _add_device(p)
    p.add_argument("--range", type=Numbers | None, default=None, metavar="MIN,MAX",
                   help="fixed colour range in metres (null: per image; per video from its first frames)")
    p.add_argument("--ply", action="store_true", help="also write NAME.ply point clouds (needs intrinsics)")
    p.add_argument("--fx", type=float | None, default=None, help="focal length in pixels (with --fy --cx --cy) for --ply")
    p.add_argument("--fy", type=float | None, default=None, help="null: --fx")
    p.add_argument("--cx", type=float | None, default=None, help="principal point in pixels (null: the image centre)")
    p.add_argument("--cy", type=float | None, default=None, help="null: the image centre")
    p.add_argument("--fov", type=float | None, default=None,
                   help="horizontal field of view in degrees instead of --fx/--fy (principal point at the centre)")
    p.add_argument("--video-npy", action="store_true", help="also save each video's depth frames as NAME_depth.npy (T, H, W)")
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time averaging")
    p.add_argument("--png-scale", type=float | None, default=None,
                   help="values per metre in the 16-bit depth PNGs (null: the model file's; 1000 for indoor models, "
                        "256 for KITTI models, KITTI's own convention); depth beyond 65535 / scale m is clipped "
                        "with a warning that counts the pixels")


def cmd_predict(args: Namespace) -> None:
    from seldepth.prediction import check_predict_args, predict_paths, resolve_intrinsics

    _check_output(args.out, "folder")
    intrinsics = resolve_intrinsics(args.fx, args.fy, args.cx, args.cy, args.fov)
    check_predict_args(args.outputs, args.cmap, args.grayscale, args.png_compression)  # before the model is read
    model = _load_model(args.model, args.device, "predict", args.allow_unverified)
    summary = predict_paths(model, args.inputs, args.out, batch_size=args.batch_size,
                            depth_range=None if args.range is None else tuple(args.range),
                            ply=args.ply, intrinsics=intrinsics, flip=args.flip, video_npy=args.video_npy,
                            png_scale=args.png_scale, outputs=args.outputs, cmap=args.cmap, grayscale=args.grayscale,
                            png_compression=args.png_compression, sequential=args.sequential)
    print(summary.format(args.out))
    if summary.images == 0 and summary.videos == 0:
        raise NothingProduced("no image or video was predicted" + (" (every input was skipped)" if summary.skipped else ""))


def args_eval(p: ArgumentParser) -> None:
    _add_model(p)
    _add_data(p)
    p.add_argument("--protocol", type=str | None, default=None, help=PROTOCOL_HELP)
    p.add_argument("--flip", action="store_true", help="horizontal-flip test-time averaging")
    p.add_argument("--caps", type=Numbers, default=Numbers(), help="extra depth caps in metres, e.g. 4,6,8")
    p.add_argument("--median-scaling", action="store_true",
                   help="scale each prediction by median(gt) / median(pred) first (depth up to scale: self-supervised "
                        "models); prints the ratios' mean and spread")
    _add_loader(p)
    _add_device(p)
    p.add_argument("--head", type=str | None, default=None, help=HEAD_HELP)
    p.add_argument("--json", type=str | None, default=None,
                   help="also write the results to this JSON file (NaN metrics as null)")


def cmd_eval(args: Namespace) -> None:
    from seldepth.atomic import write_json_atomic
    from seldepth.evaluation import evaluate, format_table
    from seldepth.models.base import with_head

    if args.json:
        _check_output(args.json, "file", key="--json")
    options = dict(flip=args.flip, caps=tuple(args.caps), median_scaling=args.median_scaling)
    # a named protocol is built (an unknown name fails) before the model is read; else it comes from data and model
    protocol = _protocol(args.protocol, args.data, **options) if args.protocol is not None else None
    model = with_head(_load_model(args.model, args.device, "eval", args.allow_unverified), args.head)
    dataset = _open_data(args)
    protocol = protocol or _protocol(None, args.data, model, **options)
    result = evaluate(model, dataset, protocol, batch_size=args.batch_size, num_workers=args.num_workers)
    result["model"] = str(args.model)
    result["data"] = args.data
    _check_produced(args, dataset, result["num_images"], "scored")
    print(format_table(result, protocol))
    _report_skipped(dataset)
    if args.json:
        write_json_atomic(args.json, result)
        print(f"wrote {args.json}")


def args_import_meter(p: ArgumentParser) -> None:
    p.add_argument("weights", type=str, help="official METER state_dict, e.g. build_model_best_nyu_xxs")
    p.add_argument("--variant", type=str | None, default=None, choices=["xxs", "xs", "s", None], metavar="{xxs,xs,s}",
                   help="METER variant (null: read from the tensor shapes)")
    p.add_argument("--dataset", type=str | None, default=None, choices=["nyu", "kitti", None], metavar="{nyu,kitti}",
                   help="data set the weights were trained on; sets input size and output unit "
                        "(null: from the official file name)")
    p.add_argument("--out", type=str, required=True, help="output model file (.safetensors)")


def cmd_import_meter(args: Namespace) -> None:
    from seldepth.models.import_meter import import_meter

    _check_output(args.out, "file")
    model = import_meter(args.weights, variant=args.variant, dataset=args.dataset, out=args.out)
    provenance = model.metadata["provenance"]
    print(f"wrote {args.out}: {model.name}, {model.num_parameters():,} parameters, output in metres "
          f"({provenance['unit_conversion']}), sha256 of source {provenance['sha256'][:12]}...")


def args_export(p: ArgumentParser) -> None:
    _add_model(p, "model file (.safetensors) or training checkpoint (.ckpt)")
    p.add_argument("--format", type=str, default="onnx",
                   help="export format: onnx, openvino (an OpenVINO IR converted from the checked ONNX export), or best "
                        "(every path benchmarked as seldepth bench --pick does; the fastest within --max-rmse-increase "
                        "of ONNX Runtime FP32's RMSE on --data, never slower than it, written to --out with its suffix)")
    p.add_argument("--out", type=str, required=True,
                   help="output .onnx file (with --int8 the FP32 file goes beside it as NAME_fp32.onnx); with --format "
                        "openvino an .xml file, its weights beside it as NAME.bin")
    p.add_argument("--precision", type=str | None, default=None,
                   help="OpenVINO IR precision, only with --format openvino: f32, bf16 (same weights, computed in BF16 "
                        "where the CPU has it) or int8 (NNCF, needs --calibration; the output stage stays FP32); "
                        "null: f32")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width (multiples of the model's size multiple)")
    p.add_argument("--opset", type=PositiveInt | None, default=None, help="ONNX opset (null: the exporter's)")
    p.add_argument("--int8", action="store_true",
                   help="static INT8 quantisation with ONNX Runtime (needs --calibration; --format onnx)")
    p.add_argument("--calibration", type=str | None, default=None,
                   help="data spec of calibration images, e.g. nyu:PATH (see seldepth eval --help)")
    p.add_argument("--calibration-images", type=PositiveInt, default=DEFAULT_CALIBRATION_IMAGES, help="calibration images")
    p.add_argument("--split", type=str, default=DEFAULT_SPLIT, help="split of the calibration data")
    p.add_argument("--head", type=str | None, default=None, help=HEAD_HELP)
    p.add_argument("--data", type=str | None, default=None,
                   help="with --format best: data spec on which each path's RMSE is measured (and, without "
                        "--calibration, calibrated)")
    p.add_argument("--max-rmse-increase", type=NonNegativeFloat, default=DEFAULT_MAX_RMSE_INCREASE,
                   help="with --format best: the RMSE a path may add, relative to ONNX Runtime FP32's (0.01: 1%%)")
    p.add_argument("--threads", type=PositiveInt, default=DEFAULT_THREADS,
                   help="with --format best: the threads every path is timed with (those it will run with)")


def cmd_export(args: Namespace) -> None:
    from seldepth.deploy.onnx_export import check_export_args, export_onnx
    from seldepth.deploy.quantize import quantize_int8
    from seldepth.models.base import with_head
    from seldepth.models.loading import load_model

    check_export_args(args.format, args.int8, args.calibration, precision=args.precision, out=args.out, data=args.data)
    _check_output(args.out, "file")
    if args.format == "best":
        from seldepth.deploy.bench import benchmark_and_pick, format_benchmark, format_pick

        _note("export", "benchmarking every path to pick the fastest within the budget ...")
        result = benchmark_and_pick(args.model, args.out, args.data, args.max_rmse_increase,
                                    int8_calibration=args.calibration, int8_images=args.calibration_images,
                                    threads=args.threads, compile=False, head=args.head, progress=True,
                                    allow_unverified=args.allow_unverified)
        print(format_benchmark(result))
        print(format_pick(result))
        return
    model = with_head(load_model(args.model, allow_unverified=args.allow_unverified), args.head)
    dataset = None
    if args.int8 or (args.format == "openvino" and args.calibration):
        from seldepth.data.spec import describe_dataset, open_dataset

        dataset = open_dataset(args.calibration, split=args.split, key="--calibration")
        print(f"calibration {args.calibration}: {describe_dataset(dataset)}")
    out = Path(args.out)
    if args.format == "openvino":
        _export_openvino(args, model, dataset)
        return
    fp32_out = out.with_name(out.stem + "_fp32.onnx") if args.int8 else out
    check = [dataset[i]["image"] for i in range(min(2, len(dataset)))] if dataset is not None else None
    info = export_onnx(model, fp32_out, dynamic=args.dynamic, opset=args.opset, check_images=check, source=args.model,
                       progress=lambda message: _note("export", message))
    shape = (f"dynamic batch and HxW (multiples of {getattr(model, 'size_multiple', 1)})" if args.dynamic
             else "x".join(map(str, info["input_size"])))
    print(f"wrote {fp32_out}: {model.name}, opset {info['opset']}, input {shape}; "
          f"max abs diff vs torch {info['max_abs_diff_m']:.2e} m over {info['checked_inputs']} inputs")
    if args.int8:
        _note("export", f"quantising to INT8 with ONNX Runtime on {args.calibration_images} calibration images ...")
        q = quantize_int8(fp32_out, out, dataset, num_images=args.calibration_images)
        print(f"wrote {out}: INT8 ({q['settings']['quant_format']}, per-channel {q['settings']['per_channel']}, "
              f"{q['num_images']} calibration images); vs FP32 max abs diff {q['max_abs_diff_m']:.3f} m, "
              f"mean {q['mean_abs_diff_m']:.4f} m")


def _export_openvino(args: Namespace, model, dataset) -> None:
    """``seldepth export --format openvino``: the checked ONNX export to a temporary file, then the IR from it."""
    import tempfile

    from seldepth.deploy.onnx_export import export_onnx
    from seldepth.deploy.openvino_export import export_openvino

    out, precision = Path(args.out), args.precision or "f32"
    check = [dataset[i]["image"] for i in range(min(2, len(dataset)))] if dataset is not None else None
    with tempfile.TemporaryDirectory() as tmpdir:
        onnx_path = Path(tmpdir) / f"{out.stem}.onnx"
        info = export_onnx(model, onnx_path, dynamic=args.dynamic, opset=args.opset, check_images=check,
                           source=args.model, progress=lambda message: _note("export", message))
        print(f"checked the ONNX export of {model.name}: opset {info['opset']}, input "
              f"{'dynamic' if args.dynamic else 'x'.join(map(str, info['input_size']))}; "
              f"max abs diff vs torch {info['max_abs_diff_m']:.2e} m over {info['checked_inputs']} inputs")
        what = (f"quantising to INT8 with NNCF on {args.calibration_images} calibration images" if precision == "int8"
                else f"converting to OpenVINO ({precision})")
        _note("export", f"{what} ...")
        ov_info = export_openvino(onnx_path, out, precision=precision, calibration=dataset,
                                  num_images=args.calibration_images)
    kept = f"; kept in FP32: {', '.join(ov_info['ignored'])}" if ov_info["ignored"] else ""
    print(f"wrote {out} and {ov_info['weights']}: OpenVINO IR, precision {precision}{kept}; "
          f"vs ONNX Runtime FP32 max abs diff {ov_info['max_abs_diff_m']:.2e} m, mean {ov_info['mean_abs_diff_m']:.2e} m "
          f"over {ov_info['checked_inputs']} inputs")


def args_bench(p: ArgumentParser) -> None:
    _add_model(p, "model file (.safetensors) or training checkpoint (.ckpt)")
    p.add_argument("--size", type=str, default=DEFAULT_SIZE_TEXT, metavar="HxW", help="network input, HxW (height x width)")
    p.add_argument("--threads", type=PositiveInt, default=DEFAULT_THREADS,
                   help="torch threads, ONNX Runtime intra-op threads and OpenVINO inference threads")
    p.add_argument("--runs", type=PositiveInt, default=DEFAULT_RUNS, help="timed calls per backend")
    p.add_argument("--warmup", type=NonNegativeInt, default=DEFAULT_WARMUP, help="untimed calls per backend first")
    _add_device(p)
    p.add_argument("--data", type=str | None, default=None,
                   help="data spec on which the RMSE of each path is measured, e.g. nyu:PATH (null: no RMSE)")
    p.add_argument("--calibration", type=str | None, default=None,
                   help="data spec of INT8 calibration images (null: --data; without either, no INT8 paths)")
    p.add_argument("--calibration-images", type=PositiveInt, default=DEFAULT_CALIBRATION_IMAGES, help="calibration images")
    p.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO paths (FP32, BF16, INT8)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-budget", type=PositiveFloat, default=DEFAULT_COMPILE_BUDGET_S,
                   help="seconds torch.compile's first call may take")
    p.add_argument("--head", type=str | None, default=None, help=HEAD_HELP)
    p.add_argument("--pick", action="store_true",
                   help="choose the fastest path within --max-rmse-increase of ORT FP32's RMSE on --data, never slower "
                        "than ORT FP32, and write its file to --out")
    p.add_argument("--max-rmse-increase", type=NonNegativeFloat, default=DEFAULT_MAX_RMSE_INCREASE,
                   help="the RMSE a picked path may add, relative to ORT FP32's (0.01: 1%%)")
    p.add_argument("--out", type=str | None, default=None,
                   help="with --pick: the file written; its suffix becomes the path's (.onnx, or .xml + .bin)")
    p.add_argument("--json", type=str | None, default=None, help="also write the results to this JSON file (NaN as null)")


def cmd_bench(args: Namespace) -> None:
    from seldepth.atomic import write_json_atomic
    from seldepth.deploy.bench import (
        benchmark,
        benchmark_and_pick,
        check_benchmark_args,
        format_benchmark,
        format_pick,
        parse_size,
    )
    from seldepth.inference import choose_device

    size = parse_size(args.size, key="--size")
    check_benchmark_args(args.model, size, args.threads, args.runs, args.warmup)
    if args.pick and not (args.data and args.out):
        raise ValueError("--pick needs --data (the RMSE of each path) and --out (the file of the path picked)")
    if args.out and not args.pick:
        raise ValueError("--out is the file of --pick; give --pick too")
    _model_file(args.model, args.allow_unverified)  # missing: fails before any work; a pretrained name: downloaded now
    if args.json:
        _check_output(args.json, "file", key="--json")
    if args.out:
        _check_output(args.out, "file")
    device, reason = choose_device(args.device)
    _note("bench", f"torch backends on {device} ({reason}); ONNX Runtime and OpenVINO on the CPU")
    options = dict(size=size, threads=args.threads, runs=args.runs, warmup=args.warmup,
                   int8_calibration=args.calibration, int8_images=args.calibration_images,
                   compile=not args.no_compile, compile_budget_s=args.compile_budget, progress=True, head=args.head,
                   device=device, allow_unverified=args.allow_unverified, openvino=not args.no_openvino)
    if args.pick:
        result = benchmark_and_pick(args.model, args.out, args.data, args.max_rmse_increase, **options)
    else:
        result = benchmark(args.model, data=args.data, **options)
    print(format_benchmark(result))
    if args.pick:
        print(format_pick(result))
    if args.json:
        write_json_atomic(args.json, result)
        print(f"wrote {args.json}")


def args_models(p: ArgumentParser) -> None:
    p.add_argument("--size", type=str, default=DEFAULT_SIZE_TEXT, metavar="HxW", help="input of the FLOP count, HxW (height x width)")
    p.add_argument("--pretrained", action="store_true",
                   help="list the pretrained models instead (name, size, licence, checksum, cached or not)")
    p.add_argument("--download", type=str | None, default=None, metavar="NAME",
                   help="download and convert the pretrained model NAME into the cache (then list the pretrained models)")
    _add_allow_unverified(p)


def _print_pretrained() -> None:
    """The table of ``seldepth models --pretrained``."""
    from seldepth.defaults import CACHE_ENV, cache_dir
    from seldepth.models.pretrained import MIRROR_ENV, pretrained_status

    rows = pretrained_status()
    print(f"{'name':16s} {'size':>9s}  {'licence':7s}  {'checksum':10s}  cached")
    for r in rows:
        size = f"{r['size'] / 1e6:.1f} MB" if r["size"] else "unknown"
        cached = str(r["cached"]) if r["cached"] else "not cached"
        if r["cached"] and not r["verified"]:
            cached += f" (sha256 {r['sha256']}, recorded at download)"
        print(f"{r['name']:16s} {size:>9s}  {r['licence']:7s}  {'verified' if r['verified'] else 'unverified':10s}  {cached}")
    mirror = os.environ.get(MIRROR_ENV)
    source = f"from the mirror {mirror} (${MIRROR_ENV})" if mirror else f"from upstream (${MIRROR_ENV} sets a mirror)"
    print(f"cache: {cache_dir()} (${CACHE_ENV}); downloads {source}; an unverified model downloads only with "
          f"--allow-unverified")


def cmd_models(args: Namespace) -> None:
    if args.download:
        from seldepth.models.model_file import read_metadata
        from seldepth.models.pretrained import pretrained_file

        path = pretrained_file(args.download, allow_unverified=args.allow_unverified)
        print(f"{args.download}: {path} (sha256 of the source file "
              f"{read_metadata(path)['provenance'].get('sha256')})")
    if args.pretrained or args.download:
        _print_pretrained()
        return
    from seldepth.data.synthetic import parse_size
    from seldepth.deploy.bench import model_costs
    from seldepth.models import list_models

    h, w = parse_size(args.size, key="--size")
    for name in list_models():
        costs = model_costs(name, (h, w), cache=True, progress=True)
        print(f"{name:14s} {costs['parameters']:>10,} parameters  {costs['flops'] / 1e9:7.3f} GFLOPs at {h}x{w} "
              "(2 FLOPs per multiply-add)", flush=True)


def cmd_train(argv: list[str]) -> None:
    from seldepth.training import train
    from seldepth.training.config import parse_train_args

    cfg, resume = parse_train_args(argv)
    _quiet_lightning()
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


def args_synth(p: ArgumentParser) -> None:
    p.add_argument("--out", type=str, required=True, help="output folder")
    p.add_argument("--num", type=PositiveInt, default=DEFAULT_SCENES, help="number of scenes (frames = num x sequence length)")
    p.add_argument("--size", type=str, default=DEFAULT_SIZE_TEXT, metavar="HxW", help="image size, HxW (height x width)")
    p.add_argument("--seed", type=NonNegativeInt, default=0, help="data set seed")
    p.add_argument("--sequence-length", type=PositiveInt, default=1, help="frames per scene along a smooth camera path")
    p.add_argument("--preview", action="store_true", help="also write preview.png, a contact sheet")
    p.add_argument("--num-workers", type=PositiveInt, default=DEFAULT_RENDER_WORKERS, help="rendering processes")


def cmd_synth(args: Namespace) -> None:
    from seldepth.data.synthetic import generate, parse_size

    if args.size.strip().lower() == OLD_SYNTH_SIZE:
        raise ValueError(f"--size is HxW (height x width) since 0.2: did you mean {DEFAULT_SIZE_TEXT}? "
                         f"({OLD_SYNTH_SIZE} was the old width x height default)")
    size = parse_size(args.size, key="--size")
    _check_output(args.out, "folder")
    info = generate(args.out, args.num, size=size, seed=args.seed, sequence_length=args.sequence_length,
                    preview=args.preview, workers=args.num_workers)
    print(f"wrote {info['num_frames']} frames of {size[0]}x{size[1]} (HxW) to {args.out} (splits {info['splits']})"
          + (f"; contact sheet {Path(args.out) / 'preview.png'}" if args.preview else ""))


def args_demo(p: ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="a smaller, faster run (about 3 minutes on 2 cores)")
    p.add_argument("--out", type=str | None, default=None, help="run folder (null: runs/demo, or runs/demo_quick with --quick)")


def cmd_demo(args: Namespace) -> None:
    from seldepth.experiments.demo import run_demo

    if args.out:
        _check_output(args.out, "folder")
    _quiet_lightning()
    run_demo(quick=args.quick, out_dir=args.out)


def args_report(p: ArgumentParser) -> None:
    p.add_argument("run_dirs", type=str, nargs="+", metavar="RUN_DIR",
                   help="run folders written by seldepth train, or experiment folders (seldepth experiment --out), "
                        "each standing for its runs in the experiment's order; both can be mixed")
    p.add_argument("--out", type=str, default="report.html", help="output HTML file")
    p.add_argument("--samples", type=NonNegativeInt, default=DEFAULT_REPORT_SAMPLES,
                   help="test images in the prediction grid (0: none)")
    _add_device(p)


def cmd_report(args: Namespace) -> None:
    from seldepth.inference import choose_device
    from seldepth.report.html import write_report

    _check_output(args.out, "file")
    device, reason = choose_device(args.device)
    _note("report", f"device {device} ({reason})")
    path = write_report(args.run_dirs, args.out, samples=args.samples, device=device)
    print(path)


def args_dissect(p: ArgumentParser) -> None:
    _add_model(p, "model file (.safetensors) or training checkpoint (.ckpt)")
    _add_data(p)
    p.add_argument("--layers", type=str | None, default=None,
                   help="comma-separated layer names or module paths (null: the model's selectivity layers)")
    _add_bins(p, "bin scheme, e.g. sid:64, linear:32, log:32, quantile:64, sid:64:alpha=3,beta=80 (layer with K "
                 "units: min(N, K) bins)")
    _add_loader(p)
    _add_device(p)
    p.add_argument("--out", type=str, default="runs/dissect", help="output folder")


def cmd_dissect(args: Namespace) -> None:
    from seldepth.report.selectivity_plots import save_selectivity_plots
    from seldepth.selectivity.dissect import dissect, format_table, resolve_layers

    model = _load_model(args.model, args.device, "dissect", args.allow_unverified)
    resolve_layers(model, args.layers)  # unknown names fail before any data is read
    _check_output(args.out, "folder")
    dataset = _open_data(args)
    result = dissect(model, dataset, layers=args.layers, bins=args.bins, depth_range=tuple(args.depth_range),
                     batch_size=args.batch_size, num_workers=args.num_workers)
    result.info.update(model=str(args.model), data=args.data, split=args.split)
    _check_produced(args, dataset, result.num_images, "dissected")
    print(format_table(result))
    _report_skipped(dataset)
    paths = result.save(args.out)
    plots = save_selectivity_plots(result, args.out)
    print(f"wrote {paths['json']}, {paths['npz']} and {len(plots)} plots in {args.out}")


def args_prune(p: ArgumentParser) -> None:
    _add_model(p, "model file of a METER (meter_xxs, meter_xs, meter_s) or a realtime_depth, pruned or not: "
                  ".safetensors or a training checkpoint (.ckpt)")
    p.add_argument("--criterion", type=str, required=True,
                   help="which channels go first: ds (the least depth-selective, measured on --data), ds-inverse (the "
                        "most selective), l1 (the smallest filter L1 norm), random (draw --draw)")
    p.add_argument("--flops", type=float, required=True, metavar="F",
                   help="FLOPs kept, as a fraction of the model's, in (0, 1]")
    p.add_argument("--data", type=str | None, default=None, help="with --criterion ds / ds-inverse: " + DATA_HELP)
    p.add_argument("--split", type=str, default=DEFAULT_SPLIT, help="split where the layout has several")
    p.add_argument("--on-error", type=str, default="stop", choices=["stop", "skip"],
                   help="a bad file stops with its name (stop) or is skipped, counted and listed at the end (skip)")
    p.add_argument("--size", type=str | None, default=None, metavar="HxW",
                   help="input at which FLOPs are counted, HxW (null: the model's input size)")
    p.add_argument("--draw", type=NonNegativeInt, default=0, help="with --criterion random: the random draw")
    p.add_argument("--min-keep", type=NonNegativeFloat, default=DEFAULT_MIN_KEEP,
                   help="every prunable width keeps at least this fraction of its channels ...")
    p.add_argument("--min-channels", type=PositiveInt, default=DEFAULT_MIN_CHANNELS,
                   help="... and at least this many (all, when fewer)")
    p.add_argument("--round-to", type=PositiveInt, default=DEFAULT_ROUND_TO,
                   help="every kept width rounded up to a multiple of this (or the layer's whole width): CPU kernels "
                        "of ONNX Runtime and OpenVINO work on blocks of 8 or 16 channels (1: no rounding)")
    p.add_argument("--normalise", type=str, default="rank", choices=["rank", "none"],
                   help="scores compared across layers as ranks within their layer (rank: every layer loses about "
                        "the same share) or as they are (none)")
    _add_bins(p, "with --criterion ds / ds-inverse: bin scheme of the dissection (as seldepth dissect)")
    _add_loader(p)
    _add_device(p)
    p.add_argument("--finetune-epochs", type=int, default=0, metavar="N",
                   help="then fine-tune the pruned model for N epochs with the training pipeline (0: no fine-tuning)")
    p.add_argument("--train-config", type=str | None, default=None, metavar="TRAIN.yaml",
                   help="with --finetune-epochs: the training config to fine-tune with (as seldepth train --config; "
                        "its model_options get the pruned widths, init_from the pruned model, trainer.epochs N, "
                        "trainer.out_dir the run folder); null: the config recorded in --model by seldepth train")
    p.add_argument("--out", type=str, required=True,
                   help="output model file (.safetensors): the pruned model; with --finetune-epochs the fine-tuned "
                        "one, its run folder OUT_finetune/ beside it (pruned.safetensors in it: before fine-tuning)")


def _finetune_source(args: Namespace, model):
    """The training config of ``--finetune-epochs``: ``--train-config``, else the one ``--model`` records."""
    from seldepth.pruning.finetune import recorded_train_config

    if args.train_config:
        return args.train_config
    recorded = recorded_train_config(model)
    if recorded is None:
        raise ValueError(f"--train-config is needed by --finetune-epochs: {args.model} records no training config "
                         f"(a model not trained by seldepth train); give the config to fine-tune with")
    return recorded


def cmd_prune(args: Namespace) -> None:
    from seldepth.data.synthetic import parse_size
    from seldepth.pruning.criteria import DATA_CRITERIA, check_criterion
    from seldepth.pruning.finetune import (
        PRUNED_FILE,
        check_finetune_args,
        finetune_pruned,
        finetune_run_dir,
    )
    from seldepth.pruning.pipeline import (
        check_out,
        check_prune_args,
        check_source,
        prune,
        save_pruned,
    )
    from seldepth.pruning.plan import check_flops_fraction

    check_criterion(args.criterion)
    check_flops_fraction(args.flops)
    check_number("finetune_epochs", args.finetune_epochs, 0, integer=True)
    check_source(args.model)
    uses_data = args.criterion in DATA_CRITERIA
    if uses_data and not args.data:
        raise ValueError(f"--data is needed by --criterion {args.criterion} (the depth selectivity is measured on it)")
    size = parse_size(args.size, key="--size") if args.size else None
    check_out(args.out)
    _check_output(args.out, "file")
    finetune = args.finetune_epochs > 0
    run_dir = finetune_run_dir(args.out) if finetune else None
    if finetune:
        _check_output(run_dir, "folder", key="fine-tuning run folder")
        if args.train_config and not Path(args.train_config).is_file():
            raise FileNotFoundError(f"--train-config: {args.train_config} not found")
    elif args.train_config:
        _note("prune", "--train-config is not used without --finetune-epochs")
    model = _load_model(args.model, args.device, "prune", args.allow_unverified)
    preprocessing = getattr(model, "preprocessing", None)
    size = size or tuple((preprocessing.input_size if preprocessing else None) or DEFAULT_SIZE)
    dataset = _open_data(args) if uses_data else None
    if args.data and not uses_data:
        _note("prune", f"--data is not used by --criterion {args.criterion}")
    options = {"size": size, "min_keep": args.min_keep, "min_channels": args.min_channels, "normalise": args.normalise,
               "round_to": args.round_to}
    check_prune_args(model, args.criterion, args.flops, dataset, **options)  # before any dissection
    train_config = None
    if finetune:  # the training config, its data and the run folder, before any dissection too
        train_config = _finetune_source(args, model)
        check_finetune_args(model, train_config, args.finetune_epochs, run_dir)
    result = prune(model, args.criterion, args.flops, dataset, draw=args.draw, bins=args.bins,
                   depth_range=tuple(args.depth_range), batch_size=args.batch_size, num_workers=args.num_workers,
                   **options)
    if uses_data:
        _report_skipped(dataset)
    pruned_path = run_dir / PRUNED_FILE if finetune else args.out
    path = save_pruned(result, pruned_path, source=args.model, data=args.data, split=args.split)
    plan = result.plan
    print(f"{model.name} pruned by {args.criterion} to {plan.achieved_fraction:.3f} of its FLOPs at {size[0]}x{size[1]} "
          f"(asked {plan.target_fraction:g}; {plan.removed} channels removed)")
    print(f"{'':8s} {'parameters':>12s} {'GFLOPs':>8s}")
    print(f"{'before':8s} {result.parameters_before:>12,} {plan.flops_before / 1e9:>8.3f}")
    print(f"{'after':8s} {result.parameters_after:>12,} {plan.flops_after / 1e9:>8.3f}")
    print(f"wrote {path}")
    if finetune:
        from seldepth.training.run_folder import RunFolder

        _note("prune", f"fine-tuning for {args.finetune_epochs} epochs in {run_dir}")
        _quiet_lightning()
        path = finetune_pruned(pruned_path, train_config, args.finetune_epochs, run_dir, args.out)
        results = RunFolder(run_dir).results
        _print_run_results(str(run_dir), results)
        epochs = f"{args.finetune_epochs} epoch{'s' if args.finetune_epochs > 1 else ''}"
        print(f"wrote {path} (fine-tuned {epochs}; before fine-tuning: {pruned_path})")


def args_ablate(p: ArgumentParser) -> None:
    _add_model(p, "model file (.safetensors) or training checkpoint (.ckpt)")
    _add_data(p)
    p.add_argument("--layer", type=str, required=True, help="one layer name or module path, e.g. enc_7")
    p.add_argument("--fractions", type=Numbers, default=Numbers(DEFAULT_FRACTIONS),
                   help="fractions of the layer's units to ablate")
    p.add_argument("--seeds", type=PositiveInt, default=DEFAULT_ABLATION_SEEDS, help="random draws of the random-k curve")
    p.add_argument("--mode", type=str, default="zero", choices=["zero", "mean"],
                   help="ablated units output 0 (zero) or their mean activation over the data set (mean)")
    _add_bins(p, "bin scheme of the dissection that ranks the units")
    p.add_argument("--protocol", type=str | None, default=None, help=PROTOCOL_HELP)
    _add_loader(p, batch_size=DEFAULT_ABLATION_BATCH_SIZE, workers=False)
    _add_device(p)
    p.add_argument("--by-bin", action="store_true",
                   help="ablation per depth range instead of the curves: group the units by depth range, ablate each "
                        "group and as many random units, and score each ground-truth depth range (--fractions unused)")
    p.add_argument("--groups", type=int, default=DEFAULT_BY_BIN_GROUPS,
                   help="with --by-bin: depth groups, the bins of --bins' kind and range (sid:64 -> sid:GROUPS)")
    p.add_argument("--group-by", type=str, default="preferred", choices=["preferred", "assigned"],
                   help="with --by-bin: group units by their preferred bin in a dissection, or by the bin a training "
                        "run's assign loss gave them (--assignment)")
    p.add_argument("--assignment", type=str | None, default=None,
                   help="with --group-by assigned: a training run's selectivity_assignment.json")
    p.add_argument("--units", type=str, default="all", choices=["all", "tuned"],
                   help="with --by-bin: group all units, or only those tuned to a depth range (not ramps, not flat)")
    p.add_argument("--out", type=str, default="runs/ablate", help="output folder")


def _ablate_by_bin(args: Namespace) -> None:
    """``seldepth ablate --by-bin``: :func:`seldepth.selectivity.ablation_by_bin.ablate_by_bin`."""
    from seldepth.report.by_bin_plots import save_by_bin
    from seldepth.selectivity.ablation_by_bin import (
        ablate_by_bin,
        check_by_bin_args,
        read_assignment,
    )

    if args.group_by == "assigned" and args.assignment is None:
        raise ValueError("--group-by assigned needs --assignment FILE (a training run's selectivity_assignment.json)")
    if args.group_by == "preferred" and args.assignment is not None:
        raise ValueError("--assignment is read only with --group-by assigned")
    grouping = read_assignment(args.assignment, args.layer) if args.assignment is not None else "preferred"
    model = _load_model(args.model, args.device, "ablate", args.allow_unverified)
    check_by_bin_args(model, args.layer, args.groups, grouping, args.seeds, args.mode)  # before any data is read
    _check_output(args.out, "folder")
    dataset = _open_data(args)
    protocol = _protocol(args.protocol, args.data, model)
    result = ablate_by_bin(model, dataset, args.layer, groups=args.groups, grouping=grouping, units=args.units,
                           seeds=args.seeds,
                           mode=args.mode, bins=args.bins, depth_range=tuple(args.depth_range), protocol=protocol,
                           batch_size=args.batch_size)
    result.info.update(model=str(args.model), data=args.data, split=args.split)
    _check_produced(args, dataset, result.num_images, "scored")
    print(result.format_table())
    _report_skipped(dataset)
    paths = save_by_bin(result, args.out)
    print(f"wrote {paths['json']}, {paths['csv']} and {paths['png']}")


def cmd_ablate(args: Namespace) -> None:
    from seldepth.report.ablation_plots import plot_ablation
    from seldepth.selectivity.ablation import ablate, check_ablation_args

    if args.by_bin:
        return _ablate_by_bin(args)
    model = _load_model(args.model, args.device, "ablate", args.allow_unverified)
    check_ablation_args(model, args.layer, tuple(args.fractions), args.seeds, args.mode)  # before any data is read
    _check_output(args.out, "folder")
    dataset = _open_data(args)
    protocol = _protocol(args.protocol, args.data, model)
    result = ablate(model, dataset, args.layer, fractions=tuple(args.fractions), seeds=args.seeds, mode=args.mode,
                    bins=args.bins, depth_range=tuple(args.depth_range), protocol=protocol, batch_size=args.batch_size)
    result.info.update(model=str(args.model), data=args.data, split=args.split)
    _check_produced(args, dataset, result.num_images, "scored")
    print(result.format_table())
    print("\n".join(result.verdicts()))
    _report_skipped(dataset)
    paths = result.save(args.out)
    plot = plot_ablation(result.to_dict(), Path(args.out) / "ablation.png")
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['md']} and {plot}")


def args_attention(p: ArgumentParser) -> None:
    _add_model(p, "model file (.safetensors) or training checkpoint (.ckpt); not .onnx")
    p.add_argument("--image", type=str, required=True, help="RGB image file")
    p.add_argument("--layers", type=str | None, default=None,
                   help="comma-separated layer names or module paths (null: the model's selectivity layers)")
    _add_device(p)
    p.add_argument("--out", type=str, default="runs/attention", help="output folder")


def cmd_attention(args: Namespace) -> None:
    from seldepth.data.images import read_rgb
    from seldepth.report.attention import capture_attention, check_attention_args, save_attention
    from seldepth.selectivity.dissect import resolve_layers

    # missing files and ONNX models fail before any work (a pretrained model is downloaded here if need be)
    check_attention_args(args.model, args.image, args.allow_unverified)
    model = _load_model(args.model, args.device, "attention", args.allow_unverified)
    resolve_layers(model, args.layers)  # unknown names fail before the image is read
    _check_output(args.out, "folder")
    image = read_rgb(args.image)
    result = capture_attention(model, image, args.layers)
    for path in save_attention(result, image, args.out, prefix=Path(args.image).stem):
        print(f"wrote {path}")


def _add_experiment(p: ArgumentParser, example: str, units: str) -> None:
    p.add_argument("experiment", type=str, metavar="EXPERIMENT", help=f"experiment YAML file, e.g. {example}")
    p.add_argument("--out", type=str, required=True, help="output folder (one sub-folder per run; finished trainings are kept)")
    p.add_argument("--quick", action="store_true", help="apply the file's quick: overrides (minutes instead of an hour)")
    p.add_argument("--jobs", type=PositiveInt | None, default=None, help=f"{units} trained at once (null: the file's jobs:)")


def args_experiment(p: ArgumentParser) -> None:
    _add_experiment(p, "configs/experiments/selectivity_meter_xxs.yaml", "runs")


def cmd_experiment(args: Namespace) -> None:
    from seldepth.experiments.runner import run_experiment

    _check_output(args.out, "folder")
    _quiet_lightning()
    start = time.time()
    summary = run_experiment(args.experiment, args.out, quick=args.quick, jobs=args.jobs)
    print(f"\n{(Path(args.out) / 'summary.md').read_text()}")
    print(f"experiment finished in {(time.time() - start) / 60:.1f} min ({summary['jobs']} runs at once); "
          f"{args.out}/summary.csv, summary.md, experiment.json; report: seldepth report {args.out}/*/ --out report.html")


def args_select(p: ArgumentParser) -> None:
    p.add_argument("--model", type=str, nargs="+", required=True, metavar="MODEL",
                   help="model file; several (--model a b c) for --method ensemble" + PRETRAINED_HELP)
    _add_allow_unverified(p)
    p.add_argument("--pool", type=str, required=True, help="the unlabelled images: " + DATA_HELP)
    p.add_argument("--split", type=str, default="train", help="split of the pool")
    p.add_argument("--budget", type=PositiveInt, required=True, help="number of images to choose")
    p.add_argument("--method", type=str, default="mc-dropout", choices=["mc-dropout", "ensemble", "random"],
                   help="how uncertainty is measured")
    p.add_argument("--passes", type=PositiveInt, default=DEFAULT_MC_PASSES, help="dropout passes per image (mc-dropout)")
    p.add_argument("--dropout", type=float, default=DEFAULT_MC_DROPOUT,
                   help="channel dropout probability on the decoder layers (mc-dropout)")
    p.add_argument("--exclude", type=str | None, default=None, help="a chosen list of images already labelled, left out of the choice")
    p.add_argument("--seed", type=NonNegativeInt, default=0, help="seed of the dropout masks and of random choices")
    _add_device(p)
    p.add_argument("--out", type=str, default="runs/select/chosen.txt",
                   help="output file: the chosen list (index<TAB>path lines); scores.csv goes beside it")


def cmd_select(args: Namespace) -> None:
    from seldepth.data.spec import open_dataset
    from seldepth.data.subsets import read_selection
    from seldepth.experiments.uncertainty import uncertainty_scores, write_selection

    _check_output(args.out, "file")
    models = [_load_model(m, args.device, "select", args.allow_unverified) for m in args.model]
    pool = open_dataset(args.pool, args.split, key="--pool")
    exclude = set(read_selection(args.exclude, len(pool), key="--exclude")) if args.exclude else set()
    if args.budget > len(pool) - len(exclude):
        raise ValueError(f"--budget {args.budget} is more than the {len(pool) - len(exclude)} unlabelled images of {args.pool}")
    scores = uncertainty_scores(models, pool, args.method, passes=args.passes, p=args.dropout, seed=args.seed)
    chosen = write_selection(scores, pool, args.budget, args.out, exclude)
    print(f"chose {len(chosen)} of {len(pool) - len(exclude)} unlabelled images by {args.method} "
          f"(uncertainty {float(scores[chosen].min()):.4g}..{float(scores[chosen].max()):.4g}; pool median "
          f"{float(scores.median()):.4g}): {args.out}, ranking in {Path(args.out).with_name('scores.csv')}; "
          f"train on them with --data.train_subset {args.out}")


def args_active(p: ArgumentParser) -> None:
    _add_experiment(p, "configs/experiments/active_synthetic.yaml", "chains (method, seed)")


def cmd_active(args: Namespace) -> None:
    from seldepth.experiments.active import run_active

    _check_output(args.out, "folder")
    _quiet_lightning()
    summary = run_active(args.experiment, args.out, quick=args.quick, jobs=args.jobs)
    print(f"\n{(Path(args.out) / 'summary.md').read_text()}\nactive learning finished in "
          f"{summary['wall_seconds'] / 60:.1f} min; {args.out}/summary.md, active.json, active.png")


@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, the function that adds its typed arguments, and the one that runs it."""

    name: str
    help: str
    arguments: Callable[[ArgumentParser], None] | None
    run: Callable


# In the order of ``seldepth --help``: using models first, then training, then research tools.
COMMANDS = [
    Command("predict", "depth for images, folders, list files and videos: .npy, 16-bit PNG, colour map, PLY, .mp4",
            args_predict, cmd_predict),
    Command("eval", "evaluate a model on a data set under a protocol", args_eval, cmd_eval),
    Command("import-meter", "convert official METER weights into a seldepth model file", args_import_meter, cmd_import_meter),
    Command("export", "export a model to ONNX (checked against torch), optionally INT8-quantised, or to OpenVINO",
            args_export, cmd_export),
    Command("bench", "parameters, FLOPs and latency: eager, torch.compile, ORT FP32 and INT8 side by side",
            args_bench, cmd_bench),
    Command("models", "list registered models with their size and cost", args_models, cmd_models),
    Command("train", "train a model from a YAML config (seldepth train --help)", None, cmd_train),
    Command("synth", "generate a synthetic indoor RGB-D data set (NYU layout)", args_synth, cmd_synth),
    Command("demo", "the main job: synthetic data, train METER-xxs, evaluate (--quick: a few minutes)", args_demo, cmd_demo),
    Command("report", "one self-contained HTML page comparing training run folders side by side", args_report, cmd_report),
    Command("dissect", "depth selectivity of a model's units over a data set (JSON, NPZ, plots)", args_dissect, cmd_dissect),
    Command("ablate", "ablate a layer's most / least / random selective units and measure depth metrics",
            args_ablate, cmd_ablate),
    Command("prune", "structured channel pruning of METER to a FLOPs fraction: by depth selectivity, L1 norm or chance",
            args_prune, cmd_prune),
    Command("attention", "attention maps (sum of |activation| over channels) of a model's layers on one image",
            args_attention, cmd_attention),
    Command("experiment", "train, dissect and ablate a grid of runs from one YAML; gather a table",
            args_experiment, cmd_experiment),
    Command("select", "active learning: choose the unlabelled images whose predicted depth is most uncertain",
            args_select, cmd_select),
    Command("active", "active-learning experiment: rounds of train and choose, uncertainty vs random", args_active, cmd_active),
]
COMMANDS_BY_NAME = {c.name: c for c in COMMANDS}


# ---------------------------------------------------------------------------------------------
# The parser and main
# ---------------------------------------------------------------------------------------------

def _subparser(command: Command) -> ArgumentParser:
    p = ArgumentParser(prog=f"seldepth {command.name}", description=command.help[0].upper() + command.help[1:] + ".",
                       formatter_class=_HelpFormatter)
    p.add_argument("--config", action=ActionConfigFile,
                   help="YAML file of this command's arguments (keys as the options, _ for -: batch_size: 8); "
                        "options after it override it")
    command.arguments(p)
    return p


def build_parser(command: str | None = None) -> ArgumentParser:
    """The ``seldepth`` parser.

    Args:
        command: the subcommand whose parser is built in full; the others get empty stand-ins (they are not
            parsed), so that building the parser imports nothing the named subcommand does not need. None:
            every subcommand in full. ``train``'s arguments are parsed by the training config's parser
            (:func:`seldepth.training.config.build_parser`), never here.
    """
    parser = ArgumentParser(prog="seldepth", description="Efficient, interpretable monocular depth estimation. "
                            "Every subcommand takes --config FILE.yaml and --print_config; "
                            "seldepth SUBCOMMAND --help lists its options with their defaults.",
                            formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"seldepth {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="tracebacks on errors, and Lightning's tips and warnings (may also follow the subcommand)")
    subcommands = parser.add_subcommands(dest="command", metavar="SUBCOMMAND")
    for c in COMMANDS:
        full = c.arguments is not None and command in (None, c.name)
        subcommands.add_subcommand(c.name, _subparser(c) if full else ArgumentParser(prog=f"seldepth {c.name}"),
                                   help=c.help)
    return parser


def _command_name(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is not an option (the global options take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def _usage_problem(name: str | None, argv: list[str]) -> str | None:
    """An option renamed in 0.2, or an experiment file given as ``--config``: the message that says what to type."""
    for old, new in RENAMED_OPTIONS.items():
        if name != "train" and any(a == old or a.startswith(old + "=") for a in argv):  # train: its config's keys
            return f"{old} is spelt {new} since 0.2"
    if name in ("experiment", "active") and "--config" in argv:
        i = argv.index("--config")
        path = Path(argv[i + 1]) if i + 1 < len(argv) else None
        if path is not None and path.is_file():
            import yaml

            try:
                keys = set(yaml.safe_load(path.read_text()) or {})
            except Exception:  # not YAML or not a mapping: jsonargparse reports it
                keys = set()
            if keys - {"experiment", "out", "quick", "jobs"}:
                return (f"--config takes a YAML file of this command's options; the experiment file is the first "
                        f"argument since 0.2: seldepth {name} {path} --out DIR")
    return None


_VERBOSE = False  # --verbose: set by main for the command it runs
_LOGGER_LEVELS: dict[str, int] = {}  # levels _quiet_lightning changed, restored by main


def _quiet_lightning() -> None:
    """Keep Lightning's tips, info lines and warnings off the terminal (they come back with ``--verbose``).

    Called by the commands that train, inside :func:`main`'s ``warnings.catch_warnings()`` (which undoes the
    filters afterwards; main restores the loggers' levels). Lightning sets its loggers to INFO when imported,
    so this imports it first (the commands that call it import it anyway)."""
    if _VERBOSE:
        return
    import lightning.pytorch  # noqa: F401  (sets its loggers' level on import: set ours after)
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        _LOGGER_LEVELS.setdefault(name, logger.level)
        logger.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    for module in (r"lightning(\..*)?", r"lightning_fabric(\..*)?", r"pytorch_lightning(\..*)?"):
        warnings.filterwarnings("ignore", module=module)
    # warnings Lightning raises on behalf of its caller (stacklevel) name other modules: match their text too
    for message in (r".*litlogger", r".*litmodels", r".*is smaller than the logging interval",
                    r".*does not have many workers", r".*LeafSpec", r".*The `srun` command is available",
                    r".*Checkpoint directory .* exists and is not empty"):
        warnings.filterwarnings("ignore", message=message)


def _exit_code(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


# library errors that mean "the arguments are wrong": a usage error, exit status 2
USAGE_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError)


def main(argv: list[str] | None = None) -> int:
    """Run ``seldepth`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    global _VERBOSE
    argv = list(sys.argv[1:] if argv is None else argv)
    _VERBOSE = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]  # a global flag, accepted after the subcommand too
    name = _command_name(argv)
    problem = _usage_problem(name, argv)
    if problem:
        print(f"seldepth{' ' + name if name else ''}: error: {problem}", file=sys.stderr)
        return 2
    parser = build_parser(name if name in COMMANDS_BY_NAME else "")
    try:
        if name == "train":  # the training config's parser reads the rest
            head = argv[: argv.index("train") + 1]
            parser.parse_args(head)
            args = argv[len(head):]
        else:
            ns = parser.parse_args(argv)
            name = ns.command
            args = ns[name]
    except SystemExit as exc:  # --help, --version, --print_config: 0; usage errors (printed by jsonargparse): 2
        return _exit_code(exc)
    try:
        with warnings.catch_warnings():  # the filters of _quiet_lightning end with the command
            COMMANDS_BY_NAME[name].run(args)
    except SystemExit as exc:  # train --help / --print_config
        return _exit_code(exc)
    except KeyboardInterrupt:
        print(f"\nseldepth {name}: interrupted", file=sys.stderr)
        return 130
    except NothingProduced as exc:
        print(f"seldepth {name}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if _VERBOSE:
            traceback.print_exc()
        message = str(exc).strip() or type(exc).__name__
        usage = isinstance(exc, USAGE_ERRORS)
        hint = "" if _VERBOSE or usage else f" ({type(exc).__name__}; --verbose shows the traceback)"
        print(f"seldepth {name}: error: {message}{hint}", file=sys.stderr)
        return 2 if usage else 1
    finally:
        while _LOGGER_LEVELS:
            logger_name, level = _LOGGER_LEVELS.popitem()
            logging.getLogger(logger_name).setLevel(level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
