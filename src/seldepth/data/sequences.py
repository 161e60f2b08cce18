"""Frame sequences for self-supervised depth from video (vid2depth, Mahjourian et al., CVPR 2018): a target frame and its neighbours.

A frame data set that knows where each of its samples sits in a video (``sequence_frame(i)`` ->
:class:`FrameId`: seldepth's synthetic sets from their JSON sidecars, KITTI raw drives from
the frame numbers and the drive's ``poses.txt``) becomes a data set of snippets: the target frame
``n`` of a sequence and its sources ``n - stride`` and ``n + stride`` from the same data set. A
sample is the target's sample dict plus::

    sources          (S, 3, H, W) float RGB in [0, 1], the source frames (S = 2: before, after)
    source_pose      (S, 4, 4) target-to-source camera transforms from the data's poses, when
                     every frame has one (synthetic, KITTI with poses.txt); else identities
    source_pose_known  bool, whether source_pose holds real poses
    snippet          int64, the snippet's number in this data set (for per-snippet motion
                     corrections, see seldepth.training.selfsup)

The target keeps its depth (for validation; self-supervised training does not read it).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from seldepth.data.sample import FrameId
from seldepth.data.subsets import reader_and_indices
from seldepth.data.errors import DatasetError
from seldepth.data.transforms import resize


def frame_ids(dataset: Dataset) -> list[FrameId]:
    """The :class:`FrameId` of every sample, read without decoding images.

    Raises:
        DatasetError: the data set's reader has no sequence information.
    """
    base, indices = reader_and_indices(dataset)
    if not hasattr(base, "sequence_frame"):
        raise DatasetError(f"{type(base).__name__} ({getattr(base, 'layout', '?')}) has no frame order: self-supervised "
                           "training needs video frames (seldepth synth --sequence-length T, synthetic:default:N:SEED:T, "
                           "or KITTI raw drives)")
    return [base.sequence_frame(i) for i in indices]


class FrameSnippets(Dataset):
    """Target frames with their neighbours ``-stride`` and ``+stride`` (module docstring).

    Args:
        dataset: a frame data set whose reader has ``sequence_frame`` (possibly under ``Subset``).
        stride: frames between the target and each source.
        size: (H, W) to resize every frame to (K scaled), or None to keep the native size.

    Raises:
        DatasetError: no frame of the data set has both neighbours in it.
    """

    def __init__(self, dataset: Dataset, stride: int = 1, size: tuple[int, int] | None = None):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.dataset, self.stride, self.size = dataset, stride, size
        ids = frame_ids(dataset)
        where = {(f.sequence, f.number): i for i, f in enumerate(ids)}
        self.snippets = []  # (target, before, after) indices into dataset
        for i, f in enumerate(ids):
            before, after = where.get((f.sequence, f.number - stride)), where.get((f.sequence, f.number + stride))
            if before is not None and after is not None:
                self.snippets.append((i, before, after))
        if not self.snippets:
            raise DatasetError(f"no frame of the {len(ids)} has both neighbours {stride} frame(s) away in the data set "
                               f"({len({f.sequence for f in ids})} sequences); generate longer sequences or lower the stride")
        self.ids = ids

    def __len__(self) -> int:
        return len(self.snippets)

    def __getitem__(self, index: int) -> dict:
        target, *sources = self.snippets[index]
        samples = [self.dataset[i] for i in (target, *sources)]
        if self.size is not None:
            samples = [resize(s, self.size) for s in samples]
        out = dict(samples[0])
        out["sources"] = torch.stack([s["image"] for s in samples[1:]])
        poses = [self.ids[i].pose for i in (target, *sources)]
        known = all(p is not None for p in poses)
        if known:  # target-to-source: world_from_source^-1 @ world_from_target
            out["source_pose"] = torch.stack([torch.from_numpy(np.linalg.inv(p) @ poses[0]).float() for p in poses[1:]])
        else:
            out["source_pose"] = torch.eye(4).repeat(len(sources), 1, 1)
        out["source_pose_known"] = torch.tensor(known)
        out["snippet"] = torch.tensor(index)  # this snippet's number in the set (per-snippet motion corrections)
        return out
