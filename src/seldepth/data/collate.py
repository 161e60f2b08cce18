"""Batching sample dicts."""

from __future__ import annotations

import torch

STACKED_KEYS = ("image", "depth", "valid", "K", "semantics")


def collate_samples(batch: list[dict]) -> dict:
    """Stack the tensors of a list of samples (image, depth, valid, K, semantics when present); meta as a list."""
    keys = [k for k in STACKED_KEYS if k in batch[0]]
    out = {k: torch.stack([s[k] for s in batch]) for k in keys}
    out["meta"] = [s["meta"] for s in batch]
    return out
