"""Evaluating a depth model on a data set under a protocol (``seldepth eval``)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from seldepth.data.collate import IGNORE_LABEL, collate_samples
from seldepth.data.skipping import sample_batches
from seldepth.defaults import DEFAULT_BATCH_SIZE, DEFAULT_NUM_WORKERS, check_number
from seldepth.inference import check_some_finite, count_non_finite, predict_depth, predict_semantics, semantic_classes
from seldepth.evaluation.metrics import METRIC_NAMES, DepthMetrics, SemanticIoU
from seldepth.evaluation.protocol import Protocol


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: Dataset, protocol: Protocol, batch_size: int = DEFAULT_BATCH_SIZE,
             num_workers: int = DEFAULT_NUM_WORKERS, progress: bool = True) -> dict:
    """Predict on every sample at its ground truth's resolution and score under ``protocol``.

    A model with a semantic output (:func:`~seldepth.inference.semantic_classes`) scored on a data
    set with ``semantics`` also gets ``result["semantics"] = {"miou", "iou"}`` (a second, unflipped
    pass for the logits, at the labels' resolution).

    Returns:
        ``{"metrics": {...}, "protocol": {...}, "num_images": N, "non_finite": M}`` (and ``"semantics"``):
        M predicted depth values were NaN or infinite (the metrics score them as the protocol's nearest
        depth, after a :class:`~seldepth.inference.NonFiniteDepthWarning`).

    Raises:
        ValueError: naming the model, when every predicted value is NaN or infinite; naming ``batch_size`` or
            ``num_workers`` when it is not an integer >= 1 (>= 0).
    """
    check_number("batch_size", batch_size, 1, integer=True)
    check_number("num_workers", num_workers, 0, integer=True)
    model.eval()
    metric = DepthMetrics(protocol)
    classes = semantic_classes(model)
    iou = SemanticIoU(classes, ignore_index=IGNORE_LABEL) if classes else None
    labelled = False
    non_finite = total = 0
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples)
    for batch in tqdm(sample_batches(loader), total=len(loader), desc="eval", unit="batch", disable=not progress):
        depth = batch["depth"]
        pred = predict_depth(model, batch["image"], flip=protocol.flip, size=tuple(depth.shape[-2:]))
        non_finite += count_non_finite(pred)
        total += pred.numel()
        metric.update(pred.cpu(), depth, batch["valid"])
        if iou is not None and batch.get("semantics") is not None:
            labelled = True
            iou.update(predict_semantics(model, batch["image"], size=tuple(depth.shape[-2:])).cpu(), batch["semantics"])
    check_some_finite(model, non_finite, total, f"depth predictions on {total} pixels")
    values = metric.compute()
    n = values.pop("num_images")
    result = {"metrics": values, "protocol": protocol.to_dict(), "num_images": n, "non_finite": non_finite}
    if labelled:
        result["semantics"] = iou.compute()
    return result


def format_table(result: dict, protocol: Protocol) -> str:
    """A plain-text table of a result of :func:`evaluate`, headed by its protocol."""
    lines = [protocol.describe(), f"images: {result['num_images']}"]
    if result.get("non_finite"):
        lines.append(f"warning: {result['non_finite']} predicted depth values were NaN or infinite "
                     f"(scored as the nearest depth of the protocol's range)")
    labels = [""] + [f"@{c:g}m" for c in protocol.caps]
    header = f"{'range':>8} " + " ".join(f"{n:>9}" for n in METRIC_NAMES)
    lines.append(header)
    for label in labels:
        row = " ".join(f"{result['metrics'][n + label]:>9.4f}" for n in METRIC_NAMES)
        lines.append(f"{(label.lstrip('@') or 'all'):>8} " + row)
    if "scale_ratio" in result["metrics"]:
        m = result["metrics"]
        lines.append(f"median scaling: ratio median(gt) / median(pred) mean {m['scale_ratio']:.4g}, "
                     f"spread (std / mean) {m['scale_ratio_spread']:.4f}")
    if "semantics" in result:
        iou = " ".join("-" if v != v else f"{v:.3f}" for v in result["semantics"]["iou"])
        lines.append(f"semantic mIoU {result['semantics']['miou']:.4f} (per class: {iou})")
    return "\n".join(lines)
