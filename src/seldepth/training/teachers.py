"""Teacher networks that make the training targets (Chiu et al., ICPR 2020; see docs/references.md).

Chiu et al. train their tiny network on targets made by bigger ones: a stereo network (PSMNet)
densifies the sparse LiDAR depth, and a segmentation network (DeepLabV3) gives semantic
labels. Here a depth teacher is any seldepth model file (``.safetensors``, ``.ckpt`` or
``.onnx``), and a semantic teacher is either the data set's labels (``labels``, e.g. the
synthetic scenes) or a model file with a semantic output (``realtime_depth`` with
``semantic_classes``).

Depth modes (``teacher.depth_mode``), for a batch with ground truth ``gt`` valid on ``v``:

* ``replace``: the teacher's depth everywhere (Chiu et al.'s "PSMNet (origin)");
* ``fill``: ``gt`` where valid, the teacher's depth elsewhere;
* ``fill_aligned``: as ``fill``, with the teacher's depth first scaled per image by the median
  of ``gt / teacher`` over the valid pixels (Chiu et al.'s "compensated" teacher: the sparse
  measurements fix the teacher's scale).

The teachers run in eval mode without gradients on the training batch's ``teacher_image`` (the
image cropped, resized and flipped with the depth but not colour-jittered or channel-permuted,
see :class:`~seldepth.data.transforms.TrainTransform`; ``image`` when absent), with their own
preprocessing, at the ground truth's resolution.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from seldepth.inference import predict_depth, predict_semantics, semantic_classes
from seldepth.losses.logdepth import IGNORE_LABEL
from seldepth.models.loading import load_model
from seldepth.models.model_file import OutputUnitError

DEPTH_MODES = ("fill", "fill_aligned", "replace")


@dataclass(frozen=True)
class TeacherConfig:
    """Teachers of a training run.

    Attributes:
        depth: a model file whose predictions make the depth targets (None: ground truth only).
        depth_mode: ``fill``, ``fill_aligned`` or ``replace`` (module docstring).
        semantic: ``labels`` (the data set's semantic labels), a model file with a semantic
            output, or None (no semantic targets).
    """

    depth: str | None = None
    depth_mode: str = "fill"
    semantic: str | None = None

    def __post_init__(self):
        if self.depth_mode not in DEPTH_MODES:
            raise ValueError(f"teacher.depth_mode must be one of {', '.join(DEPTH_MODES)}, got {self.depth_mode!r}")


class TeacherError(ValueError):
    """A teacher that cannot be used: unreadable file, wrong unit, no semantic output."""


def load_depth_teacher(path: str | os.PathLike, weights: bool = True):
    """Load a depth teacher in eval mode and check it predicts metres, the unit of every seldepth student.

    ``weights=False``: every check, on a model built on the ``meta`` device (see ``load_model``).

    Raises:
        TeacherError: naming ``teacher.depth`` and the file.
    """
    model = _load(path, "teacher.depth", weights)
    unit = getattr(model, "metadata", {}).get("output_unit", "m")
    if unit != "m":
        raise TeacherError(f"teacher.depth: {path} predicts depth in {unit!r} but the student predicts metres ('m'); "
                           f"import or export the teacher in metres")
    return model


def load_semantic_teacher(path: str | os.PathLike, classes: int | None = None, weights: bool = True):
    """Load a model file with a semantic output (:func:`~seldepth.inference.semantic_classes`) with ``classes`` classes."""
    model = _load(path, "teacher.semantic", weights)
    n = semantic_classes(model)
    if not n:
        raise TeacherError(f"teacher.semantic: {path} ({getattr(model, 'name', type(model).__name__)}) has no semantic output")
    if classes is not None and n != classes:
        raise TeacherError(f"teacher.semantic: {path} predicts {n} classes but the student has {classes}")
    return model


def _load(path, key: str, weights: bool = True):
    """A frozen model in eval mode; errors name the config key and the file."""
    try:
        model = load_model(path, weights=weights)
    except OutputUnitError as exc:  # the model file refuses it; said in the student's terms
        raise TeacherError(f"{key}: {path} predicts depth in {exc.unit!r} but the student predicts metres ('m'); "
                           f"import or export the teacher in metres") from None
    except (ValueError, OSError) as exc:
        raise TeacherError(f"{key}: {path}: cannot be loaded as a seldepth model: {exc}") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def median_align(teacher: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Scale each image of ``teacher`` (B, 1, H, W) by the median of gt / teacher over its valid pixels (1 if none)."""
    out = teacher.clone()
    for i in range(len(teacher)):
        v = valid[i] & (teacher[i] > 0)
        if v.any():
            out[i] = teacher[i] * (gt[i][v] / teacher[i][v]).median()
    return out


class TrainingTargets:
    """Makes a batch's depth and semantic targets from its ground truth and the configured teachers.

    ``__call__(batch) -> (depth, valid, labels)``: depth (B, 1, H, W) metres and valid (B, 1, H, W)
    bool at the ground truth's resolution; labels (B, H, W) long with ``IGNORE_LABEL`` where there
    is none, or None when no semantic targets are configured.
    """

    def __init__(self, config: TeacherConfig = TeacherConfig(), semantic_classes: int | None = None, weights: bool = True):
        """``weights=False`` checks the teacher files (names, shapes, unit, classes) without reading their weights."""
        self.config = config
        # plain attributes, not submodules: teachers are neither trained nor saved with the student
        self.depth_teacher = load_depth_teacher(config.depth, weights) if config.depth else None
        self.semantic_teacher = (load_semantic_teacher(config.semantic, semantic_classes, weights)
                                 if config.semantic and config.semantic != "labels" else None)

    @torch.no_grad()
    def depth(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        gt, valid = batch["depth"], batch["valid"].bool()
        if self.depth_teacher is None:
            return gt, valid
        teacher = _on(self.depth_teacher, gt.device)
        pred = predict_depth(teacher, _teacher_image(batch), size=tuple(gt.shape[-2:])).to(gt.dtype)
        mode = self.config.depth_mode
        if mode == "replace":
            return pred, pred > 0
        if mode == "fill_aligned":
            pred = median_align(pred, gt, valid)
        return torch.where(valid, gt, pred), valid | (pred > 0)

    @torch.no_grad()
    def labels(self, batch: dict) -> torch.Tensor | None:
        if not self.config.semantic:
            return None
        if self.semantic_teacher is None:  # "labels"
            if batch.get("semantics") is None:
                raise TeacherError("teacher.semantic: 'labels' but the training batch has no 'semantics'")
            return batch["semantics"].long()
        image = _teacher_image(batch)
        teacher = _on(self.semantic_teacher, image.device)
        return predict_semantics(teacher, image, size=tuple(batch["depth"].shape[-2:])).argmax(1)

    def __call__(self, batch: dict):
        depth, valid = self.depth(batch)
        labels = self.labels(batch)
        if labels is not None:
            labels = torch.where(labels < 0, torch.full_like(labels, IGNORE_LABEL), labels)
        return depth, valid, labels


def _teacher_image(batch: dict) -> torch.Tensor:
    """The image teachers see: ``teacher_image`` (no colour augmentation) if the batch has it, else ``image``."""
    image = batch.get("teacher_image")
    return batch["image"] if image is None else image


def _on(model, device: torch.device):
    if isinstance(model, torch.nn.Module):
        first = next(model.parameters(), None)
        if first is not None and first.device != device:
            model.to(device)
    return model
