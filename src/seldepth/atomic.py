"""Writing files so that a run killed at any moment leaves the old file or the new one, never half a file.

Every writer of a final file in seldepth goes through :func:`atomic_path`: the content is written to a
hidden temporary file beside the target (``.NAME.PID-TOKEN.tmp``, unique per process and call, so two
writers of the same file never share a temporary name), then renamed into place, which POSIX makes atomic
within one folder. ``fsync=True`` also flushes the file to disk before the rename (checkpoints).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"  # every temporary file ends so (``stale_temporaries`` finds those of killed writers)


def _sync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False):
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error remove it.

    Args:
        path: the final file; its folder is created.
        fsync: flush the written file to disk before the rename (for checkpoints: survives a power loss).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        yield tmp
        if fsync:
            _sync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to a temporary file beside ``path``, then rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def stale_temporaries(folder: str | os.PathLike, suffix: str = TMP_SUFFIX) -> list[Path]:
    """The hidden temporary files (``.NAME...SUFFIX``) that writers killed mid-write left in ``folder`` (not recursive)."""
    folder = Path(folder)
    return sorted(folder.glob(f".*{suffix}")) if folder.is_dir() else []


def _writer_pid(path: Path) -> int | None:
    """The process id in a temporary name (``.NAME.PID-TOKEN.tmp``, ``.NAME.PID.raw``), or None."""
    parts = path.name.rsplit(".", 2)
    if len(parts) < 3:
        return None
    digits = parts[1].split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def _is_running(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # it exists (another user's process)
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, suffixes: tuple[str, ...] = (TMP_SUFFIX,)) -> list[Path]:
    """Remove the hidden temporary files (``.NAME...SUFFIX``) that writers killed mid-write left in ``folder``
    (not recursive); those of a writer process still running are kept. Returns the files removed."""
    removed = []
    for suffix in suffixes:
        for path in stale_temporaries(folder, suffix):
            if path.is_file() and not _is_running(_writer_pid(path)):
                try:
                    path.unlink()
                except FileNotFoundError:  # another process removed it first
                    continue
                removed.append(path)
    return removed


def _json_safe(x):
    """``x`` with every float that is not finite (NaN, +-inf) replaced by None, through dicts, lists and tuples."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def json_text(obj, indent: int | None = 2) -> str:
    """Standard JSON for ``obj``: NaN and infinities become ``null`` (never the non-standard ``NaN`` token).

    Example:
        >>> json_text({"rmse": float("nan"), "n": 3}, indent=None)
        '{"rmse": null, "n": 3}'
    """
    return json.dumps(_json_safe(obj), indent=indent, allow_nan=False)


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as standard JSON (:func:`json_text`: NaN as ``null``) through :func:`write_text_atomic`."""
    return write_text_atomic(path, json_text(obj, indent=indent))


class OutputPathError(ValueError):
    """An output path that cannot be written: a file where a folder is needed, a folder where a file is, or no
    permission. The message names the path (and the argument, when given)."""


def check_output(path: str | os.PathLike, kind: str = "file", key: str | None = None) -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind`` (``"file"`` or ``"folder"``).

    Nothing is created. A path that does not exist yet is fine when its nearest existing parent is a
    folder this process may write in (the writers create the missing folders).

    Args:
        path: the output file or folder.
        kind: ``"file"``: ``path`` must not be a folder and its folder must be writable (writers write a
            temporary file beside it, then rename it into place); ``"folder"``: ``path`` must not be a file
            (nor have one on its way) and must be writable.
        key: the argument that named the path (``"--out"``), for the message.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OutputPathError: (a ``ValueError``) naming the path and what is wrong with it.
    """
    if kind not in ("file", "folder"):
        raise ValueError(f"kind must be 'file' or 'folder', got {kind!r}")
    path = Path(path)
    name = f"{key} {path}" if key else str(path)
    if kind == "file" and (path.is_dir() or str(path).endswith(os.sep)):
        raise OutputPathError(f"{name} is a folder; a file name is expected here")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise OutputPathError(f"{name} is an existing file; an output folder is expected here")
    if kind == "file" and path.exists() and not os.access(path, os.W_OK):
        raise OutputPathError(f"{name}: the file exists and is read-only")
    # the nearest existing folder above (the folder itself when it exists): files are created there
    parent = path if kind == "folder" else path.parent
    missing = []
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"{name}: {parent} is a file, not a folder"
                              + (f", so the folder {missing[-1]} cannot be created" if missing else ""))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"{name}: no permission to write in {parent}")
    return path
