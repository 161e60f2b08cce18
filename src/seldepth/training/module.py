"""The LightningModules of supervised training: a shared base (the depth model by name, its preprocessing,
frozen parts, AdamW with a step schedule, the stop on a loss that is not finite) and :class:`DepthTrainingModule`.
"""


from __future__ import annotations

import warnings
from contextlib import nullcontext

import lightning as L
import torch

from seldepth.data.collate import IGNORE_LABEL
from seldepth.data.transforms import masked_downsample
from seldepth.evaluation.metrics import DepthMetrics, SemanticIoU
from seldepth.evaluation.protocol import get_protocol
from seldepth.inference import predict_depth, predict_semantics, semantic_classes
from seldepth.losses.balanced import BalancedLoss, BalancedLossConfig
from seldepth.losses.logdepth import MultiScaleLoss, MultiScaleLossConfig
from seldepth.losses.synergy import SynergyLoss, SynergyLossConfig
from seldepth.models import create_model
from seldepth.models.preprocessing import Preprocessing
from seldepth.selectivity.dissect import Dissector, EmptyBinWarning
from seldepth.selectivity.regularizer import SelectivityConfig, SelectivityRegularizer
from seldepth.training.optim import OptimConfig, adamw_with_steps
from seldepth.training.teachers import TeacherConfig, TrainingTargets
from seldepth.training.transfer import freeze as freeze_parts
from seldepth.training.transfer import parameter_groups


class TrainingDiverged(RuntimeError):
    """Training produced a loss (or weights) that is not finite (NaN or infinite).

    Raised before the step's backward pass and optimiser update, and before any checkpoint is written from
    weights that are not finite: ``last.ckpt`` and ``best.ckpt`` keep the last finite state, and no model file
    or results are written. The ``seldepth`` command exits with status 1.
    """


def _not_finite(values: dict) -> dict[str, str]:
    """The entries of ``{name: number or tensor}`` that hold a NaN or an infinity, as text (``nan``, ``inf``, ...)."""
    out = {}
    for name, value in values.items():
        t = torch.as_tensor(value).detach().float()
        if not bool(torch.isfinite(t).all()):
            out[name] = (f"{t.item():g}" if t.numel() == 1
                         else f"{int((~torch.isfinite(t)).sum())} of {t.numel()} values not finite")
    return out


def lists_to_tuples(d: dict) -> dict:
    """A config dict (from YAML or hyper-parameters) with its lists as the dataclasses' tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def log_depth_metrics(module: L.LightningModule, metrics: DepthMetrics) -> None:
    """Log the validation depth metrics (``val/rmse`` on the progress bar, ``val/NAME`` for the others) and reset them.

    The values are already reduced across processes by torchmetrics.
    """
    values = metrics.compute()
    metrics.reset()
    values.pop("num_images")
    module.log("val/rmse", values.pop("rmse"), prog_bar=True, sync_dist=False)
    module.log_dict({f"val/{k}": v for k, v in values.items()}, sync_dist=False)



class DepthModelModule(L.LightningModule):
    """What every training module shares: the depth model built by name, its preprocessing, the frozen parts
    (kept in eval mode, so their batch-norm statistics stay too) and AdamW with a step schedule.

    Subclasses call ``self.save_hyperparameters()`` in their own ``__init__`` (so that a checkpoint
    rebuilds them by keyword) and may extend :meth:`parameter_groups`.
    """

    def __init__(self, model: str, preprocessing: dict, optim: dict, model_options: dict | None = None,
                 freeze: list | None = None):
        super().__init__()
        self.model = create_model(model, **(model_options or {}))
        self.frozen = freeze_parts(self.model, list(freeze or []))
        self.model.preprocessing = Preprocessing.from_dict(preprocessing)
        self.optim_config = OptimConfig(**lists_to_tuples(optim))

    def on_train_epoch_start(self) -> None:
        for m in self.frozen:  # frozen parts keep their batch-norm statistics too
            m.eval()

    def check_loss(self, loss: torch.Tensor, terms: dict, batch_idx: int) -> None:
        """Stop training with :class:`TrainingDiverged` when ``loss`` is not finite, naming the step and the
        ``terms`` that are not finite.

        Called by ``training_step`` before it returns the loss: Lightning then runs neither the backward pass
        nor the optimiser step, so the weights, and every checkpoint written from them, stay the last finite
        ones. Under DDP every process stops when one does (none waits alone for the others' gradients).
        """
        finite = bool(torch.isfinite(loss.detach()).all())
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            finite = bool(trainer.strategy.reduce_boolean_decision(finite, all=True))
        if finite:
            return
        own = _not_finite({"loss": loss})
        bad = _not_finite(terms)
        where = (f"the loss is {own['loss']}" if own else "the loss is not finite on another process")
        if bad:
            where += "; terms not finite: " + ", ".join(f"{k} = {v}" for k, v in bad.items())
        elif own:
            where += f" while its terms ({', '.join(terms) or 'none'}) are finite"
        raise TrainingDiverged(
            f"training diverged at step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx}): {where}. "
            f"Training stopped before this step's update: the checkpoints keep the last finite state and no model "
            f"file or results were written. Lower optim.lr (now {self.optim_config.lr:g}) or the loss weights, "
            f"or look for bad samples in the data")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Refuse to write a checkpoint of weights that are not finite (a finite loss can still give infinite
        gradients): the previous checkpoint file stays as it was."""
        params = list(self.parameters())
        if params and not bool(torch.stack([torch.isfinite(p.detach()).all() for p in params]).all()):
            bad = [name for name, p in self.named_parameters() if not bool(torch.isfinite(p.detach()).all())]
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise TrainingDiverged(
                f"training diverged: the weights are not finite after step {self.global_step - 1} (epoch "
                f"{self.current_epoch}; {', '.join(bad[:3])}{more}); no checkpoint was written from them: the "
                f"checkpoints keep the last finite state and no model file or results were written. Lower optim.lr "
                f"(now {self.optim_config.lr:g}) or the loss weights")

    def parameter_groups(self) -> list[dict]:
        """The optimiser's parameter groups: the model's, with ``optim.part_lr``'s learning rates."""
        o = self.optim_config
        return parameter_groups(self.model, o.lr, dict(o.part_lr))

    def configure_optimizers(self):
        return adamw_with_steps(self.optim_config, self.parameter_groups())


class DepthTrainingModule(DepthModelModule):
    """A depth model with METER's balanced loss, an optional selectivity regulariser, AdamW + step schedule,
    and the evaluation metrics (and the logged layers' selectivity) on validation.

    The loss is computed at the prediction's resolution against ground truth reduced by a
    masked average; the regulariser bins the ground truth at the batch's resolution.
    With ``multiscale`` (multi-head models such as ``realtime_depth``) the loss is Chiu et al.'s (ICPR 2020)
    :class:`~seldepth.losses.logdepth.MultiScaleLoss` over every head instead. The targets come
    from :class:`~seldepth.training.teachers.TrainingTargets`: the ground truth, filled or replaced by a
    depth teacher, and semantic labels from the data or a semantic teacher.
    Validation predicts at the ground truth's resolution exactly as ``seldepth eval`` does,
    with the same :class:`~seldepth.evaluation.metrics.DepthMetrics`, and dissects the logged layers
    with the same :class:`~seldepth.selectivity.dissect.Dissector` as ``seldepth dissect``.

    At the start of each training epoch the regulariser fits its quantile bins and makes its ``preferred``
    assignments when due (:meth:`~seldepth.selectivity.regularizer.SelectivityRegularizer.start_epoch`, with the
    statistics summed over the processes under DDP); its state rides in the checkpoints (``selectivity_state``).

    Logged: ``train/loss`` (task + regulariser), the balanced loss's terms, ``train/l_assign``,
    ``train/ds_assigned/LAYER`` (batch DS towards the assigned bins), ``val/rmse`` and the
    other metrics, ``val/ds/LAYER`` (mean DS of the layer over the validation split).
    """

    def __init__(self, model: str, preprocessing: dict, loss: dict, optim: dict, protocol: str = "synthetic",
                 selectivity: dict | None = None, model_options: dict | None = None, multiscale: dict | None = None,
                 teacher: dict | None = None, synergy: dict | None = None, freeze: list | None = None):
        super().__init__(model, preprocessing, optim, model_options, freeze)
        self.save_hyperparameters()
        self.loss_fn = BalancedLoss(BalancedLossConfig(**loss))
        self.multiscale_loss = None
        if multiscale is not None:
            self.multiscale_loss = MultiScaleLoss(MultiScaleLossConfig(**lists_to_tuples(multiscale)), heads=self.model.heads)
        self.synergy_loss = None
        if synergy is not None:
            self.synergy_loss = SynergyLoss(SynergyLossConfig(**synergy))
        self._unsupervised_tasks: list[str] = []
        classes = semantic_classes(self.model)
        self.targets = TrainingTargets(TeacherConfig(**(teacher or {})), classes or None)
        self.val_metrics = DepthMetrics(get_protocol(protocol))
        self.val_iou = SemanticIoU(classes, ignore_index=IGNORE_LABEL) if classes else None
        self.selectivity_config = SelectivityConfig(**lists_to_tuples(selectivity or {}))
        self.regularizer = SelectivityRegularizer(self.model, self.selectivity_config)
        logged = self.selectivity_config.logged_layers
        self.val_dissector = (Dissector(self.model, list(logged), bins=self.selectivity_config.log_bins,
                                        depth_range=self.selectivity_config.depth_range, dtype=torch.float32)
                              if logged else None)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(self.model.preprocessing(image))

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.selectivity_config.enabled:  # quantile bins fitted, bins assigned by preference when due
            self.regularizer.start_epoch(self.current_epoch, reduce=self._sum_over_processes,
                                         broadcast=self._from_first_process)

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return tensor
        return trainer.strategy.reduce(tensor, reduce_op="sum")

    def _from_first_process(self, obj):
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return obj
        return trainer.strategy.broadcast(obj, src=0)

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
        checked = dict(terms)
        if self.selectivity_config.enabled:
            reg = self.regularizer(depth, valid,
                                   active=self.current_epoch >= self.selectivity_config.warmup_epochs)
            loss = loss + reg.loss
            checked["l_assign"] = reg.loss
            self.log("train/l_assign", reg.loss, batch_size=n)
            self.log_dict({f"train/ds_assigned/{k}": v for k, v in reg.ds.items()}, batch_size=n)
        self.check_loss(loss, checked, batch_idx)
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
        super().on_save_checkpoint(checkpoint)
        if self.regularizer.ema:
            checkpoint["selectivity_ema"] = self.regularizer.ema_state()
        if self.selectivity_config.enabled:  # assignments, the epoch's statistics, fitted quantile bins
            checkpoint["selectivity_state"] = self.regularizer.training_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "selectivity_ema" in checkpoint:
            self.regularizer.load_ema_state(checkpoint["selectivity_ema"])
        if "selectivity_state" in checkpoint:
            self.regularizer.load_training_state(checkpoint["selectivity_state"])

