"""Self-supervised training of a depth model from video (vid2depth: Mahjourian et al., CVPR 2018; see docs/references.md).

No depth label is read in training. For each target frame and its two neighbours the depth
model predicts the target's depth (upsampled to the frame size), the pose network the camera
motion to each neighbour, and :class:`~seldepth.losses.photometric.PhotometricLoss` scores
how well the neighbours, warped into the target view, reproduce it.

Validation and test score depth with per-image median scaling (a self-supervised depth has a
free scale), and, where the data has camera poses (synthetic sequences, KITTI with
``poses.txt``), the pose network's motion against the true one:

* translation direction error: the angle (degrees) between predicted and true translation
  (the scale of a self-supervised translation is free, its direction is not);
* rotation error: the angle (degrees) of R_pred^T R_true.

``selfsup:`` in the training config turns it on (:class:`SelfSupervisedConfig`); the run's
model file is the depth model, and ``pose.safetensors`` beside it the pose network.

With ``snippet_motion_lr`` each training snippet also gets a free correction of its motions
(bundle adjustment's free poses), fitted by the same loss. On synthetic walks the depth needs the
rotation to about 0.3 degrees, which the pose network alone does not reach in a CPU-sized
training time; the corrections get there, and the depth learns (README, learning with little labelled data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from torch.utils.data import DataLoader

from seldepth.data.collate import collate_samples
from seldepth.defaults import check_number
from seldepth.evaluation.metrics import DepthMetrics
from seldepth.evaluation.protocol import get_protocol
from seldepth.inference import predict_depth
from seldepth.losses.photometric import PhotometricLoss, PhotometricLossConfig, pose_to_matrix
from seldepth.models import create_model
from seldepth.training.module import DepthModelModule, log_depth_metrics


@dataclass(frozen=True)
class SelfSupervisedConfig:
    """Self-supervised training (``selfsup:`` in the training config).

    Attributes:
        loss: weights of the photometric loss (vid2depth's by default).
        stride: frames between the target and each of its two source frames.
        pose_model: registered pose network (``pose_net``).
        true_motion: an oracle ablation for data with known camera poses: ``none`` (default: the
            pose network's motion), ``rotation`` or ``translation`` (that part of the true motion
            replaces the network's) or ``both`` (the true motion; the pose network is still
            trained on nothing and only scored). It shows which part of the motion the depth
            needs; a run with it is no longer self-supervised in that part.
        snippet_motion_lr: learning rate of per-snippet motion corrections (0: none, the
            default). Each training snippet gets its own free (S, 6) correction, added to the
            pose network's motion in the loss and fitted by the same loss with Adam (torch's
            SparseAdam: only the batch's rows move); the idea of bundle adjustment, free poses
            per frame pair. No label is read. Validation, test and ``pose.safetensors`` use the
            pose network alone; the corrections exist for the training snippets only.
    """

    loss: PhotometricLossConfig = field(default_factory=PhotometricLossConfig)
    stride: int = 1
    pose_model: str = "pose_net"
    true_motion: str = "none"
    snippet_motion_lr: float = 0.0

    def __post_init__(self):
        check_number("selfsup.stride", self.stride, 1, integer=True)
        check_number("selfsup.snippet_motion_lr", self.snippet_motion_lr, 0)  # 0: no per-snippet corrections
        if self.true_motion not in TRUE_MOTION:
            raise ValueError(f"selfsup.true_motion must be one of {', '.join(TRUE_MOTION)}, got {self.true_motion!r}")


TRUE_MOTION = ("none", "rotation", "translation", "both")


def with_true_motion(predicted: torch.Tensor, true: torch.Tensor, known: torch.Tensor, part: str) -> torch.Tensor:
    """(B, S, 4, 4) transforms with ``part`` (``rotation``, ``translation``, ``both``; ``none``: unchanged) of
    the true ones put in, for the snippets whose poses are ``known`` (B,); an error if any is not."""
    if part == "none":
        return predicted
    if not bool(known.all()):
        raise ValueError(f"selfsup.true_motion: {part} needs camera poses for every snippet; this batch has "
                         f"{int((~known).sum())} without")
    if part == "both":
        return true
    out = predicted.clone()
    if part == "rotation":
        out[..., :3, :3] = true[..., :3, :3]
    else:
        out[..., :3, 3] = true[..., :3, 3]
    return out


def pose_errors(predicted: torch.Tensor, true: torch.Tensor, min_translation: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Translation direction and rotation errors in degrees of (N, 4, 4) transforms against the true ones.

    A pair whose true or predicted translation is shorter than ``min_translation`` (a camera that
    turns on the spot) has no direction: its translation error is NaN, and the averages skip it.

    Example:
        >>> a = pose_to_matrix(torch.tensor([[1.0, 0, 0, 0, 0, 0]]))
        >>> b = pose_to_matrix(torch.tensor([[0.0, 2, 0, 0, 0, 0.1]]))
        >>> [round(float(e), 2) for e in pose_errors(a, b)]
        [90.0, 5.73]
    """
    predicted, true = predicted.double(), true.double()
    tp, tt = predicted[:, :3, 3], true[:, :3, 3]
    direction = torch.atan2(torch.linalg.cross(tp, tt).norm(dim=1), (tp * tt).sum(1))  # exact near 0, unlike acos
    direction = direction.masked_fill((tp.norm(dim=1) < min_translation) | (tt.norm(dim=1) < min_translation), math.nan)
    relative = predicted[:, :3, :3].transpose(1, 2) @ true[:, :3, :3]
    trace = relative.diagonal(dim1=1, dim2=2).sum(-1)
    angle = torch.acos(((trace - 1) / 2).clamp(-1, 1))
    return torch.rad2deg(direction).float(), torch.rad2deg(angle).float()


def _sources_at(sources: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    b, s = sources.shape[:2]
    flat = F.interpolate(sources.flatten(0, 1), size=size, mode="bilinear", align_corners=False, antialias=True)
    return flat.view(b, s, *flat.shape[1:])


@torch.no_grad()
def predict_motion(pose_net: torch.nn.Module, target: torch.Tensor, sources: torch.Tensor,
                   size: tuple[int, int]) -> torch.Tensor:
    """(B, S, 4, 4) target-to-source transforms predicted at the pose network's training size."""
    target = F.interpolate(target, size=size, mode="bilinear", align_corners=False, antialias=True)
    return pose_to_matrix(pose_net(target, _sources_at(sources, size)))


def batch_pose_errors(pose_net: torch.nn.Module, batch: dict, size: tuple[int, int]) -> torch.Tensor | None:
    """(N, 2) translation direction and rotation errors (degrees) of the snippets of ``batch`` whose poses are
    known, one row per (snippet, source); None when no pose is known."""
    known = batch["source_pose_known"]
    if not known.any():
        return None
    motion = predict_motion(pose_net, batch["image"], batch["sources"], size)
    return torch.stack(pose_errors(motion[known].flatten(0, 1), batch["source_pose"][known].flatten(0, 1)), 1)


class SelfSupervisedModule(DepthModelModule):
    """Depth and pose networks trained by view synthesis (module docstring).

    Batches are :class:`~seldepth.data.sequences.FrameSnippets` samples: training ones at the
    input size (``image``, ``sources``, ``K``), validation ones at the native size with depth.
    Logged: ``train/loss`` and its terms, ``val/rmse`` and the other median-scaled metrics,
    ``val/scale_ratio_spread``, ``val/pose_translation_deg`` and ``val/pose_rotation_deg``.
    """

    def __init__(self, model: str, preprocessing: dict, optim: dict, protocol: str = "synthetic",
                 model_options: dict | None = None, selfsup: dict | None = None, freeze: list | None = None,
                 num_snippets: int | None = None):
        super().__init__(model, preprocessing, optim, model_options, freeze)
        self.save_hyperparameters()
        cfg = selfsup or {}
        self.config = SelfSupervisedConfig(**{**cfg, "loss": PhotometricLossConfig(**cfg.get("loss", {}))})
        self.pose_net = create_model(self.config.pose_model, sources=2)
        self.snippet_motion: torch.nn.Embedding | None = None  # per-snippet corrections (see SelfSupervisedConfig)
        self._snippet_optimizer: torch.optim.Optimizer | None = None
        if self.config.snippet_motion_lr > 0 and num_snippets:
            self._make_snippet_motion(num_snippets)
        self.loss_fn = PhotometricLoss(self.config.loss)
        self.val_metrics = DepthMetrics(get_protocol(protocol, median_scaling=True))
        self._pose_errors: list[torch.Tensor] = []

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.model.preprocessing.input_size)

    def _make_snippet_motion(self, num_snippets: int) -> None:
        """Zero corrections for ``num_snippets`` training snippets, and their SparseAdam."""
        self.snippet_motion = torch.nn.Embedding(num_snippets, 6 * self.pose_net.config.sources, sparse=True)
        torch.nn.init.zeros_(self.snippet_motion.weight)
        self._snippet_optimizer = torch.optim.SparseAdam(self.snippet_motion.parameters(), lr=self.config.snippet_motion_lr)
        self.hparams["num_snippets"] = num_snippets  # saved with checkpoints, so that loading rebuilds the table

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.config.snippet_motion_lr > 0 and self.snippet_motion is None:
            self._make_snippet_motion(len(self.trainer.datamodule.train_set))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._snippet_optimizer is not None:  # its Adam moments, for --resume (Lightning saves only its own optimisers)
            checkpoint["snippet_optimizer"] = self._snippet_optimizer.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._snippet_optimizer is not None and "snippet_optimizer" in checkpoint:
            self._snippet_optimizer.load_state_dict(checkpoint["snippet_optimizer"])

    def on_after_backward(self) -> None:
        if self._snippet_optimizer is not None:  # the batch's corrections take their Adam step
            self._snippet_optimizer.step()
            self._snippet_optimizer.zero_grad()

    def _depth(self, image: torch.Tensor) -> torch.Tensor:
        """The depth model's prediction for frames at the input size, upsampled to that size."""
        depth = self.model(self.model.preprocessing(image))
        return F.interpolate(depth, size=image.shape[-2:], mode="bilinear", align_corners=False)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        image, sources, K = batch["image"], batch["sources"], batch["K"]
        depth = self._depth(image)
        motion = self.pose_net(image, sources)
        if self.snippet_motion is not None:
            motion = motion + self.snippet_motion(batch["snippet"]).view_as(motion)
        transforms = pose_to_matrix(motion)
        if self.config.true_motion != "none":
            transforms = with_true_motion(transforms, batch["source_pose"], batch["source_pose_known"], self.config.true_motion)
        source_depths = None
        if self.config.loss.w_alignment > 0:
            b, s = sources.shape[:2]
            source_depths = self._depth(sources.flatten(0, 1)).view(b, s, 1, *image.shape[-2:])
        loss, terms = self.loss_fn(image, sources, depth, transforms, K, source_depths)
        n = len(image)
        self.check_loss(loss, terms, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=n)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        depth = batch["depth"]
        pred = predict_depth(self.model, batch["image"], size=tuple(depth.shape[-2:]))
        self.val_metrics.update(pred, depth, batch["valid"])
        errors = batch_pose_errors(self.pose_net, batch, self.input_size)
        if errors is not None:
            self._pose_errors.append(errors)

    def on_validation_epoch_end(self) -> None:
        log_depth_metrics(self, self.val_metrics)
        if self._pose_errors:
            errors = torch.cat(self._pose_errors).nanmean(0)
            self.log_dict({"val/pose_translation_deg": errors[0], "val/pose_rotation_deg": errors[1]}, sync_dist=True)
        self._pose_errors = []

    def parameter_groups(self) -> list[dict]:
        """The depth model's groups and the pose network's (at ``optim.lr``)."""
        o = self.optim_config
        groups = super().parameter_groups()
        groups.append({"name": "pose", "params": list(self.pose_net.parameters()), "lr": o.lr}
                      if o.part_lr else {"params": list(self.pose_net.parameters()), "lr": o.lr})
        return groups


@torch.no_grad()
def evaluate_pose(pose_net: torch.nn.Module, snippets, size: tuple[int, int], batch_size: int = 8) -> dict:
    """Mean translation direction and rotation errors (degrees) of a pose network on snippets with known poses.

    Returns:
        ``{"translation_deg", "rotation_deg", "num_pairs", "translation_pairs"}``: the translation error is
        averaged over the ``translation_pairs`` pairs that move (:func:`pose_errors`); NaN errors and
        0 pairs when no pose is known.
    """
    pose_net.eval()
    errors = []
    for batch in DataLoader(snippets, batch_size=batch_size, collate_fn=collate_samples):
        batch_errors = batch_pose_errors(pose_net, batch, size)
        if batch_errors is not None:
            errors.append(batch_errors)
    if not errors:
        return {"translation_deg": math.nan, "rotation_deg": math.nan, "num_pairs": 0}
    e = torch.cat(errors)
    return {"translation_deg": float(e[:, 0].nanmean()), "rotation_deg": float(e[:, 1].mean()), "num_pairs": len(e),
            "translation_pairs": int((~e[:, 0].isnan()).sum())}
