"""Data set spec strings of the command line: ``nyu:PATH``, ``synthetic:PATH``."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.nyu import NYUDenseDepth

KINDS = ("nyu", "synthetic")


def open_dataset(spec: str, split: str = "test") -> Dataset:
    """Open the data set named by ``spec`` (``KIND:PATH``); ``split`` picks the CSV of a folder or zip.

    ``nyu:PATH``: DenseDepth layout (folder, ``nyu_data.zip`` or a CSV).
    ``synthetic:PATH``: a set written by ``seldepth synth`` (same layout, with semantics and intrinsics).
    """
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS:
        raise DatasetError(f"data spec {spec!r}: expected KIND:PATH with KIND one of {', '.join(KINDS)}")
    if not Path(path).exists():
        raise DatasetError(f"data spec {spec!r}: {path} does not exist")
    return NYUDenseDepth(path, split=split)
