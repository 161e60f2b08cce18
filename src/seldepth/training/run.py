"""A whole training run from a checked config: the module, data and trainer built for it, then scored and saved.

The run folder (``trainer.out_dir``) it writes is described, and its file names kept, by
:class:`~seldepth.training.run_folder.RunFolder`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from seldepth.atomic import stale_temporaries, write_text_atomic
from seldepth.data.datamodule import DepthDataModule
from seldepth.data.errors import DatasetError
from seldepth.data.sequences import FrameSnippets
from seldepth.data.spec import open_dataset, prepare
from seldepth.defaults import has_extra
from seldepth.evaluation.evaluate import evaluate
from seldepth.evaluation.protocol import get_protocol
from seldepth.models import create_model
from seldepth.models.model_file import read_model_file, save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.training.config import BEST_BY, TrainConfig, dump_config
from seldepth.training.loggers import AtomicCheckpointIO, ResumableCSVLogger
from seldepth.training.module import DepthTrainingModule
from seldepth.training.resume import (
    ResumableDepthData,
    ResumableSequenceData,
    ResumeState,
)
from seldepth.training.run_folder import RunFolder, checkpoint_step
from seldepth.training.selfsup import SelfSupervisedModule, evaluate_pose
from seldepth.training.transfer import init_from_file, source_preprocessing

SELECTIVITY_ASSIGNMENT = "selectivity_assignment.json"  # in the run folder: the regularised units' bins at the end


def build_module(cfg: TrainConfig) -> L.LightningModule:
    """The Lightning module of a run: :class:`DepthTrainingModule`, or with ``selfsup``
    :class:`~seldepth.training.selfsup.SelfSupervisedModule` (a run started ``init_from`` a file keeps
    the file's normalisation)."""
    preprocessing = (source_preprocessing(cfg.init_from, tuple(cfg.data.input_size)) if cfg.init_from
                     else Preprocessing(input_size=tuple(cfg.data.input_size)))
    d = cfg.to_dict()
    if cfg.selfsup is not None:
        return SelfSupervisedModule(model=cfg.model, preprocessing=preprocessing.to_dict(), optim=d["optim"],
                                    protocol=cfg.protocol, model_options=d["model_options"], selfsup=d["selfsup"],
                                    freeze=d["freeze"])
    return DepthTrainingModule(model=cfg.model, preprocessing=preprocessing.to_dict(), loss=d["loss"], optim=d["optim"],
                               protocol=cfg.protocol, selectivity=d["selectivity"], model_options=d["model_options"],
                               multiscale=d["multiscale"], teacher=d["teacher"], synergy=d["synergy"], freeze=d["freeze"])


def build_datamodule(cfg: TrainConfig) -> DepthDataModule:
    """Samples for supervised training, or frame snippets for ``selfsup``; the training order and augmentation
    are drawn from ``trainer.seed`` and resumable mid-epoch (:mod:`seldepth.training.resume`)."""
    if cfg.selfsup is not None:
        return ResumableSequenceData(cfg.data, cfg.selfsup.stride, seed=cfg.trainer.seed)
    return ResumableDepthData(cfg.data, seed=cfg.trainer.seed)


class BestAfterWarmup(Callback):
    """``best.ckpt`` chosen among the epochs in which the selectivity regulariser is on.

    The warm-up epochs train exactly as the unregularised run of the same seed, so a best checkpoint taken from
    them would be the baseline's model reported as the regularised one. When the first regularised epoch
    starts, the best checkpoint's record is cleared (``best_k_models``, ``best_model_score``, ``kth_value``:
    the attributes Lightning saves in its state), so the first validation after warm-up writes ``best.ckpt``
    again and later ones compete only with it (a run resumed inside that epoch finds the record already cleared).
    """

    def __init__(self, best: ModelCheckpoint, warmup_epochs: int):
        self.best = best
        self.warmup_epochs = warmup_epochs

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch != self.warmup_epochs or self.best.best_model_score is None:
            return
        self.best.best_k_models = {}
        self.best.best_model_score = None
        self.best.best_model_path = self.best.kth_best_model_path = ""
        self.best.kth_value = torch.tensor(float("inf") if self.best.mode == "min" else -float("inf"))


def build_trainer(cfg: TrainConfig, out: Path, extra_callbacks=(), resume_step: int = -1) -> L.Trainer:
    """Lightning's trainer for a run folder; ``resume_step``: global step of the checkpoint resumed from (-1: none)."""
    t = cfg.trainer
    # best.ckpt follows validation RMSE (or trainer.best_by); last.ckpt is the latest state (every epoch, or every
    # N steps), for --resume.
    run = RunFolder(out)
    best = ModelCheckpoint(dirpath=run.checkpoint_dir, filename=Path(RunFolder.BEST_CHECKPOINT).stem, monitor=t.best_by, mode=BEST_BY[t.best_by],
                           save_top_k=1, enable_version_counter=False)
    every = {"every_n_train_steps": t.checkpoint_every_n_steps} if t.checkpoint_every_n_steps else {"every_n_epochs": 1}
    last = ModelCheckpoint(dirpath=run.checkpoint_dir, filename=Path(RunFolder.LAST_CHECKPOINT).stem, monitor=None, save_top_k=1,
                           enable_version_counter=False, **every)
    callbacks = [best, last, LearningRateMonitor(logging_interval="epoch"), ResumeState(), *extra_callbacks]
    if cfg.selectivity.enabled and cfg.selectivity.warmup_epochs:
        callbacks.append(BestAfterWarmup(best, cfg.selectivity.warmup_epochs))
    loggers = [ResumableCSVLogger(out, name="csv", version="", keep_step=resume_step)]
    if has_extra("tensorboard"):  # the tensorboard extra; without it the CSV log alone
        loggers.append(TensorBoardLogger(out, name="tb", version=""))
    return L.Trainer(max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                     strategy=t.strategy, precision=t.precision, callbacks=callbacks, logger=loggers,
                     log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.progress_bar,
                     plugins=[AtomicCheckpointIO()], use_distributed_sampler=True, num_sanity_val_steps=0,
                     max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None,
                     enable_model_summary=False)


def validate_checkpoint(cfg: TrainConfig, checkpoint: str | os.PathLike) -> dict[str, float]:
    """Validation metrics of a checkpoint under ``cfg``'s data, protocol and trainer (devices, strategy).

    Under DDP each process scores its share of the validation set once (no padding repeats) and
    :class:`~seldepth.evaluation.metrics.DepthMetrics` reduces the sums across processes, so the result
    equals that of one process.
    """
    prepare(cfg.data.path, key="data.path")
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    t = cfg.trainer
    trainer = L.Trainer(accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
                        precision=t.precision, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.validate(module, datamodule=datamodule, ckpt_path=str(checkpoint), verbose=False)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Run training from a checked config; returns ``results.json``'s content (on rank 0).

    Raises:
        ValueError: the run folder has checkpoints and ``resume`` is False.
    """
    out = Path(cfg.trainer.out_dir)
    run = RunFolder(out)
    last = run.last_checkpoint
    if last.exists() and not resume:
        raise ValueError(f"trainer.out_dir: {out} already holds a run; pass --resume to continue it or choose another out_dir")
    data_path = prepare(cfg.data.path, key="data.path")
    out.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(run.checkpoint_dir):  # left by a run killed while writing
        stale.unlink()
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    resume_step = checkpoint_step(last) if resume and last.exists() else -1  # ValueError naming a bad last.ckpt
    if cfg.init_from and resume_step < 0:  # a resumed run takes every weight from its checkpoint
        taken = init_from_file(module.model, cfg.init_from, tuple(cfg.init_skip))
        print(f"init_from {cfg.init_from}: {len(taken)} tensors"
              + (f"; fresh: {', '.join(cfg.init_skip)}" if cfg.init_skip else ""), flush=True)
    trainer = build_trainer(cfg, out, resume_step=resume_step)
    if trainer.is_global_zero:
        write_text_atomic(run.config_path, dump_config(cfg))
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume and last.exists() else None)
    elapsed = time.time() - start
    if not trainer.is_global_zero:
        return {}
    if isinstance(module, DepthTrainingModule) and module.selectivity_config.enabled:
        write_assignment(module, out)
    before = next(c.seconds_before for c in trainer.callbacks if isinstance(c, ResumeState))  # the earlier parts'
    return finish_run(cfg, out, data_path, before + elapsed, elapsed_this_run=elapsed)


def write_assignment(module: DepthTrainingModule, out: Path) -> Path:
    """Write ``selectivity_assignment.json`` to the run folder ``out``: the bins of the regularised layers' units at
    the end of training, fixed or preferred, as ``{layer: {num_bins, bins_spec, edges, assigned}}``
    (:meth:`~seldepth.selectivity.regularizer.SelectivityRegularizer.assignment_summary`).

    Example:
        >>> write_assignment(module, Path("runs/x")).name
        'selectivity_assignment.json'
    """
    return write_text_atomic(out / SELECTIVITY_ASSIGNMENT, json.dumps(module.regularizer.assignment_summary(), indent=2))


def finish_pose(cfg: TrainConfig, out: Path, checkpoint: Path) -> dict:
    """Save the self-supervised run's pose network (``pose.safetensors``) and score it on the test split's snippets."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    pose_net = create_model(cfg.selfsup.pose_model, sources=2)
    pose_net.load_state_dict({k[len("pose_net."):]: v for k, v in state.items() if k.startswith("pose_net.")})
    size = tuple(cfg.data.input_size)
    save_model_file(pose_net, RunFolder(out).pose_file_path, Preprocessing(size, (0.0,) * 3, (1.0,) * 3),
                    {"trained_by": "seldepth train (selfsup)", "input": "target (B,3,H,W) and sources (B,2,3,H,W) in [0,1]"})
    try:
        snippets = FrameSnippets(open_dataset(cfg.data.path, cfg.data.test_split), cfg.selfsup.stride)
    except DatasetError as exc:  # a test split without video order: no pose figures
        return {"error": str(exc)}
    return evaluate_pose(pose_net, snippets, size)


def finish_run(cfg: TrainConfig, out: Path, data_path: Path, elapsed: float, elapsed_this_run: float | None = None) -> dict:
    """Export the best checkpoint as a model file and score it on validation and test.

    ``elapsed``: the training seconds of the whole run (``train_seconds``: a resumed run's earlier parts up to
    the checkpoint it resumed from, and its own); ``elapsed_this_run``: its last part's (``train_seconds_this_run``).
    """
    run = RunFolder(out)
    checkpoint = run.final_checkpoint()
    model = read_model_file(checkpoint)
    protocol = get_protocol(cfg.protocol, median_scaling=cfg.selfsup is not None)
    results = {"train_seconds": round(elapsed, 1), "train_seconds_this_run": round(
        elapsed if elapsed_this_run is None else elapsed_this_run, 1), "epochs": cfg.trainer.epochs}
    results["val"] = evaluate(model, open_dataset(cfg.data.path, cfg.data.val_split), protocol, progress=False)
    if cfg.trainer.evaluate_test:
        results["test"] = evaluate(model, open_dataset(cfg.data.path, cfg.data.test_split), protocol, progress=False)
    if cfg.selfsup is not None:
        results["pose"] = finish_pose(cfg, out, checkpoint)
    provenance = {"trained_by": "seldepth train", "config": cfg.to_dict(), "data": str(data_path),
                  "val_metrics": results["val"]["metrics"]}
    save_model_file(model, run.model_file_path, model.preprocessing, provenance)
    write_text_atomic(run.results_path, json.dumps(results, indent=2))
    return results
