"""The folder of one training run: the one place that knows its file names, and readers for each file.

``seldepth train`` writes a run folder (``trainer.out_dir``)::

    config.yaml                the resolved config (re-run with --config config.yaml)
    checkpoints/best.ckpt      best validation metric (model selection never sees the test split)
    checkpoints/last.ckpt      latest state, for --resume
    csv/metrics.csv, tb/       CSV and TensorBoard logs
    model.safetensors          the best model as a model file (seldepth.load_model)
    pose.safetensors           the pose network (self-supervised runs)
    results.json               validation and test metrics of the best model

and an experiment adds to it::

    dissect/selectivity.{json,npz}   the dissection of the test split (seldepth dissect)
    ablation/ablation.json           the ablation curves (seldepth ablate)
    test_extra.json                  test metrics under the experiment's caps or median scaling
    run_done.json                    written last: the run is complete (times of each phase)

Example:
    >>> run = RunFolder("runs/demo/baseline")
    >>> run.results_path.name, run.last_checkpoint.parent.name
    ('results.json', 'checkpoints')
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from seldepth.selectivity.dissect import DissectionResult, LayerSelectivity

REQUIRED_FILES = ("config.yaml", "results.json")  # what makes a folder a finished training run


def _read_mapping(path: str | os.PathLike, parse, errors: tuple, what: str, expected: str) -> dict:
    """``parse(text)`` of the file at ``path``, checked to be a mapping; every failure names the file."""
    path = Path(path)
    try:
        value = parse(path.read_text())
    except (OSError, UnicodeDecodeError, *errors) as exc:
        raise ValueError(f"{path}: not readable {what} ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected {expected}, got {type(value).__name__}")
    return value


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object from ``path``.

    Raises:
        ValueError: naming the file, when it is missing, not JSON or not an object.
    """
    return _read_mapping(path, json.loads, (json.JSONDecodeError,), "JSON", "a JSON object")


def read_yaml(path: str | os.PathLike) -> dict:
    """A YAML mapping from ``path``.

    Raises:
        ValueError: naming the file, when it is missing, not YAML or not a mapping.
    """
    return _read_mapping(path, yaml.safe_load, (yaml.YAMLError,), "YAML", "a mapping of config keys")


def checkpoint_step(path: str | os.PathLike) -> int:
    """The ``global_step`` of a Lightning checkpoint (``last.ckpt`` of a run being resumed).

    Read with ``torch.load(weights_only=True)``: a pickle that would run code is refused, never executed.

    Raises:
        ValueError: naming the file, when it is truncated, not a checkpoint, holds code, or has no whole
            ``global_step``.
    """
    import warnings

    import torch

    try:
        with warnings.catch_warnings():  # torch's notes on unusual pickle protocols: the error below says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="meta", weights_only=True)
    except Exception as exc:  # pickle errors carry many types; code in the pickle is never run (weights_only)
        raise ValueError(f"{path}: cannot be resumed from: not a readable plain-tensor checkpoint (truncated, or "
                         f"holding code, which is never unpickled) ({type(exc).__name__}: {str(exc)[:200]}); "
                         f"remove it to restart the run, or resume from an intact copy") from None
    step = ckpt.get("global_step") if isinstance(ckpt, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"{path}: cannot be resumed from: no whole 'global_step' >= 0 in the checkpoint "
                         f"(got {step!r:.40})")
    return step


def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a Lightning CSVLogger ``metrics.csv`` as float arrays (NaN where a row leaves a cell empty).

    Rows hold only some columns (train rows per logged step, val rows per epoch, learning-rate
    rows without an epoch), so every column has one entry per row.

    Raises:
        ValueError: naming the file, for a cell that is not a number.
    """
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header, body = rows[0], rows[1:]
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        values = np.full(len(body), np.nan)
        for i, row in enumerate(body):
            cell = row[j].strip() if j < len(row) else ""
            if cell:
                try:
                    values[i] = float(cell)
                except ValueError:
                    raise ValueError(f"{path}: row {i + 2}, column {name!r}: not a number: {cell!r}") from None
        columns[name] = values
    return columns


class RunFolder:
    """A training run folder: the paths of its files (whether they exist or not) and cached readers.

    Args:
        path: the folder.
        name: its label in tables and reports (default: the folder name).
    """

    CONFIG = "config.yaml"
    RESULTS = "results.json"
    MODEL_FILE = "model.safetensors"
    POSE_FILE = "pose.safetensors"
    CHECKPOINTS = "checkpoints"
    BEST_CHECKPOINT = "best.ckpt"
    LAST_CHECKPOINT = "last.ckpt"
    METRICS_CSV = "csv/metrics.csv"
    DISSECTION = "dissect"
    ABLATION = "ablation"
    TEST_EXTRA = "test_extra.json"
    DONE = "run_done.json"

    def __init__(self, path: str | os.PathLike, name: str | None = None):
        self.path = Path(path)
        self.name = name if name is not None else (self.path.name or str(self.path))

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r}, name={self.name!r})"

    # ----------------------------------------------------------------------------------------- paths
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def results_path(self) -> Path:
        return self.path / self.RESULTS

    @property
    def model_file_path(self) -> Path:
        return self.path / self.MODEL_FILE

    @property
    def pose_file_path(self) -> Path:
        return self.path / self.POSE_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / self.BEST_CHECKPOINT

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / self.LAST_CHECKPOINT

    @property
    def metrics_csv_path(self) -> Path:
        return self.path / self.METRICS_CSV

    @property
    def dissection_dir(self) -> Path:
        return self.path / self.DISSECTION

    @property
    def ablation_dir(self) -> Path:
        return self.path / self.ABLATION

    @property
    def ablation_path(self) -> Path:
        return self.ablation_dir / "ablation.json"

    @property
    def test_extra_path(self) -> Path:
        return self.path / self.TEST_EXTRA

    @property
    def done_path(self) -> Path:
        return self.path / self.DONE

    # ----------------------------------------------------------------------------------------- state
    def check(self) -> "RunFolder":
        """This folder, after checking that it exists and holds ``config.yaml`` and ``results.json``.

        Raises:
            ValueError: naming the folder and the missing file.
        """
        if not self.path.is_dir():
            raise ValueError(f"run folder {self.path} does not exist (or is not a folder)")
        for name in REQUIRED_FILES:
            if not (self.path / name).is_file():
                raise ValueError(f"run folder {self.path} has no {name} (expected a folder written by seldepth train)")
        return self

    @property
    def is_done(self) -> bool:
        """True once an experiment finished every phase of this run (``run_done.json`` exists)."""
        return self.done_path.is_file()

    @property
    def model_file(self) -> Path | None:
        """``model.safetensors``, or None before training finished."""
        return self.model_file_path if self.model_file_path.is_file() else None

    def final_checkpoint(self) -> Path:
        """The checkpoint a finished run's model comes from: ``best.ckpt``, else ``last.ckpt``."""
        return self.best_checkpoint if self.best_checkpoint.exists() else self.last_checkpoint

    # ----------------------------------------------------------------------------------------- readers
    @cached_property
    def config(self) -> dict:
        """``config.yaml`` as a plain mapping (read as is; ``seldepth.training.load_config`` checks it)."""
        return read_yaml(self.config_path)

    @cached_property
    def results(self) -> dict:
        """``results.json``."""
        return read_json(self.results_path)

    def done(self) -> dict | None:
        """``run_done.json``, or None without one."""
        return read_json(self.done_path) if self.is_done else None

    def test_extra(self) -> dict | None:
        """``test_extra.json``, or None without one."""
        return read_json(self.test_extra_path) if self.test_extra_path.is_file() else None

    def metrics_log(self) -> dict[str, np.ndarray] | None:
        """Columns of ``csv/metrics.csv``, or None without one."""
        if "_metrics_log" not in self.__dict__:
            path = self.metrics_csv_path
            self.__dict__["_metrics_log"] = read_metrics_csv(path) if path.is_file() else None
        return self.__dict__["_metrics_log"]

    def dissection(self) -> dict | None:
        """``dissect/selectivity.json``, or None without one."""
        if "_dissection" not in self.__dict__:
            path = self.dissection_dir / "selectivity.json"
            self.__dict__["_dissection"] = read_json(path) if path.is_file() else None
        return self.__dict__["_dissection"]

    def dissection_result(self) -> DissectionResult | None:
        """The whole saved dissection (:meth:`DissectionResult.load`), or None without one."""
        if not (self.dissection_dir / "selectivity.npz").is_file():
            return None
        return DissectionResult.load(self.dissection_dir)

    def layer_selectivity(self, layer: str) -> LayerSelectivity | None:
        """One layer of ``dissect/selectivity.npz`` (with the JSON's module path), or None if it is not there."""
        npz = self.dissection_dir / "selectivity.npz"
        if not npz.is_file():
            return None
        info = ((self.dissection() or {}).get("layers") or {}).get(layer, {})
        try:
            with np.load(npz) as arrays:
                if f"{layer}/R" not in arrays:
                    return None
                return LayerSelectivity.from_arrays(layer, info, arrays)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # truncated, empty, forged
            raise ValueError(f"{npz}: not readable ({exc})") from None

    def ablation(self) -> dict | None:
        """``ablation/ablation.json``, or None without one."""
        if "_ablation" not in self.__dict__:
            path = self.ablation_path
            self.__dict__["_ablation"] = read_json(path) if path.is_file() else None
        return self.__dict__["_ablation"]

    # ------------------------------------------------------------------------------ the config, read
    def config_section(self, key: str) -> dict:
        """A mapping of the config (``{}`` if absent or not a mapping)."""
        value = self.config.get(key)
        return value if isinstance(value, dict) else {}

    @property
    def model_name(self) -> str:
        return str(self.config.get("model", "?"))

    @property
    def regularised_layers(self) -> list[str]:
        """The layers the selectivity regulariser acted on (empty if it was off)."""
        sel = self.config_section("selectivity")
        layers = sel.get("layers") or []
        if isinstance(layers, str):
            layers = [s.strip() for s in layers.split(",") if s.strip()]
        return [str(x) for x in layers] if sel.get("weight", 1) else []

    @property
    def data_spec(self) -> str | None:
        return self.config_section("data").get("path")

    @property
    def test_split(self) -> str:
        return str(self.config_section("data").get("test_split") or "test")
