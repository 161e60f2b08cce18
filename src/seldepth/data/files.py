"""Uniform access to the files of a data set in a folder or a zip archive."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from seldepth.data.errors import DatasetError


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
