"""Writing files so that a run killed at any moment leaves the old file or the new one, never half a file.

Every writer of a final file in seldepth goes through :func:`atomic_path`: the content is written to a
hidden temporary file beside the target (``.NAME.PID-TOKEN.tmp``, unique per process and call, so two
writers of the same file never share a temporary name), then renamed into place, which POSIX makes atomic
within one folder. ``fsync=True`` also flushes the file to disk before the rename (checkpoints).
"""

from __future__ import annotations

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


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """The temporary files that writers killed mid-write left in ``folder`` (not recursive)."""
    folder = Path(folder)
    return sorted(folder.glob(f".*{TMP_SUFFIX}")) if folder.is_dir() else []
