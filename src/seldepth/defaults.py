"""Defaults of the library that the command line shows in ``--help``: defined once, here.

The library's functions take these as their parameter defaults and re-export the public ones
(``seldepth.selectivity.DEFAULT_BINS``, ...); the ``seldepth`` command imports them from this module.
It imports nothing (no torch), so that ``seldepth --help`` and ``seldepth SUBCOMMAND --help`` start fast.
"""

from __future__ import annotations

# Selectivity (seldepth.selectivity): bins, the valid ground truth, ablation.
DEFAULT_NUM_BINS = 64
DEFAULT_BINS = f"sid:{DEFAULT_NUM_BINS}"  # the bin scheme of every dissection unless told otherwise
DEFAULT_DEPTH_RANGE = (1e-3, 10.0)  # valid ground truth (min, max), metres, exclusive: the NYU range
DEFAULT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75)  # fractions of a layer's units ablated
DEFAULT_ABLATION_SEEDS = 3  # random draws of the random-k ablation curve
DEFAULT_ABLATION_BATCH_SIZE = 8

# Images and data.
DEFAULT_SIZE = (192, 256)  # (height, width): synthetic images, benchmark input, FLOP counts
DEFAULT_SPLIT = "test"  # the split evaluated, dissected and calibrated on where a layout has several
DEFAULT_BATCH_SIZE = 4  # images per forward pass: evaluate, dissect, predict
DEFAULT_NUM_WORKERS = 0  # data loader processes (0: load in the main process)
DEFAULT_SCENES = 1000  # scenes of a synthetic data set written by ``seldepth synth``
DEFAULT_RENDER_WORKERS = 2  # processes that render a synthetic data set (``seldepth synth``)

# Running models.
DEFAULT_DEVICE = "auto"  # CUDA, then Apple MPS, then the CPU

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

