"""Batching sample dicts."""

from __future__ import annotations

import torch

STACKED_KEYS = ("image", "depth", "valid", "K", "semantics", "teacher_image", "sources", "source_pose", "source_pose_known", "snippet")
# Label of pixels without a semantic label (and of whole samples without semantics in a mixed batch).
IGNORE_LABEL = -1


def collate_samples(batch: list[dict]) -> dict:
    """Stack the tensors of a list of samples (image, depth, valid, K, and semantics and teacher_image when present); meta as a list.

    In a batch where only some samples have ``semantics``, the others get all-``IGNORE_LABEL`` maps.

    Markers of skipped samples (``{"skipped": message}``, see :mod:`seldepth.data.skipping`) are
    left out; their messages are listed under ``"skipped"`` when there are any. A batch of
    markers only has no tensors and an empty ``meta``.
    """
    skipped = [s["skipped"] for s in batch if "skipped" in s]
    samples = [s for s in batch if "skipped" not in s]
    out: dict = {}
    if samples:
        keys = [k for k in STACKED_KEYS if k in samples[0] and k != "semantics"]
        out = {k: torch.stack([s[k] for s in samples]) for k in keys}
        if any("semantics" in s for s in samples):  # in a mixed data set the samples without labels are unlabelled
            out["semantics"] = torch.stack([
                s["semantics"] if "semantics" in s else torch.full(s["depth"].shape[-2:], IGNORE_LABEL, dtype=torch.long)
                for s in samples])
    out["meta"] = [s["meta"] for s in samples]
    if skipped:
        out["skipped"] = skipped
    return out
