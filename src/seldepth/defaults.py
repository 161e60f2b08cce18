"""Defaults of the library that the command line shows in ``--help``, and its optional parts: defined once, here.

The library's functions take these as their parameter defaults and re-export the public ones
(``seldepth.selectivity.DEFAULT_BINS``, ...); the ``seldepth`` command imports them from this module.
It imports nothing (no torch), so that ``seldepth --help`` and ``seldepth SUBCOMMAND --help`` start fast; it also holds
the one check of option values (:func:`check_number`) that the config dataclasses and library functions share.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from pathlib import Path

# Selectivity (seldepth.selectivity): bins, the valid ground truth, ablation.
DEFAULT_NUM_BINS = 64
DEFAULT_BINS = f"sid:{DEFAULT_NUM_BINS}"  # the bin scheme of every dissection unless told otherwise
DEFAULT_DEPTH_RANGE = (1e-3, 10.0)  # valid ground truth (min, max), metres, exclusive: the NYU range
DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75)  # fractions of a layer's units ablated
DEFAULT_ABLATION_SEEDS = 3  # random draws of the random-k ablation curve
DEFAULT_ABLATION_BATCH_SIZE = 8
DEFAULT_BY_BIN_GROUPS = 8  # depth groups of an ablation per depth range (the dissection's bins: sid:64 -> sid:8)

# Structured pruning (seldepth.pruning): the floor of every prunable width and the multiple kept widths round up to.
DEFAULT_MIN_KEEP = 0.25  # a width keeps at least this fraction of its channels ...
DEFAULT_MIN_CHANNELS = 8  # ... and at least this many (all, when fewer)
DEFAULT_ROUND_TO = 8  # kept widths rounded up to a multiple of it (1: no rounding): CPU kernels work on 8 channels at a time

# Images and data.
DEFAULT_SIZE = (192, 256)  # (height, width): synthetic images, benchmark input, FLOP counts
DEFAULT_SPLIT = "test"  # the split evaluated, dissected and calibrated on where a layout has several
DEFAULT_BATCH_SIZE = 4  # images per forward pass: evaluate, dissect, predict
DEFAULT_NUM_WORKERS = 0  # data loader processes (0: load in the main process)
DEFAULT_SCENES = 1000  # scenes of a synthetic data set written by ``seldepth synth``
DEFAULT_RENDER_WORKERS = 2  # processes that render a synthetic data set (``seldepth synth``)

# Running models.
DEFAULT_DEVICE = "auto"  # CUDA, then Apple MPS, then the CPU

# Predicting depth for files (seldepth.prediction).
DEFAULT_PREDICT_MODEL = "meter_xxs_nyu"  # the pretrained model of ``seldepth predict`` without --model
DEFAULT_PREDICT_OUT = "depth"  # the output folder of ``seldepth predict`` without --out
IMAGE_OUTPUTS = ("npy", "png16", "color", "side", "ply")  # what can be written per image
DEFAULT_OUTPUTS = ("npy", "png16", "color")  # what is written per image unless told otherwise
DEFAULT_CMAP = "turbo"  # colour map of depth pictures: near is its low end (blue), far its high end (red)
DEFAULT_PNG_COMPRESSION = 1  # zlib level of the PNGs written (0..9): 1 is the fastest that compresses

# Active learning (seldepth.experiments.uncertainty) and reports (seldepth.report).
DEFAULT_MC_PASSES = 8  # MC-dropout passes per image
DEFAULT_MC_DROPOUT = 0.2  # channel dropout probability of MC dropout
DEFAULT_REPORT_SAMPLES = 4  # test images in a report's prediction grid

# Deployment (seldepth.deploy): benchmarks and INT8 calibration.
DEFAULT_THREADS = 2  # torch and ONNX Runtime intra-op threads
DEFAULT_RUNS = 50  # timed calls per backend
DEFAULT_WARMUP = 10  # untimed calls per backend first
DEFAULT_CALIBRATION_IMAGES = 16  # images that calibrate INT8 quantisation
DEFAULT_COMPILE_BUDGET_S = 180.0  # seconds torch.compile's first call may take
DEFAULT_MAX_RMSE_INCREASE = 0.01  # the RMSE a faster path may add to ORT FP32's when the bench picks one (1%)



# The cache of generated data, FLOP counts and pretrained models.
CACHE_ENV = "SELDEPTH_CACHE"  # the environment variable that moves the cache
DEFAULT_CACHE = "~/.cache/seldepth"


def cache_dir() -> Path:
    """Where seldepth caches what it generates or downloads: ``$SELDEPTH_CACHE`` or ``~/.cache/seldepth`` (``~`` expanded)."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


# Optional parts (pip extras): module -> (extra, what needs it). ``make`` installs them all.
EXTRAS = {
    "onnx": ("onnx", "ONNX export, ONNX Runtime models and benchmarks"),
    "onnxruntime": ("onnx", "ONNX Runtime models, INT8 quantisation and benchmarks"),
    "onnxscript": ("onnx", "ONNX export"),
    "openvino": ("openvino", "OpenVINO models and export"),
    "nncf": ("openvino", "OpenVINO INT8 quantisation"),
    "av": ("video", "video input and output, and 16-bit colour PNGs"),
    "scipy": ("mat", "MATLAB v5 .mat files (the official NYU splits.mat)"),
    "tensorboard": ("tensorboard", "TensorBoard logs of training runs"),
}


class MissingExtraError(ImportError):
    """An optional package that a feature needs is not installed; the message gives the pip line."""


def require(module: str):
    """Import ``module``, one of the optional packages of :data:`EXTRAS`.

    Raises:
        MissingExtraError: naming the package, what needs it and the pip line that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra, what = EXTRAS.get(top, ("all", "this feature"))
        raise MissingExtraError(f"{what} needs the optional package {top!r}, which is not installed: "
                                f"pip install 'seldepth[{extra}]'") from None


def has_extra(module: str) -> bool:
    """Whether the optional package ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module.split(".")[0]) is not None


# Checking option values: the one check of "a finite number (or an integer) in range" that every config dataclass
# and library function uses, so that each error reads the same and names the key or argument.

def _bounds_text(low, high, low_open: bool, high_open: bool) -> str:
    def text(v) -> str:
        return str(v) if isinstance(v, int) else f"{v:g}"

    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{text(low)}, {text(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {text(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {text(high)}"
    return ""


def check_number(key: str, value, low: float | None = None, high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False, integer: bool = False, optional: bool = False):
    """``value`` when it is a finite number (with ``integer``: an integer) within the bounds; else a ValueError naming ``key``.

    ``low`` and ``high`` are inclusive unless ``low_open`` / ``high_open``; ``optional`` lets None through (``null``).
    NaN and infinities are never accepted, booleans are not numbers, and an integer option takes no fraction
    (2.5 is refused, never truncated to 2).

    Example:
        >>> check_number("optim.lr", 1e-3, 0, low_open=True)
        0.001
        >>> check_number("optim.lr", float("inf"), 0, low_open=True)
        Traceback (most recent call last):
        ...
        ValueError: optim.lr must be a finite number > 0, got inf
    """
    import math
    import numbers

    if value is None and optional:
        return None
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok and not integer:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = _bounds_text(low, high, low_open, high_open)
        what = ("an integer" if integer else "a finite number") + (f" {bounds}" if bounds else "")
        raise ValueError(f"{key} must be {what}{' or null' if optional else ''}, got {value!r}")
    return value


def check_size(key: str, value) -> tuple[int, int]:
    """``value`` as ``(height, width)``, two integers >= 1; else a ValueError naming ``key``."""
    try:
        sides = tuple(value)
    except TypeError:
        sides = ()
    if len(sides) != 2:
        raise ValueError(f"{key} must be (height, width), two integers >= 1, got {value!r}")
    for i, side in enumerate(sides):
        check_number(f"{key}[{i}]", side, 1, integer=True)
    return int(sides[0]), int(sides[1])
