"""Lightning plumbing of a run folder: checkpoints written atomically, and a CSV logger that keeps its history on resume."""


from __future__ import annotations

import csv
import io
import os

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from seldepth.atomic import atomic_path, write_text_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, syncs it, then renames it into place.

    A run killed at any moment leaves either the previous checkpoint or the new one, never half a file.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)


class _KeepingCSVWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` keeps its rows up to ``keep_step``.

    Lightning's writer deletes the file whenever its folder exists, so a resumed run lost the
    history of the epochs before the checkpoint. Rows after ``keep_step`` (the interrupted epoch's,
    logged again by the resumed run) are dropped; ``keep_step = -1`` keeps nothing.
    """

    def __init__(self, log_dir: str, keep_step: int):
        self.keep_step = keep_step
        super().__init__(log_dir=log_dir)

    def _check_log_dir_exists(self) -> None:
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if r.get("step") not in (None, "") and int(float(r["step"])) <= self.keep_step]
            fields = list(reader.fieldnames or [])
        if not rows:
            os.remove(self.metrics_file_path)
            return
        self.metrics_keys = fields
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.metrics_file_path, text.getvalue())


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` keeps the rows logged before the checkpoint a run resumes from."""

    def __init__(self, *args, keep_step: int = -1, **kwargs):
        super().__init__(*args, **kwargs)
        self._keep_step = keep_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingCSVWriter(self.log_dir, self._keep_step)
        return self._experiment

