"""Expanding ``seldepth predict`` INPUT arguments into image files and videos, each with an output name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seldepth.data.files import read_text_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class InputItem:
    """One image or video to predict.

    Attributes:
        path: the file.
        name: output name relative to the output folder, without the ``_depth.npy`` etc. endings
            (the file's stem; ``sub/dir/stem`` for a file found in a sub-folder of a folder input).
        kind: ``image`` or ``video``.
        source: the INPUT argument it came from (and list line), for messages.
    """

    path: Path
    name: str
    kind: str
    source: str


def _is_under(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def expand_inputs(inputs: list[str | Path], exclude: str | Path | None = None) -> tuple[list[InputItem], list[str]]:
    """Expand INPUT arguments into image and video items.

    An INPUT is an image file, a video file (.mp4/.avi/.mov/.mkv/.webm), a folder (searched
    recursively for images; sub-folders are kept in the output names so equal stems do not
    collide) or a text file (.txt/.lst/.list) listing image or video paths one per line
    (relative paths resolved against the list's folder; empty lines and ``#`` comments ignored).

    Args:
        inputs: the INPUT arguments.
        exclude: a folder whose files are never taken (the output folder, if inside an input folder).

    Returns:
        (items, notes): the items in order, and notes on names made unique (``NAME_2``, ...).

    Raises:
        FileNotFoundError: an INPUT argument does not exist (named). A file *listed* in a text
            file that is missing is not an error here: it is reported and skipped when read.
        ValueError: no inputs, or a folder/list with no images in it.
    """
    if not inputs:
        raise ValueError("no INPUT given: pass image files, folders, list files (.txt) or videos")
    exclude = Path(exclude) if exclude is not None else None
    raw: list[tuple[Path, str, str]] = []  # path, name, source
    for arg in inputs:
        path = Path(arg)
        if not path.exists():
            raise FileNotFoundError(f"input not found: {path}")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
                           and not _is_under(p, exclude))
            if not found:
                raise ValueError(f"input folder {path} has no images ({', '.join(IMAGE_SUFFIXES)})")
            for p in found:
                rel = p.relative_to(path).with_suffix("")
                raw.append((p, rel.as_posix(), str(path)))
        elif path.suffix.lower() in LIST_SUFFIXES:
            listed = []
            for number, line in enumerate(read_text_file(path).splitlines(), 1):  # UTF-8, a BOM dropped
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                p = Path(line)
                p = p if p.is_absolute() else path.parent / p
                listed.append((p, p.stem, f"{path} line {number}"))
            if not listed:
                raise ValueError(f"list file {path} names no files")
            raw.extend(listed)
        else:
            raw.append((path, path.stem, str(path)))

    items, notes, used = [], [], set()
    for path, name, source in raw:
        unique, n = name, 1
        while unique.lower() in used:
            n += 1
            unique = f"{name}_{n}"
        if unique != name:
            notes.append(f"{path}: output name {name!r} already taken, written as {unique!r}")
        used.add(unique.lower())
        items.append(InputItem(path, unique, _kind(path), source))
    return items, notes
