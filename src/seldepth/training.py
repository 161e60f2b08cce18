"""Training with Lightning: the LightningModule, atomic checkpoints, and a whole run from a config.

A run folder (``trainer.out_dir``) holds::

    config.yaml                the resolved config (re-run with --config config.yaml)
    checkpoints/best.ckpt      best validation RMSE (model selection never sees the test split)
    checkpoints/last.ckpt      latest state, for --resume
    csv/metrics.csv, tb/       CSV and TensorBoard logs
    model.safetensors          the best model as a model file (seldepth.load_model)
    results.json               validation and test metrics of the best model
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from datetime import timedelta
import warnings
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from seldepth.atomic import write_text_atomic
from seldepth.data.collate import IGNORE_LABEL
from seldepth.data.datamodule import DepthDataModule
from seldepth.data.transforms import masked_downsample
from seldepth.inference import predict_depth, predict_semantics, semantic_classes
from seldepth.transfer import freeze as freeze_parts
from seldepth.transfer import init_from_file, parameter_groups, source_preprocessing
from seldepth.losses.attention import SynergyLoss, SynergyLossConfig
from seldepth.losses.balanced import BalancedLoss, BalancedLossConfig
from seldepth.losses.logdepth import MultiScaleLoss, MultiScaleLossConfig
from seldepth.metrics import DepthMetrics, SemanticIoU
from seldepth.models import create_model
from seldepth.models.preprocessing import Preprocessing
from seldepth.protocol import get_protocol
from seldepth.selectivity.dissect import Dissector, EmptyBinWarning
from seldepth.selectivity.regularizer import SelectivityConfig, SelectivityRegularizer
from seldepth.teachers import TeacherConfig, TrainingTargets
from seldepth.train_config import BEST_BY, OptimConfig, TrainConfig, dump_config


def lists_to_tuples(d: dict) -> dict:
    """A config dict (from YAML or hyper-parameters) with its lists as the dataclasses' tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def adamw_with_steps(o: OptimConfig, groups: list[dict]) -> dict:
    """AdamW over parameter ``groups`` with ``o``'s step schedule, as Lightning's ``configure_optimizers`` returns it."""
    optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_epochs, gamma=o.gamma)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def log_depth_metrics(module: L.LightningModule, metrics: DepthMetrics) -> None:
    """Log the validation depth metrics (``val/rmse`` on the progress bar, ``val/NAME`` for the others) and reset them.

    The values are already reduced across processes by torchmetrics.
    """
    values = metrics.compute()
    metrics.reset()
    values.pop("num_images")
    module.log("val/rmse", values.pop("rmse"), prog_bar=True, sync_dist=False)
    module.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=False)


class DepthTrainingModule(L.LightningModule):
    """A depth model with METER's balanced loss, an optional selectivity regulariser, AdamW + step schedule,
    and the evaluation metrics (and the logged layers' selectivity) on validation.

    The loss is computed at the prediction's resolution against ground truth reduced by a
    masked average; the regulariser bins the ground truth at the batch's resolution.
    With ``multiscale`` (multi-head models such as ``realtime_depth``) the loss is seed 003's
    :class:`~seldepth.losses.logdepth.MultiScaleLoss` over every head instead. The targets come
    from :class:`~seldepth.teachers.TrainingTargets`: the ground truth, filled or replaced by a
    depth teacher, and semantic labels from the data or a semantic teacher.
    Validation predicts at the ground truth's resolution exactly as ``seldepth eval`` does,
    with the same :class:`~seldepth.metrics.DepthMetrics`, and dissects the logged layers
    with the same :class:`~seldepth.selectivity.dissect.Dissector` as ``seldepth dissect``.

    Logged: ``train/loss`` (task + regulariser), the balanced loss's terms, ``train/l_assign``,
    ``train/ds_assigned/LAYER`` (batch DS towards the assigned bins), ``val/rmse`` and the
    other metrics, ``val/ds/LAYER`` (mean DS of the layer over the validation split).
    """

    def __init__(self, model: str, preprocessing: dict, loss: dict, optim: dict, protocol: str = "synthetic",
                 selectivity: dict | None = None, model_options: dict | None = None, multiscale: dict | None = None,
                 teacher: dict | None = None, synergy: dict | None = None, freeze: list | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(model, **(model_options or {}))
        self.frozen = freeze_parts(self.model, list(freeze or []))
        self.model.preprocessing = Preprocessing.from_dict(preprocessing)
        self.loss_fn = BalancedLoss(BalancedLossConfig(**loss))
        self.multiscale_loss = None
        if multiscale is not None:
            if not hasattr(self.model, "forward_heads"):
                raise ValueError(f"multiscale: {model} has a single output; the multi-scale loss needs a multi-head model")
            self.multiscale_loss = MultiScaleLoss(MultiScaleLossConfig(**lists_to_tuples(multiscale)), heads=self.model.heads)
        self.synergy_loss = None
        if synergy is not None:
            if not hasattr(self.model, "forward_tasks"):
                raise ValueError(f"synergy: {model} has no semantic branch; the synergy loss needs synergy_depth")
            self.synergy_loss = SynergyLoss(SynergyLossConfig(**synergy))
        self._unsupervised_tasks: list[str] = []
        classes = semantic_classes(self.model)
        self.targets = TrainingTargets(TeacherConfig(**(teacher or {})), classes or None)
        self.optim_config = OptimConfig(**lists_to_tuples(optim))
        self.val_metrics = DepthMetrics(get_protocol(protocol))
        self.val_iou = SemanticIoU(classes, ignore_index=IGNORE_LABEL) if classes else None
        self.selectivity_config = SelectivityConfig(**lists_to_tuples(selectivity or {}))
        self.regularizer = SelectivityRegularizer(self.model, self.selectivity_config)
        logged = self.selectivity_config.logged_layers
        self.val_dissector = (Dissector(self.model, list(logged), bins=self.selectivity_config.bins,
                                        depth_range=self.selectivity_config.depth_range, dtype=torch.float32)
                              if logged else None)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(self.model.preprocessing(image))

    def on_train_epoch_start(self) -> None:
        for m in self.frozen:  # frozen parts keep their batch-norm statistics too
            m.eval()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        depth, valid, labels = self.targets(batch)
        with self.regularizer.capture():
            x = self.model.preprocessing(batch["image"])
            if self.multiscale_loss is not None:
                out = self.model.forward_heads(x)
                loss, terms = self.multiscale_loss(out.depth, depth, valid, out.semantics, labels)
            elif self.synergy_loss is not None:
                out = self.model.forward_tasks(x)
                loss, terms, supervised = self.synergy_loss(out.depth, out.semantics, depth, valid, labels)
                self._unsupervised_tasks = [task for task, yes in supervised.items() if not yes]
            else:
                pred = self.model(x)
                loss, terms = self.loss_fn(pred, *masked_downsample(depth, valid, tuple(pred.shape[-2:])))
        n = len(depth)
        if self.selectivity_config.enabled:
            reg = self.regularizer(depth, valid,
                                   active=self.current_epoch >= self.selectivity_config.warmup_epochs)
            loss = loss + reg.loss
            self.log("train/l_assign", reg.loss, batch_size=n)
            self.log_dict({f"train/ds_assigned/{k}": v for k, v in reg.ds.items()}, batch_size=n)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=n)
        return loss

    def on_after_backward(self) -> None:
        # weak supervision: a batch without one task's targets leaves that task's own branch unchanged
        # (no gradient, so the optimiser skips those parameters, weight decay included)
        for task in self._unsupervised_tasks:
            for p in self.model.task_parameters(task):
                p.grad = None
        self._unsupervised_tasks = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        depth = batch["depth"]
        # the logged layers are dissected on the same forward pass that scores the prediction
        observe = self.val_dissector.observing(depth, batch["valid"]) if self.val_dissector is not None else nullcontext()
        with observe:
            pred = predict_depth(self.model, batch["image"], size=tuple(depth.shape[-2:]))
        self.val_metrics.update(pred, depth, batch["valid"])
        if self.val_iou is not None and batch.get("semantics") is not None:
            self.val_iou.update(predict_semantics(self.model, batch["image"], size=tuple(depth.shape[-2:])), batch["semantics"])

    def on_validation_epoch_end(self) -> None:
        log_depth_metrics(self, self.val_metrics)
        if self.val_iou is not None and int(self.val_iou.confusion.sum()) > 0:
            self.log("val/miou", self.val_iou.compute()["miou"], sync_dist=False)
        if self.val_iou is not None:
            self.val_iou.reset()
        if self.val_dissector is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", EmptyBinWarning)
                result = self.val_dissector.compute()  # all-reduced across processes
            self.val_dissector.reset()
            self.log_dict({f"val/ds/{k}": layer.mean_ds for k, layer in result.layers.items()}, sync_dist=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.regularizer.ema:
            checkpoint["selectivity_ema"] = self.regularizer.ema_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "selectivity_ema" in checkpoint:
            self.regularizer.load_ema_state(checkpoint["selectivity_ema"])

    def configure_optimizers(self):
        o = self.optim_config
        return adamw_with_steps(o, parameter_groups(self.model, o.lr, dict(o.part_lr)))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file in the same folder, syncs it, then renames it into place.

    A run killed at any moment leaves either the previous checkpoint or the new one, never half a file.
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


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


def build_module(cfg: TrainConfig) -> L.LightningModule:
    """The Lightning module of a run: :class:`DepthTrainingModule`, or with ``selfsup``
    :class:`~seldepth.selfsupervised.SelfSupervisedModule` (a run started ``init_from`` a file keeps
    the file's normalisation)."""
    preprocessing = (source_preprocessing(cfg.init_from, tuple(cfg.data.input_size)) if cfg.init_from
                     else Preprocessing(input_size=tuple(cfg.data.input_size)))
    d = cfg.to_dict()
    if cfg.selfsup is not None:
        from seldepth.selfsupervised import SelfSupervisedModule

        return SelfSupervisedModule(cfg.model, preprocessing.to_dict(), d["optim"], cfg.protocol, d["model_options"],
                                    d["selfsup"], d["freeze"])
    return DepthTrainingModule(cfg.model, preprocessing.to_dict(), d["loss"], d["optim"], cfg.protocol, d["selectivity"],
                               d["model_options"], d["multiscale"], d["teacher"], d["synergy"], d["freeze"])


def build_datamodule(cfg: TrainConfig) -> DepthDataModule:
    """Samples for supervised training, or frame snippets for ``selfsup``."""
    if cfg.selfsup is not None:
        from seldepth.data.datamodule import SequenceDataModule

        return SequenceDataModule(cfg.data, cfg.selfsup.stride)
    return DepthDataModule(cfg.data)


def build_trainer(cfg: TrainConfig, out: Path, extra_callbacks=(), resume_step: int = -1) -> L.Trainer:
    """Lightning's trainer for a run folder; ``resume_step``: global step of the checkpoint resumed from (-1: none)."""
    t = cfg.trainer
    # best.ckpt follows validation RMSE (or trainer.best_by); last.ckpt is the latest state (every epoch, or every
    # N steps), for --resume.
    best = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=t.best_by, mode=BEST_BY[t.best_by],
                           save_top_k=1, enable_version_counter=False)
    every = {"every_n_train_steps": t.checkpoint_every_n_steps} if t.checkpoint_every_n_steps else {"every_n_epochs": 1}
    last = ModelCheckpoint(dirpath=out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False, **every)
    callbacks = [best, last, LearningRateMonitor(logging_interval="epoch"), *extra_callbacks]
    loggers = [ResumableCSVLogger(out, name="csv", version="", keep_step=resume_step),
               TensorBoardLogger(out, name="tb", version="")]
    return L.Trainer(max_epochs=t.epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
                     strategy=t.strategy, precision=t.precision, callbacks=callbacks, logger=loggers,
                     log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.progress_bar,
                     plugins=[AtomicCheckpointIO()], use_distributed_sampler=True, num_sanity_val_steps=0,
                     max_time=timedelta(minutes=t.max_minutes) if t.max_minutes else None,
                     enable_model_summary=False)


def validate(cfg: TrainConfig, checkpoint: str | os.PathLike) -> dict[str, float]:
    """Validation metrics of a checkpoint under ``cfg``'s data, protocol and trainer (devices, strategy).

    Under DDP each process scores its share of the validation set once (no padding repeats) and
    :class:`~seldepth.metrics.DepthMetrics` reduces the sums across processes, so the result
    equals that of one process.
    """
    from seldepth.data.spec import prepare

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
    from seldepth.data.spec import prepare

    out = Path(cfg.trainer.out_dir)
    last = out / "checkpoints" / "last.ckpt"
    if last.exists() and not resume:
        raise ValueError(f"trainer.out_dir: {out} already holds a run; pass --resume to continue it or choose another out_dir")
    data_path = prepare(cfg.data.path, key="data.path")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (out / "checkpoints").glob(".*.tmp"):  # left by a run killed while writing
        stale.unlink()
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    module = build_module(cfg)
    resume_step = int(torch.load(last, map_location="cpu", weights_only=True)["global_step"]) if resume and last.exists() else -1
    if cfg.init_from and resume_step < 0:  # a resumed run takes every weight from its checkpoint
        taken = init_from_file(module.model, cfg.init_from, tuple(cfg.init_skip))
        print(f"init_from {cfg.init_from}: {len(taken)} tensors"
              + (f"; fresh: {', '.join(cfg.init_skip)}" if cfg.init_skip else ""), flush=True)
    trainer = build_trainer(cfg, out, resume_step=resume_step)
    if trainer.is_global_zero:
        write_text_atomic(out / "config.yaml", dump_config(cfg))
    start = time.time()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last) if resume and last.exists() else None)
    elapsed = time.time() - start
    if not trainer.is_global_zero:
        return {}
    return finish_run(cfg, out, data_path, elapsed)


def finish_pose(cfg: TrainConfig, out: Path, checkpoint: Path) -> dict:
    """Save the self-supervised run's pose network (``pose.safetensors``) and score it on the test split's snippets."""
    from seldepth.data.errors import DatasetError
    from seldepth.data.sequences import FrameSnippets
    from seldepth.data.spec import open_dataset
    from seldepth.models.model_file import save_model_file
    from seldepth.selfsupervised import evaluate_pose

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    pose_net = create_model(cfg.selfsup.pose_model, sources=2)
    pose_net.load_state_dict({k[len("pose_net."):]: v for k, v in state.items() if k.startswith("pose_net.")})
    size = tuple(cfg.data.input_size)
    save_model_file(pose_net, out / "pose.safetensors", Preprocessing(size, (0.0,) * 3, (1.0,) * 3),
                    {"trained_by": "seldepth train (selfsup)", "input": "target (B,3,H,W) and sources (B,2,3,H,W) in [0,1]"})
    try:
        snippets = FrameSnippets(open_dataset(cfg.data.path, cfg.data.test_split), cfg.selfsup.stride)
    except DatasetError as exc:  # a test split without video order: no pose figures
        return {"error": str(exc)}
    return evaluate_pose(pose_net, snippets, size)


def finish_run(cfg: TrainConfig, out: Path, data_path: Path, elapsed: float) -> dict:
    """Export the best checkpoint as a model file and score it on validation and test."""
    from seldepth.data.spec import open_dataset
    from seldepth.evaluation import evaluate
    from seldepth.models.model_file import load_model, save_model_file

    best = out / "checkpoints" / "best.ckpt"
    checkpoint = best if best.exists() else out / "checkpoints" / "last.ckpt"
    model = load_model(checkpoint)
    protocol = get_protocol(cfg.protocol, median_scaling=cfg.selfsup is not None)
    results = {"train_seconds": round(elapsed, 1), "epochs": cfg.trainer.epochs}
    results["val"] = evaluate(model, open_dataset(cfg.data.path, cfg.data.val_split), protocol, progress=False)
    if cfg.trainer.evaluate_test:
        results["test"] = evaluate(model, open_dataset(cfg.data.path, cfg.data.test_split), protocol, progress=False)
    if cfg.selfsup is not None:
        results["pose"] = finish_pose(cfg, out, checkpoint)
    provenance = {"trained_by": "seldepth train", "config": cfg.to_dict(), "data": str(data_path),
                  "val_metrics": results["val"]["metrics"]}
    save_model_file(model, out / "model.safetensors", model.preprocessing, provenance)
    write_text_atomic(out / "results.json", json.dumps(results, indent=2))
    return results
