"""Data set spec strings of the command line and configs: ``nyu:PATH``, ``synthetic:PATH``, ``synthetic:default``."""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.nyu import NYUDenseDepth

KINDS = ("nyu", "synthetic")

# The embedded default data set: generated on first use, then cached.
DEFAULT_SYNTHETIC = {"num": 2000, "size": (192, 256), "seed": 0}


def cache_dir() -> Path:
    """Where generated data is cached: ``$SELDEPTH_CACHE`` or ``~/.cache/seldepth``."""
    return Path(os.environ.get("SELDEPTH_CACHE", Path.home() / ".cache" / "seldepth"))


def default_synthetic_dir(num: int = DEFAULT_SYNTHETIC["num"]) -> Path:
    h, w = DEFAULT_SYNTHETIC["size"]
    return cache_dir() / f"synthetic-{w}x{h}-n{num}-seed{DEFAULT_SYNTHETIC['seed']}"


def ensure_synthetic(path: Path, num: int, progress: bool = True) -> Path:
    """Generate the default synthetic set at ``path`` unless a complete one is there (``dataset.json``)."""
    if not (path / "dataset.json").is_file():
        from seldepth.data.synthetic import generate

        print(f"generating the default synthetic data set ({num} images) in {path}")
        generate(path, num, size=DEFAULT_SYNTHETIC["size"], seed=DEFAULT_SYNTHETIC["seed"], progress=progress,
                 workers=min(2, os.cpu_count() or 1))
    return path


def _default_count(spec: str) -> int | None:
    """N for ``synthetic:default`` / ``synthetic:default:N``, else None."""
    kind, _, path = spec.partition(":")
    if kind != "synthetic" or not (path == "default" or path.startswith("default:")):
        return None
    return int(path.split(":")[1]) if ":" in path else DEFAULT_SYNTHETIC["num"]


def resolve_spec(spec: str, key: str = "data") -> Path:
    """Check a spec and return its path. ``synthetic:default`` (``synthetic:default:N`` for N images) names the cached set.

    Raises:
        DatasetError: naming ``key`` and the spec, for an unknown kind or a missing path.
    """
    kind, sep, path = spec.partition(":")
    if not sep or kind not in KINDS:
        raise DatasetError(f"{key}: data spec {spec!r}: expected KIND:PATH with KIND one of {', '.join(KINDS)}")
    num = _default_count(spec)
    if num is not None:
        return default_synthetic_dir(num)
    if not Path(path).exists():
        raise DatasetError(f"{key}: data spec {spec!r}: {path} does not exist")
    return Path(path)


def prepare(spec: str, key: str = "data", progress: bool = True) -> Path:
    """Resolve a spec, generating the default synthetic set first if it is the one named and is missing."""
    path = resolve_spec(spec, key)
    num = _default_count(spec)
    if num is not None:
        ensure_synthetic(path, num, progress)
    return path


def open_dataset(spec: str, split: str = "test") -> Dataset:
    """Open the data set named by ``spec``; ``split`` picks the CSV of a folder or zip.

    ``nyu:PATH``: DenseDepth layout (folder, ``nyu_data.zip`` or a CSV).
    ``synthetic:PATH``: a set written by ``seldepth synth`` (same layout, with semantics and intrinsics).
    ``synthetic:default``: the cached default synthetic set (generated on first use).
    """
    return NYUDenseDepth(prepare(spec, progress=False), split=split)
