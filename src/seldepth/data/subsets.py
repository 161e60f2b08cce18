"""Subsets of a data set: samples through a transform, the first N, a chosen list, and the reader under them all."""

from __future__ import annotations

import os
from pathlib import Path

from torch.utils.data import Dataset, Subset

from seldepth.data.errors import DatasetError
from seldepth.data.files import read_text_file


class Transformed(Dataset):
    """A data set whose samples pass through ``transform``."""

    def __init__(self, dataset: Dataset, transform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.dataset[index])


def reader_and_indices(dataset: Dataset) -> tuple[Dataset, list[int]]:
    """The reader under ``Subset`` wrappers (``limit_*``, ``train_subset``) and each sample's index into it."""
    indices = list(range(len(dataset)))
    while isinstance(dataset, Subset):
        indices = [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    return dataset, indices


def first_n(dataset: Dataset, n: int | None) -> Dataset:
    """The first ``n`` samples of ``dataset`` (all of them for None or a larger ``n``)."""
    return dataset if n is None or n >= len(dataset) else Subset(dataset, range(n))


def read_selection(path: str | os.PathLike, pool_size: int | None = None, key: str = "data.train_subset") -> list[int]:
    """The indices of a chosen list (``index<TAB>path`` lines; ``#`` comments and blank lines skipped).

    Raises:
        FileNotFoundError, ValueError: naming ``key``, the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: {path} does not exist")
    try:
        text = read_text_file(path, "selection file")  # UTF-8 (a byte-order mark dropped)
    except DatasetError as exc:
        raise DatasetError(f"{key}: {exc}") from None
    indices = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split("\t")[0].split()[0]
        if not first.isdigit():
            raise ValueError(f"{key}: {path}, line {lineno}: expected an image index first, got {first!r}")
        index = int(first)
        if pool_size is not None and index >= pool_size:
            raise ValueError(f"{key}: {path}, line {lineno}: index {index} is beyond the split's {pool_size} images")
        indices.append(index)
    if not indices:
        raise ValueError(f"{key}: {path} lists no images")
    return indices
