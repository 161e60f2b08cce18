"""Pretrained models by name: ``seldepth.load_model("meter_xxs_nyu")``, ``--model meter_xxs_nyu``.

Each name of :data:`PRETRAINED` stands for an upstream file (the official METER checkpoints): its URL, its
sha256 (None where it is not known: an *unverified* row), its size, its licence, and how it becomes a seldepth
model file (its converter, :func:`~seldepth.models.import_meter.import_meter`, which records preprocessing,
output unit and intrinsics).

The first use of a name downloads the upstream file with pooch into ``<cache>/downloads/<file>``, checks its
sha256, converts it into ``<cache>/models/<name>.safetensors`` (written atomically) and keeps both. Later uses
read the model file only, without the network. ``<cache>`` is ``$SELDEPTH_CACHE`` or ``~/.cache/seldepth``
(:func:`seldepth.defaults.cache_dir`). A file lock (``<cache>/locks/<name>.lock``) keeps two processes from
downloading or converting the same model at once.

``$SELDEPTH_WEIGHTS_MIRROR`` (a base URL) replaces the upstream base URL: the file is fetched from
``MIRROR/<file>`` (a mirror, an air-gapped site). Offline, a file put by hand at ``<cache>/downloads/<file>``
is checked against the sha256 and used.

An unverified row is downloaded only with ``allow_unverified=True`` (``--allow-unverified``); the sha256 of
what was downloaded is recorded in the model file's provenance (``provenance.sha256``), shown by
:func:`pretrained_status` and in a warning.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pooch
from filelock import FileLock

from seldepth.defaults import cache_dir
from seldepth.models.import_meter import import_meter
from seldepth.models.model_file import read_metadata

MIRROR_ENV = "SELDEPTH_WEIGHTS_MIRROR"  # a base URL that replaces the upstream one
METER_URL = "https://github.com/lorenzopapa5/METER/raw/main/models/"  # the official METER checkpoints


@dataclass(frozen=True)
class PretrainedModel:
    """One pretrained model: where its upstream file comes from and how it becomes a seldepth model file.

    Attributes:
        name: the name it is loaded by (``meter_xxs_nyu``).
        file: the upstream file name (also its name in ``<cache>/downloads``).
        url: the upstream URL of ``file``.
        sha256: the file's sha256 (hex); None: not known, the download cannot be verified.
        size: the file's size in bytes, None where not known.
        licence: the licence of the weights.
        variant: the architecture variant the converter builds (METER: ``xxs``, ``xs``, ``s``).
        dataset: the data set the weights were trained on (``nyu``, ``kitti``).
        converter: ``converter(file, variant=, dataset=, out=)`` writes the seldepth model file ``out``.
    """

    name: str
    file: str
    url: str
    sha256: str | None
    size: int | None
    licence: str
    variant: str
    dataset: str
    converter: Callable = import_meter

    @property
    def verified(self) -> bool:
        """Whether the download is checked against a known sha256."""
        return self.sha256 is not None

    def download_url(self) -> str:
        """The URL fetched: ``$SELDEPTH_WEIGHTS_MIRROR/<file>`` when the variable is set, else :attr:`url`."""
        mirror = os.environ.get(MIRROR_ENV)
        return f"{mirror.rstrip('/')}/{self.file}" if mirror else self.url


def _meter(variant: str, dataset: str, sha256: str | None, size: int | None) -> PretrainedModel:
    file = f"build_model_best_{dataset}_{variant}"
    return PretrainedModel(name=f"meter_{variant}_{dataset}", file=file, url=METER_URL + file, sha256=sha256, size=size,
                           licence="MIT", variant=variant, dataset=dataset, converter=import_meter)


# name -> row. sha256 None: the file's checksum is not known (downloaded only with allow_unverified).
PRETRAINED: dict[str, PretrainedModel] = {row.name: row for row in (
    _meter("xxs", "nyu", "327cddf3bfc85f4a13b8d18d2f13d8e40cdeb022ea397995c409ef1569bcbb53", 2965623),
    _meter("xxs", "kitti", "e55544ae36f9ad74237017fd5f8e761db4b258dbed44623c71ce305d44488bea", 2965623),
    _meter("xs", "nyu", None, None),
    _meter("xs", "kitti", None, None),
    _meter("s", "nyu", None, None),
    _meter("s", "kitti", None, None),
)}


class DownloadError(OSError):
    """A pretrained model's file could not be downloaded (no network, HTTP error); the message names the URL,
    the file and where to put it by hand."""


class ChecksumError(DownloadError):
    """A downloaded file whose sha256 is not the expected one; it was deleted and nothing was cached."""


class UnverifiedError(ValueError):
    """A pretrained model whose checksum is not known, requested without ``allow_unverified``."""


def list_pretrained() -> list[str]:
    """The names of the pretrained models, in the table's order."""
    return list(PRETRAINED)


def get_pretrained(name: str) -> PretrainedModel:
    """The row of ``name``.

    Raises:
        ValueError: an unknown name, listing the known ones.
    """
    try:
        return PRETRAINED[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown pretrained model {name!r}; the pretrained models are "
                         f"{', '.join(PRETRAINED)}") from None


def download_path(name: str) -> Path:
    """Where the upstream file of ``name`` is kept (and may be put by hand): ``<cache>/downloads/<file>``."""
    return cache_dir() / "downloads" / get_pretrained(name).file


def model_path(name: str) -> Path:
    """Where the converted model file of ``name`` is kept: ``<cache>/models/<name>.safetensors``."""
    return cache_dir() / "models" / f"{get_pretrained(name).name}.safetensors"


def _recorded_sha256(path: Path) -> tuple[str | None, str | None]:
    """(source file name, sha256) recorded in a model file's provenance; (None, None) when unreadable."""
    try:
        provenance = read_metadata(path)["provenance"]
    except (ValueError, OSError):
        return None, None
    return provenance.get("source"), provenance.get("sha256")


def cached_file(name: str) -> Path | None:
    """The cached model file of ``name``, or None when there is none that can be used.

    A cached file is used when it is a readable model file converted from the row's upstream file and, for a
    verified row, from a file of the row's sha256 (its ``provenance.sha256``). Only the file's header is read.
    """
    row = get_pretrained(name)
    path = model_path(name)
    if not path.is_file():
        return None
    source, sha256 = _recorded_sha256(path)
    if source != row.file or sha256 is None or (row.verified and sha256 != row.sha256):
        return None
    return path


def pretrained_status() -> list[dict]:
    """One entry per pretrained model: ``name``, ``file``, ``url`` (the one fetched), ``size``, ``licence``,
    ``verified``, ``sha256`` (the table's; for an unverified row, the one recorded when it was downloaded, else
    None) and ``cached`` (the model file, or None)."""
    rows = []
    for row in PRETRAINED.values():
        cached = cached_file(row.name)
        sha256 = row.sha256 if row.verified or cached is None else _recorded_sha256(cached)[1]
        rows.append({"name": row.name, "file": row.file, "url": row.download_url(), "size": row.size,
                     "licence": row.licence, "verified": row.verified, "sha256": sha256, "cached": cached})
    return rows


def _by_hand(row: PretrainedModel) -> str:
    """How to provide ``row``'s file without the network."""
    facts = ", ".join(([f"{row.size:,} bytes"] if row.size else []) + ([f"sha256 {row.sha256}"] if row.sha256 else []))
    return (f"put the file {row.file}{f' ({facts})' if facts else ''} by hand at {download_path(row.name)} (it is "
            f"checked and used), or set {MIRROR_ENV} to a base URL that serves {row.file}")


def _download(row: PretrainedModel, progress: bool) -> Path:
    """The upstream file of ``row`` in ``<cache>/downloads``: fetched with pooch (or found there), its sha256 checked."""
    url = row.download_url()
    target = download_path(row.name)
    try:
        return Path(pooch.retrieve(url, known_hash=f"sha256:{row.sha256}" if row.verified else None, fname=row.file,
                                   path=target.parent, progressbar=progress))
    except ValueError as exc:  # pooch's hash mismatch: it deleted the download
        found = re.search(r"expected \S+ but got ([0-9a-fA-F]+)", str(exc))
        if found is None:
            raise
        raise ChecksumError(f"{row.name}: the file downloaded from {url} has sha256 {found.group(1)}, not the expected "
                            f"{row.sha256}; the download was deleted and nothing was cached{_stale(row, target)} (a "
                            f"corrupted download, a wrong mirror or a changed upstream file)") from None
    except OSError as exc:  # requests' errors (no network, refused connection, HTTP 404, ...) are OSErrors
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise DownloadError(f"{row.name}: cannot download {row.file} from {url} "
                            f"({reason[:300]}{' ...' if len(reason) > 300 else ''}){_stale(row, target)}; offline, "
                            f"{_by_hand(row)}") from None


def _stale(row: PretrainedModel, target: Path) -> str:
    """A note on a file already at ``target`` that pooch did not accept (another sha256 than the row's), else ''."""
    if not (row.verified and target.is_file()):
        return ""
    return (f"; the file already at {target} has sha256 {pooch.file_hash(str(target))}, not the expected one: "
            f"remove or replace it")


def pretrained_file(name: str, allow_unverified: bool = False, progress: bool = True) -> Path:
    """The model file of the pretrained model ``name``: from the cache, else downloaded, checked and converted.

    Args:
        name: a name of :data:`PRETRAINED` (:func:`list_pretrained`).
        allow_unverified: download a row whose sha256 is not known (the sha256 of what was downloaded is recorded
            in the model file's provenance and given in a warning). A cached model file is used without it.
        progress: show pooch's progress bar while downloading.

    Returns:
        ``<cache>/models/<name>.safetensors``.

    Raises:
        ValueError: an unknown name (listing the known ones).
        UnverifiedError: (a ValueError) a row without a known sha256, not cached, without ``allow_unverified``.
        DownloadError: (an OSError) the file could not be downloaded: the message names the URL, the file and
            where to put it by hand.
        ChecksumError: (a DownloadError) the downloaded file's sha256 is not the expected one (both are named);
            nothing is cached.
    """
    row = get_pretrained(name)
    cached = cached_file(name)
    if cached is not None:
        return cached
    if not row.verified and not allow_unverified:
        raise UnverifiedError(f"{name}: the sha256 of {row.file} is not known, so its download from {row.download_url()} "
                              f"cannot be verified; allow it with allow_unverified=True (command line: "
                              f"--allow-unverified, or once: seldepth models --download {name} --allow-unverified): "
                              f"the sha256 of the file downloaded is recorded in the model file")
    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{name}.lock")):
        cached = cached_file(name)  # another process may have made it while this one waited
        if cached is not None:
            return cached
        raw = _download(row, progress)
        out = model_path(name)
        try:
            model = row.converter(raw, variant=row.variant, dataset=row.dataset, out=out)  # written atomically
        except ValueError as exc:
            raise ValueError(f"{name}: {raw} (from {row.download_url()}) cannot be converted: {exc}") from None
        sha256 = model.metadata["provenance"]["sha256"]
        if not row.verified:
            warnings.warn(f"{name}: {row.file} was downloaded from {row.download_url()} without a known checksum "
                          f"(allow_unverified); its sha256 is {sha256}, recorded in {out}", stacklevel=2)
    return out
