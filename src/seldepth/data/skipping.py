"""``--on-error skip``: bad samples are left out of batches, counted, and reported at the end.

:class:`SkipBadSamples` turns a sample whose reading raises :class:`DatasetError` into a
marker; :func:`~seldepth.data.collate.collate_samples` drops markers from the batch and lists
their messages under ``batch["skipped"]``; :func:`sample_batches` records those messages on the
wrapper in the main process (so the count is right with loader workers too) and yields only
batches that still hold samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch.utils.data import DataLoader, Dataset

from seldepth.data.errors import DatasetError

ON_ERROR_CHOICES = ("stop", "skip")


def check_on_error(value: str, key: str = "--on-error") -> str:
    if value not in ON_ERROR_CHOICES:
        raise ValueError(f"{key}: expected one of {', '.join(ON_ERROR_CHOICES)}, got {value!r}")
    return value


def leave_out(message: str, on_error: str, skipped: list[str]) -> None:
    """A listed entry a reader cannot use (missing file, bad index): raise under ``stop``, record it under ``skip``.

    Raises:
        DatasetError: with ``message``, unless ``on_error`` is ``skip``.
    """
    if on_error != "skip":
        raise DatasetError(message)
    skipped.append(message)


class SkipBadSamples(Dataset):
    """A data set whose unreadable samples become ``{"skipped": message, "index": i}`` markers.

    ``skipped`` maps a description (file and reason) to itself, in order: the entries the
    reader left out when it was opened, then every sample that failed while reading.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.layout = getattr(dataset, "layout", type(dataset).__name__)
        self.skipped: dict[str, None] = dict.fromkeys(getattr(dataset, "skipped", []))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        try:
            return self.dataset[index]
        except DatasetError as exc:
            message = str(exc)
            self.skipped[message] = None
            return {"skipped": message, "index": index}

    def record(self, messages: Iterable[str]) -> None:
        self.skipped.update(dict.fromkeys(messages))

    def __getattr__(self, name):  # layout-specific attributes of the reader (pairs, root, ...)
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def skipped_of(dataset: Dataset) -> list[str]:
    """The messages of the samples a data set skipped (empty unless it is a :class:`SkipBadSamples`)."""
    return list(getattr(dataset, "skipped", {})) if isinstance(dataset, SkipBadSamples) else []


def _skipper(dataset) -> SkipBadSamples | None:
    """The :class:`SkipBadSamples` under ``dataset`` (through ``Subset``-like ``.dataset`` wrappers), if any."""
    for _ in range(8):
        if isinstance(dataset, SkipBadSamples):
            return dataset
        dataset = getattr(dataset, "dataset", None)
        if dataset is None:
            return None
    return None


def is_skipped(sample) -> bool:
    """Whether ``sample`` is the marker :class:`SkipBadSamples` puts in place of an unreadable sample."""
    return isinstance(sample, dict) and "skipped" in sample and "image" not in sample


def data_name(dataset) -> str:
    """The data spec a data set was opened from (:func:`~seldepth.data.spec.open_dataset` records it), else
    its layout or type, through ``Subset``-like ``.dataset`` wrappers: for messages about the data as a whole."""
    for _ in range(8):
        if dataset is None:
            break
        spec = getattr(dataset, "__dict__", {}).get("spec")
        if spec:
            return f"data {spec!r}"
        inner = getattr(dataset, "__dict__", {}).get("dataset")
        if inner is None:
            layout = getattr(dataset, "layout", None)
            return f"the data ({layout or type(dataset).__name__})"
        dataset = inner
    return "the data"


def no_readable_sample(dataset) -> DatasetError:
    """The error for a data set none of whose samples could be read (under ``on_error="skip"``)."""
    skipper = _skipper(dataset)
    messages = list(skipper.skipped) if skipper is not None else []
    first = f"; the first: {messages[0]}" if messages else ""
    return DatasetError(f"no sample of {data_name(dataset)} could be read ({len(messages)} skipped{first})")


def first_sample(dataset) -> dict:
    """The first sample of ``dataset`` that could be read (skip markers passed over).

    Raises:
        DatasetError: naming the data spec, when no sample can be read or there is none.
    """
    for i in range(len(dataset)):
        sample = dataset[i]
        if not is_skipped(sample):
            return sample
    if len(dataset) == 0:
        raise DatasetError(f"{data_name(dataset)} has no samples")
    raise no_readable_sample(dataset)


def sample_batches(loader: DataLoader) -> Iterator[dict]:
    """The batches of ``loader`` that hold samples; skipped samples are recorded on its data set."""
    skipper = _skipper(loader.dataset)
    for batch in loader:
        messages = batch.get("skipped")
        if messages and skipper is not None:
            skipper.record(messages)
        if batch.get("meta"):
            yield batch
