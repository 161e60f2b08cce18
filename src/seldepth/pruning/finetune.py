"""Fine-tuning a pruned model (METER or the real-time network) with the training pipeline: a training config whose
model is the pruned one.

A pruned model keeps the original's remaining weights as they were. Fine-tuning trains it for a few
epochs with :func:`seldepth.training.train`, from an ordinary training config (the one the original was
trained with, recorded in its model file by ``seldepth train``, or any other) in which:

* ``model`` is the pruned model's architecture (``meter_xxs``, ..., ``realtime_depth``) and ``model_options``
  holds its widths (the config fields of :mod:`seldepth.pruning.groups`: for METER ``channels``, ``decoder_in``,
  ``decoder_widths``, ``mv2_widths``, ``meter_widths``, ``up_widths``; for the real-time network
  ``conv_widths``, ``mv2_widths``, ``reduce_widths``, ``decoder_widths``), so the run builds a model of the
  pruned widths;
* ``init_from`` is the pruned model file (:mod:`seldepth.training.transfer`: every tensor is taken
  from it, so the run starts from the pruned weights and normalisation);
* ``trainer.epochs`` is the number of fine-tuning epochs and ``trainer.out_dir`` the run folder.

Everything else (data, loss, optimiser, selectivity regulariser, precision) is the config's. The run
folder is an ordinary training run (``config.yaml`` re-runs it); the fine-tuned model file is the run's
model (its best validation checkpoint, as ``seldepth train``) with the pruned model's provenance, its
``pruning.fine_tuned_epochs`` raised by the epochs trained and a ``fine_tuning`` entry (run folder,
config, validation and test metrics).

Example:
    >>> pruned = "runs/l1_060_finetune/pruned.safetensors"
    >>> finetune_pruned(pruned, "train_nyu.yaml", 5, "runs/l1_060_finetune", "meter_xxs_l1_060.safetensors")
    PosixPath('meter_xxs_l1_060.safetensors')
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from seldepth.defaults import check_number
from seldepth.models import create_model
from seldepth.pruning.groups import PrunableModel, check_prunable, prunable_groups
from seldepth.pruning.pipeline import check_out

PRUNED_FILE = "pruned.safetensors"  # in the fine-tuning run folder: the pruned model before fine-tuning
RUN_SUFFIX = "_finetune"  # the run folder of OUT.safetensors is OUT_finetune/ beside it


def finetune_run_dir(out: str | os.PathLike) -> Path:
    """The fine-tuning run folder of the model file ``out``: ``<stem>_finetune`` beside it.

    Example:
        >>> finetune_run_dir("models/meter_xxs_l1_060.safetensors")
        PosixPath('models/meter_xxs_l1_060_finetune')
    """
    out = Path(out)
    return out.with_name(out.stem + RUN_SUFFIX)


def recorded_train_config(model) -> dict | None:
    """The training config recorded in ``model``'s provenance (its ``metadata``), None when there is none.

    ``seldepth train`` records its config as ``config``; a fine-tuned pruned model records its fine-tuning
    run's as ``fine_tuning.config``. An imported official model or a checkpoint records none.

    Example:
        >>> recorded_train_config(load_model("runs/meter_xxs/model.safetensors"))["trainer"]["epochs"]
        60
    """
    provenance = (getattr(model, "metadata", None) or {}).get("provenance") or {}
    for config in (provenance.get("config"), (provenance.get("fine_tuning") or {}).get("config")):
        if isinstance(config, dict):
            return copy.deepcopy(config)
    return None


def _check_run_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path, after checking it can be a new run folder (no file there, no run in it)."""
    from seldepth.training.run_folder import RunFolder

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: {out_dir} is a file; the fine-tuning run folder is written there")
    if RunFolder(out_dir).last_checkpoint.exists():
        raise ValueError(f"out_dir: {out_dir} already holds a training run; remove it or choose another")
    return out_dir


def _config_name(train_config) -> str:
    """How errors name ``train_config``: with its file when it is one."""
    return f"train_config {train_config}" if isinstance(train_config, (str, os.PathLike)) else "train_config"


def _config_mapping(train_config) -> dict:
    """``train_config`` (a TrainConfig, a mapping of config keys or a YAML file) as a fresh mapping."""
    from seldepth.training.config import TrainConfig
    from seldepth.training.run_folder import read_yaml

    if isinstance(train_config, TrainConfig):
        return train_config.to_dict()
    if isinstance(train_config, dict):
        return copy.deepcopy(train_config)
    if isinstance(train_config, (str, os.PathLike)):
        try:
            return read_yaml(train_config)
        except ValueError as exc:
            raise ValueError(f"train_config: {exc}") from None
    raise ValueError(f"train_config: expected a TrainConfig, a mapping of training config keys or a YAML file, "
                     f"got {type(train_config).__name__}")


def _one_line(exc: Exception) -> str:
    return " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())


def width_options(model: PrunableModel) -> dict:
    """The config fields of ``model`` that pruning changes (its widths), as ``model_options`` of a training config.

    Example:
        >>> width_options(pruned)["mv2_widths"]
        [24, 24, 36, 36, 36, 72, 96]
    """
    config = model.config_dict()
    fields = sorted({g.field for g in prunable_groups(model)})
    return {name: list(config[name]) if isinstance(config[name], tuple) else config[name] for name in fields}


def finetune_config(model: PrunableModel, init_from: str | os.PathLike, train_config, epochs: int,
                    out_dir: str | os.PathLike,
                    check_init: bool = True):
    """The checked training config that fine-tunes ``model`` (the model file ``init_from``) for ``epochs`` epochs.

    Args:
        model: the pruned model (its architecture and widths).
        init_from: its model file (the run starts from its weights).
        train_config: a :class:`~seldepth.training.config.TrainConfig`, a mapping of training config keys or a
            YAML config file (what ``seldepth train --config`` reads).
        epochs: >= 1.
        out_dir: the run folder.
        check_init: False when ``init_from`` is not written yet (:func:`seldepth.training.config.validate`).

    Returns:
        ``train_config`` with ``model``, ``model_options`` (its options, then ``model``'s widths), ``init_from``,
        ``trainer.epochs`` and ``trainer.out_dir`` set.

    Raises:
        ValueError: naming ``epochs``, or ``train_config`` and the key at fault: a key that does not parse or
            a bad value, another ``model`` than the pruned one, ``model_options`` that build another model
            than ``model`` (``output: softplus`` for a ``linear`` one, say), data it cannot find.
    """
    from seldepth.training.config import parse_train_config

    check_number("epochs", epochs, 1, integer=True)
    model = check_prunable(model)
    mapping, name = _config_mapping(train_config), _config_name(train_config)
    named = mapping.get("model") or model.name
    if named != model.name:
        raise ValueError(f"{name}: model is {named!r}, but the pruned model is a {model.name}; fine-tuning trains "
                         f"the pruned model (a config of {model.name})")
    options = mapping.get("model_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{name}: model_options must be a mapping, got {options!r:.80}")  # noqa: TRY004 (a config value)
    trainer = mapping.get("trainer") or {}
    if not isinstance(trainer, dict):
        raise ValueError(f"{name}: trainer must be a mapping, got {trainer!r:.80}")  # noqa: TRY004 (a config value)
    mapping.update(model=model.name, model_options={**options, **width_options(model)}, init_from=str(init_from),
                   trainer={**trainer, "epochs": epochs, "out_dir": str(out_dir)})
    try:
        cfg = parse_train_config(mapping, check_init=check_init)
    except ValueError as exc:
        raise ValueError(f"{name}: {_one_line(exc)}") from None
    with torch.device("meta"):
        built = create_model(cfg.model, **cfg.model_options).config_dict()
    wanted = model.config_dict()
    differ = [k for k in wanted if built.get(k) != wanted[k]]
    if differ:
        k = differ[0]
        raise ValueError(f"{name}: model_options build {model.name} with {k} {built.get(k)!r}, but the pruned model "
                         f"has {k} {wanted[k]!r}")
    return cfg


def check_finetune_args(model: PrunableModel, train_config, epochs: int, out_dir: str | os.PathLike):
    """Every check of :func:`finetune_pruned` that can be made before the pruned model exists; returns the config.

    ``model`` is the model about to be pruned (a pruned one differs from it in its widths only). Checked:
    ``epochs``, the config (:func:`finetune_config`, ``init_from`` left out), that its data opens (the
    training and validation splits; a missing default synthetic set is generated, as training would), and
    that ``out_dir`` holds no training run yet.

    Raises:
        ValueError: naming ``epochs``, ``out_dir`` or ``train_config`` and its key.
    """
    from seldepth.data.spec import open_dataset, prepare

    check_number("epochs", epochs, 1, integer=True)
    out_dir = _check_run_dir(out_dir)
    cfg = finetune_config(model, out_dir / PRUNED_FILE, train_config, epochs, out_dir, check_init=False)
    name = _config_name(train_config)
    prepare(cfg.data.path, key=f"{name}: data.path")
    for split in dict.fromkeys((cfg.data.train_split, cfg.data.val_split)):
        open_dataset(cfg.data.path, split, key=f"{name}: data.path")
    return cfg


def finetune_pruned(pruned_path: str | os.PathLike, train_config, epochs: int, out_dir: str | os.PathLike,
                    out: str | os.PathLike, resume: bool = False) -> Path:
    """Fine-tune the pruned model file ``pruned_path`` for ``epochs`` epochs; write the result to ``out``.

    Args:
        pruned_path: a pruned model file (``seldepth prune``'s output; any METER or realtime_depth file works).
        train_config: the training config (see :func:`finetune_config`).
        epochs: >= 1.
        out_dir: the run folder (``trainer.out_dir``); it must not hold a run yet.
        out: the fine-tuned model file (``.safetensors``).
        resume: ``out_dir`` may hold this fine-tuning's interrupted run: it is resumed from its last checkpoint.

    Returns:
        ``out``: the run's model (best validation checkpoint) with the run's preprocessing (the pruned model's
        normalisation at the config's ``data.input_size``), the pruned model's camera, and its provenance with
        ``pruning.fine_tuned_epochs`` raised by ``epochs`` and ``fine_tuning``: ``{run, pruned_file, epochs,
        config, val_metrics, test_metrics}``.

    Raises:
        ValueError: naming the argument at fault, before training.
    """
    from seldepth.models.model_file import read_model_file, save_model_file
    from seldepth.training import RunFolder, train

    out = check_out(out)
    check_number("epochs", epochs, 1, integer=True)
    run = RunFolder(out_dir if resume else _check_run_dir(out_dir))
    pruned = read_model_file(pruned_path)
    cfg = finetune_config(pruned, pruned_path, train_config, epochs, out_dir)
    results = train(cfg, resume=resume and run.last_checkpoint.exists())
    if not results:  # a process other than rank 0 of a multi-process run: rank 0 writes the model file
        return out
    tuned = read_model_file(run.model_file_path)
    metadata = pruned.metadata
    before = dict(metadata.get("provenance") or {})
    pruning = dict(before.get("pruning") or {})
    pruning["fine_tuned_epochs"] = int(pruning.get("fine_tuned_epochs") or 0) + epochs
    provenance = {**before, "pruning": pruning, "fine_tuning": {
        "run": str(out_dir), "pruned_file": str(pruned_path), "epochs": epochs, "config": cfg.to_dict(),
        "val_metrics": results["val"]["metrics"],
        "test_metrics": results["test"]["metrics"] if "test" in results else None}}
    return save_model_file(tuned, out, tuned.preprocessing, provenance, intrinsics=metadata.get("intrinsics"))

