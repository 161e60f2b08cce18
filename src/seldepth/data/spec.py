"""Data set spec strings of the command line and configs: ``KIND:PATH[?key=value&...]``.

Kinds: ``nyu`` and ``kitti`` (the layout is detected, see :data:`LAYOUTS`), ``folder`` (image/depth
pairs matched by name; ``?scale=`` required for PNG depth), ``synthetic`` (a set written by
``seldepth synth``; ``synthetic:default[:N[:SEED[:T]]]`` is the cached default set: N scenes drawn
with SEED, default 2000 and 0, of T frames each along a camera walk, default 1; scene s is the same
in every N with the same seed). Options after ``?``
go to the layout's reader, e.g. ``kitti:eigen_test_files.txt?gt_root=data_depth_annotated&crop=kb``,
``nyu:nyu_depth_v2_labeled.mat?splits=splits.mat``, ``folder:pairs?scale=1000``.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils.data import Dataset

from seldepth.data.errors import DatasetError
from seldepth.data.skipping import SkipBadSamples, check_on_error
from seldepth.defaults import DEFAULT_SIZE, DEFAULT_SPLIT, cache_dir

KINDS = ("nyu", "kitti", "folder", "synthetic")


@dataclass(frozen=True)
class Layout:
    """A reader that a kind of spec may resolve to: ``module.cls``, tried when ``cls.probe(path)`` holds.

    ``defaults`` are options given to the reader unless the spec sets them.
    """

    module: str
    cls: str
    defaults: dict = field(default_factory=dict)

    def reader(self):
        return getattr(importlib.import_module(f"seldepth.data.{self.module}"), self.cls)


def _nyu_default_K(height: int, width: int):
    from seldepth.data.nyu_densedepth import nyu_intrinsics

    return nyu_intrinsics(height, width)


# Tried in order; the first whose probe accepts the path is used.
LAYOUTS: dict[str, list[Layout]] = {
    "nyu": [Layout("nyu_labeled", "NYULabeled"), Layout("nyu_h5", "NYUH5"), Layout("nyu_densedepth", "NYUDenseDepth"),
            Layout("annotations", "AnnotatedPairs"), Layout("nyu_sync", "NYUSync"),
            Layout("folder", "FolderPairs", {"scale": 1000.0, "default_K": _nyu_default_K})],
    "kitti": [Layout("annotations", "AnnotatedPairs"), Layout("kitti", "KITTIRaw"),
              Layout("folder", "FolderPairs", {"scale": 256.0})],
    "folder": [Layout("folder", "FolderPairs")],
    "synthetic": [Layout("nyu_densedepth", "NYUDenseDepth")],
}


@dataclass(frozen=True)
class DataSpec:
    """A parsed spec: kind, path and reader options."""

    kind: str
    path: str
    options: dict
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # each option's text as written

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.kind}:{self.path}" + (f"?{query}" if query else "")


def _value(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return None if text.lower() in ("none", "null") else text


def parse_spec(spec: str, key: str = "data") -> DataSpec:
    """Split ``KIND:PATH?a=1&b=x`` into its parts (numbers converted).

    Raises:
        DatasetError: naming ``key``, for an unknown kind, a malformed option or an option given twice.
    """
    kind, sep, rest = str(spec).partition(":")
    if not sep or kind not in KINDS:
        raise DatasetError(f"{key}: data spec {spec!r}: expected KIND:PATH with KIND one of {', '.join(KINDS)}")
    path, _, query = rest.partition("?")
    options, raw = {}, {}
    for item in filter(None, query.split("&")):
        name, eq, text = item.partition("=")
        if not eq or not name:
            raise DatasetError(f"{key}: data spec {spec!r}: option {item!r} is not NAME=VALUE")
        if name in options:
            raise DatasetError(f"{key}: data spec {spec!r}: option {name!r} is given twice "
                               f"({raw[name]!r} and {text!r}); give it once")
        options[name] = _value(text)
        raw[name] = text
    return DataSpec(kind, path, options, raw)


# The embedded default data set: generated on first use, then cached.
DEFAULT_SYNTHETIC = {"num": 2000, "size": DEFAULT_SIZE, "seed": 0}


def default_synthetic_dir(num: int = DEFAULT_SYNTHETIC["num"], seed: int = DEFAULT_SYNTHETIC["seed"],
                          length: int = 1) -> Path:
    h, w = DEFAULT_SYNTHETIC["size"]
    return cache_dir() / (f"synthetic-{w}x{h}-n{num}-seed{seed}" + (f"-t{length}" if length > 1 else ""))


def ensure_synthetic(path: Path, num: int, progress: bool = True, seed: int = DEFAULT_SYNTHETIC["seed"],
                     length: int = 1) -> Path:
    """Generate the default synthetic set at ``path`` unless a complete one is there (``dataset.json``).

    Processes that need the same set at once take turns through a lock file beside the folder
    (:func:`~seldepth.data.synthetic.writer.generation_lock`): the first generates it, the others wait and
    find it complete.
    """
    if (path / "dataset.json").is_file():
        return path
    from seldepth.data.synthetic.writer import generate, generation_lock

    with generation_lock(path):
        if not (path / "dataset.json").is_file():  # checked again: another process may have finished it meanwhile
            frames = f"{num} scenes x {length} frames" if length > 1 else f"{num} images"
            print(f"generating the default synthetic data set ({frames}, seed {seed}) in {path}")
            generate(path, num, size=DEFAULT_SYNTHETIC["size"], seed=seed, sequence_length=length, progress=progress,
                     workers=min(2, os.cpu_count() or 1))
    return path


def _default_set(spec: DataSpec, key: str = "data") -> tuple[int, int, int] | None:
    """(N, SEED, T) for ``synthetic:default[:N[:SEED[:T]]]``, else None (T: frames per scene, default 1).

    Raises:
        DatasetError: naming ``key``, when N, SEED or T is not a whole number (N >= 1, SEED >= 0, T >= 1).
    """
    if spec.kind != "synthetic" or not (spec.path == "default" or spec.path.startswith("default:")):
        return None
    parts = spec.path.split(":")[1:]
    if (len(parts) > 3 or not all(p.isdigit() for p in parts) or (parts and int(parts[0]) < 1)
            or (len(parts) > 2 and int(parts[2]) < 1)):
        raise DatasetError(f"{key}: data spec {spec}: expected synthetic:default[:N[:SEED[:T]]] with whole numbers "
                           f"N >= 1, SEED >= 0 and T >= 1 (frames per scene)")
    num = int(parts[0]) if parts else DEFAULT_SYNTHETIC["num"]
    seed = int(parts[1]) if len(parts) > 1 else DEFAULT_SYNTHETIC["seed"]
    length = int(parts[2]) if len(parts) > 2 else 1
    return num, seed, length


@dataclass(frozen=True)
class ResolvedSpec:
    """A data spec parsed and checked once: its parts, the folder it names and, for the cached default
    synthetic set, its (N, SEED, T).

    Attributes:
        text: the spec as given.
        parsed: kind, path and options.
        path: the folder (for ``synthetic:default...`` the cache folder, which may not exist yet).
        default_set: (N, SEED, T) of ``synthetic:default[:N[:SEED[:T]]]``, else None.
        key: the configuration key or argument named in errors.
    """

    text: str
    parsed: DataSpec
    path: Path
    default_set: tuple[int, int, int] | None
    key: str = "data"

    def prepare(self, progress: bool = True) -> Path:
        """The folder, after generating the default synthetic set if it is the one named and is missing."""
        if self.default_set is not None:
            num, seed, length = self.default_set
            ensure_synthetic(self.path, num, progress, seed=seed, length=length)
        return self.path

    def layout(self) -> Layout:
        """The first layout of the spec's kind whose probe accepts its (prepared) folder.

        Raises:
            DatasetError: listing the layouts looked for.
        """
        path = self.prepare(progress=False)
        for layout in LAYOUTS[self.parsed.kind]:
            if layout.reader().probe(path):
                return layout
        names = "; ".join(layout.reader().layout for layout in LAYOUTS[self.parsed.kind])
        raise DatasetError(f"{self.key}: data spec {self.text!r}: {path} matches no {self.parsed.kind} layout; "
                           f"looked for: {names}")


def resolve(spec: str | ResolvedSpec, key: str = "data") -> ResolvedSpec:
    """Parse and check a spec once (``synthetic:default[:N[:SEED[:T]]]`` names a cached generated set).

    Raises:
        DatasetError: naming ``key`` and the spec, for an unknown kind, a bad option or a missing path.
    """
    if isinstance(spec, ResolvedSpec):
        return spec
    parsed = parse_spec(spec, key)
    default = _default_set(parsed, key)
    if default is not None:
        return ResolvedSpec(str(spec), parsed, default_synthetic_dir(*default), default, key)
    if not Path(parsed.path).exists():
        raise DatasetError(f"{key}: data spec {spec!r}: {parsed.path} does not exist")
    return ResolvedSpec(str(spec), parsed, Path(parsed.path), None, key)


# Reader options that must be positive numbers (a scale or focal length of 0 or below means nothing).
POSITIVE_OPTIONS = ("scale", "max_depth_8bit", "fx", "fy")


def _option_value(resolved: ResolvedSpec, name: str, value, hint):
    """``value`` of option ``name`` converted to the reader's annotation ``hint``; DatasetError if it does not fit."""
    raw = resolved.parsed.raw.get(name, str(value))
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    where = f"{resolved.key}: data spec {resolved.text!r}: option {name!r}"
    if value is None:
        if type(None) in args or hint is None:
            return None
        raise DatasetError(f"{where} cannot be none")
    if str in args or os.PathLike in args:
        return raw
    if bool in args:
        if raw.strip().lower() in ("true", "yes", "1"):
            return True
        if raw.strip().lower() in ("false", "no", "0"):
            return False
        raise DatasetError(f"{where} expects true or false, got {raw!r}")
    if int in args and float not in args:
        if isinstance(value, int):
            return value
        raise DatasetError(f"{where} expects a whole number, got {raw!r}")
    if float in args:
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DatasetError(f"{where} expects a finite number, got {raw!r}")
        if name in POSITIVE_OPTIONS and value <= 0:
            raise DatasetError(f"{where} must be a positive number, got {raw!r}")
        return float(value)
    return value


def reader_options(resolved: ResolvedSpec, layout: Layout) -> dict:
    """The spec's options, checked against what ``layout``'s reader accepts (names, and values against its
    annotations: numbers, whole numbers, true/false, text), converted. Nothing is read.

    Raises:
        DatasetError: naming ``resolved.key``, the spec and the option.
    """
    reader = layout.reader()
    accepted = [p for p in inspect.signature(reader).parameters if p not in ("path", "on_error", "default_K")]
    unknown = [name for name in resolved.parsed.options if name not in accepted]
    if unknown:
        raise DatasetError(f"{resolved.key}: data spec {resolved.text!r}: option {unknown[0]!r} is not known to the "
                           f"{reader.layout} reader; it accepts {', '.join(accepted)}")
    try:
        hints = typing.get_type_hints(reader.__init__)
    except Exception:  # an annotation that cannot be evaluated: values go to the reader as parsed
        hints = {}
    return {name: _option_value(resolved, name, value, hints.get(name)) for name, value in resolved.parsed.options.items()}


def check_spec(spec: str | ResolvedSpec, key: str = "data") -> ResolvedSpec:
    """Check a spec as far as can be done without reading its data: :func:`resolve` (kind, path, default set),
    the layout its folder matches, and its options' names and values against that layout's reader.

    The cached default synthetic set is not generated: a missing one is checked against the layout it will have.
    What a config is validated with before its run folder is written.

    Raises:
        DatasetError: naming ``key``, the spec and the option or path at fault.
    """
    resolved = resolve(spec, key)
    if resolved.default_set is not None and not (resolved.path / "dataset.json").is_file():
        layout = LAYOUTS[resolved.parsed.kind][0]  # the layout of a generated set
    else:
        layout = resolved.layout()
    reader_options(resolved, layout)
    return resolved


def resolve_spec(spec: str, key: str = "data") -> Path:
    """Check a spec and return its path (see :func:`resolve`)."""
    return resolve(spec, key).path


def prepare(spec: str, key: str = "data", progress: bool = True) -> Path:
    """Resolve a spec, generating the default synthetic set first if it is the one named and is missing."""
    return resolve(spec, key).prepare(progress)


def detect_layout(spec: str, key: str = "data") -> Layout:
    """The first layout of the spec's kind whose probe accepts its path (see :meth:`ResolvedSpec.layout`)."""
    return resolve(spec, key).layout()


def open_dataset(spec: str, split: str = DEFAULT_SPLIT, on_error: str = "stop", key: str = "data") -> Dataset:
    """Open the data set named by ``spec`` (layout detected); ``split`` picks the split where the layout has several.

    Args:
        spec: ``KIND:PATH[?options]``, see the module docstring.
        split: ``train``, ``val``, ``test`` (readers without splits ignore it).
        on_error: ``stop`` raises on the first bad file; ``skip`` returns a
            :class:`~seldepth.data.skipping.SkipBadSamples` that leaves bad samples out and counts them.

    The reader's ``layout`` attribute names the layout found (print it with :func:`describe_dataset`).

    Raises:
        DatasetError: naming the spec, option or file at fault.
    """
    check_on_error(on_error)
    resolved = resolve(spec, key)
    layout = resolved.layout()  # prepares the folder
    reader = layout.reader()
    options = {**layout.defaults, **reader_options(resolved, layout)}
    if "split" in inspect.signature(reader).parameters:
        options.setdefault("split", split)
    dataset = reader(resolved.path, on_error=on_error, **options)
    if on_error == "skip":
        dataset = SkipBadSamples(dataset)
    try:  # errors about the data as a whole (no sample readable) name the spec
        dataset.spec = resolved.text
    except AttributeError:  # a reader with __slots__ or a read-only attribute
        pass
    return dataset


def describe_dataset(dataset: Dataset) -> str:
    """One line: the layout found and the number of samples."""
    layout = getattr(dataset, "layout", type(dataset).__name__)
    skipped = len(getattr(dataset, "skipped", []) or [])
    extra = f", {skipped} entries left out when opened" if skipped else ""
    return f"layout: {layout}; {len(dataset)} samples{extra}"
