"""Uniform access to the files of a data set in a folder or a zip archive."""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from seldepth.data.errors import DatasetError
from seldepth.data.images import MAX_PIXELS_ENV, pixel_limit


def read_bytes(source: str | os.PathLike | bytes, name: str, what: str = "file") -> bytes:
    """The bytes of a file (bytes pass through); ``what`` names the kind of file in errors.

    Raises:
        DatasetError: naming ``name``, when the file is missing or cannot be read.
    """
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{name}: {what} not found") from None
    except OSError as exc:
        raise DatasetError(f"{name}: {what} cannot be read ({exc})") from None


def read_text_file(path: str | os.PathLike, what: str = "list file") -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped: editors on Windows write one).

    Raises:
        DatasetError: naming the file, when it is missing, unreadable, or not UTF-8 text (with the line
            and the byte at fault).
    """
    data = read_bytes(path, str(path), what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}: the {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line {line}); "
                           f"save it as UTF-8") from None


def _npy_shape(f, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of the ``.npy`` stream ``f`` (read up to the data)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):  # 3.0 differs from 2.0 in the header's text encoding only
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unknown .npy format version {version}")
    return tuple(int(n) for n in shape), dtype


def check_array_size(shape: tuple[int, ...], dtype, name: str, max_elements: int | None = None) -> None:
    """Refuse an array whose header declares more elements than the pixel limit, before it is read.

    Raises:
        DatasetError: naming the file, the declared shape and how to raise the limit.
    """
    limit = pixel_limit(max_elements)
    count = math.prod(shape)
    if np.dtype(dtype).hasobject:
        raise DatasetError(f"{name}: an array of Python objects (dtype {dtype}); only numeric arrays are read")
    if limit > 0 and count > limit:
        how = f"; raise it with the environment variable {MAX_PIXELS_ENV}=N (0: no limit)" if max_elements is None else ""
        raise DatasetError(f"{name}: the array declares shape {shape} ({count:,} values, "
                           f"{count * np.dtype(dtype).itemsize / 2**30:.2f} GiB), more than the limit of {limit:,} "
                           f"values{how}")


def load_npy(source: str | os.PathLike | bytes, name: str | None = None, max_elements: int | None = None) -> np.ndarray:
    """A ``.npy`` array (no pickles), its declared size checked against the pixel limit before its data is read.

    Raises:
        DatasetError: naming the file: missing, not a readable ``.npy``, or too large.
    """
    name = name or str(source)
    data = read_bytes(source, name, ".npy file")
    try:
        shape, dtype = _npy_shape(io.BytesIO(data), name)
    except (ValueError, EOFError, SyntaxError, TypeError) as exc:
        raise DatasetError(f"{name}: not a readable .npy array ({exc})") from None
    check_array_size(shape, dtype, name, max_elements)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{name}: not a readable .npy array ({exc})") from None


def load_npz_member(source: str | os.PathLike | bytes, key: str, name: str | None = None,
                    max_elements: int | None = None) -> np.ndarray:
    """The array ``key`` of an ``.npz`` archive (no pickles), its declared size checked before it is decompressed.

    Raises:
        DatasetError: naming the file: missing, not a readable ``.npz``, no ``key``, or too large.
    """
    name = name or str(source)
    data = read_bytes(source, name, ".npz file")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = {m[:-4] if m.endswith(".npy") else m: m for m in archive.namelist()}
            if key not in members:
                raise DatasetError(f"{name}: no {key!r} array (has {', '.join(sorted(members)) or 'none'})")
            with archive.open(members[key]) as f:
                shape, dtype = _npy_shape(f, name)
            check_array_size(shape, dtype, f"{name} ({key!r})", max_elements)
            with archive.open(members[key]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, struct.error, ValueError, OSError, EOFError, KeyError,
            NotImplementedError, RuntimeError, SyntaxError, TypeError) as exc:
        raise DatasetError(f"{name}: not a readable .npz archive ({type(exc).__name__}: {exc})") from None


class FileSource:
    """Files under a folder, or members of a zip archive (opened lazily, once per process).

    Paths are relative (POSIX) strings; :meth:`describe` gives the name to put in messages.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.is_zip = self.root.is_file() and zipfile.is_zipfile(self.root)
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        self._names: set[str] | None = None

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            try:
                self._zip = zipfile.ZipFile(self.root)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DatasetError(f"{self.root}: not a readable zip archive ({exc})") from None
            self._zip_pid = os.getpid()
        return self._zip

    def names(self) -> set[str]:
        if self._names is None:
            self._names = set(self._archive().namelist())
        return self._names

    def exists(self, rel: str) -> bool:
        return rel in self.names() if self.is_zip else (self.root / rel).is_file()

    def read(self, rel: str) -> bytes:
        """The bytes of a file.

        Raises:
            DatasetError: naming the file, when it is missing or cannot be read.
        """
        try:
            if self.is_zip:
                return self._archive().read(rel)
            return (self.root / rel).read_bytes()
        except (KeyError, FileNotFoundError):
            raise DatasetError(f"{self.describe(rel)}: file not found") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError(f"{self.describe(rel)}: cannot be read ({exc})") from None

    def describe(self, rel: str) -> str:
        return f"{self.root}:{rel}" if self.is_zip else str(self.root / rel)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = None
        return state
