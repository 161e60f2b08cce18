"""Batching sample dicts."""

from __future__ import annotations

import torch

STACKED_KEYS = ("image", "depth", "valid", "K", "semantics", "teacher_image")


def collate_samples(batch: list[dict]) -> dict:
    """Stack the tensors of a list of samples (image, depth, valid, K, and semantics and teacher_image when present); meta as a list.

    Markers of skipped samples (``{"skipped": message}``, see :mod:`seldepth.data.skipping`) are
    left out; their messages are listed under ``"skipped"`` when there are any. A batch of
    markers only has no tensors and an empty ``meta``.
    """
    skipped = [s["skipped"] for s in batch if "skipped" in s]
    samples = [s for s in batch if "skipped" not in s]
    out: dict = {}
    if samples:
        keys = [k for k in STACKED_KEYS if k in samples[0]]
        out = {k: torch.stack([s[k] for s in samples]) for k in keys}
    out["meta"] = [s["meta"] for s in samples]
    if skipped:
        out["skipped"] = skipped
    return out
