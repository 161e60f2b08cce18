"""Lightning plumbing of a run folder: checkpoints written atomically, and a CSV logger that keeps its history on resume."""


from __future__ import annotations

import csv
import io
import os

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from seldepth.atomic import atomic_path, write_text_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, syncs it, then renames it into place.

    A run killed at any moment leaves either the previous checkpoint or the new one, never half a file.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)


def _kept_rows(path: str, keep_step: int) -> tuple[list[dict], list[str]]:
    """The rows of a ``metrics.csv`` logged before ``keep_step``, and its header."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r.get("step") not in (None, "") and int(float(r["step"])) < keep_step]
        return rows, list(reader.fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` keeps the rows logged before the checkpoint a run resumes from.

    Lightning's writer deletes an existing ``metrics.csv``, so a resumed run lost the history of the
    epochs before its checkpoint. ``keep_step`` is the checkpoint's global step: the rows before it
    were logged by the steps the checkpoint holds (Lightning logs step k's metrics under k, before
    counting it); rows from it on (the interrupted epoch's, logged again by the resumed run) are
    dropped; ``keep_step = -1`` keeps nothing. Only public API: the old file is set aside before the
    writer starts, and the kept rows are written back when it has (``metrics_file_path``,
    ``metrics_keys``), so that the writer appends to them.
    """

    def __init__(self, *args, keep_step: int = -1, **kwargs):
        super().__init__(*args, **kwargs)
        self._kept: tuple[list[dict], list[str]] | None = None
        path = os.path.join(self.log_dir, ExperimentWriter.NAME_METRICS_FILE)
        aside = os.path.join(self.log_dir, _ASIDE)
        if os.path.isfile(path):
            os.replace(path, aside)  # a run killed before the rows are written back finds them here next time
        if os.path.isfile(aside):
            self._kept = _kept_rows(aside, keep_step) if keep_step >= 0 else ([], [])

    @property
    def experiment(self):
        experiment = super().experiment
        path = getattr(experiment, "metrics_file_path", None)  # None on the processes that do not log
        if self._kept is not None and path is not None:
            rows, fields = self._kept
            self._kept = None
            if rows:
                text = io.StringIO()
                writer = csv.DictWriter(text, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
                write_text_atomic(path, text.getvalue())
                experiment.metrics_keys = list(fields)
            os.remove(os.path.join(self.log_dir, _ASIDE))
        return experiment


_ASIDE = ".metrics.before-resume.csv"  # metrics.csv of the interrupted run, while the writer starts
