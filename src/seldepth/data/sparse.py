"""LiDAR-like sparse ground truth from dense depth: the setting of Chiu et al., ICPR 2020, simulated on synthetic data.

A spinning LiDAR seen by a camera gives depth along a few dozen nearly horizontal scan
lines, sampled every few pixels along each line, with drop-outs. :func:`lidar_mask` draws such
a pattern: ``lines`` rows spread evenly over the band ``rows`` of the image height (a per-frame
random phase, each row bent by a gentle per-line curve of up to ``bend`` pixels), every
``step``-th pixel along a row, and a fraction ``dropout`` of those points removed. ``rows``
imitates the LiDAR's vertical field of view: on KITTI the scans cover about the lower two thirds
of the image (``rows: [0.35, 1.0]``) and the top has no ground truth at all. The pattern is a fixed property of a
frame (seeded by its index), not drawn anew each epoch: otherwise the epochs together would
see dense ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from seldepth.defaults import check_number


@dataclass(frozen=True)
class SparseDepthConfig:
    """LiDAR-like sparsification of the training ground truth (``enabled`` false: dense).

    Attributes:
        lines: scan lines over the image height.
        step: pixels between points along a line.
        dropout: fraction of points removed at random.
        bend: largest vertical bend of a line (pixels).
        seed: seeds every frame's pattern (with the frame's index).
        rows: (top, bottom) fractions of the image height that the scan lines cover.
    """

    enabled: bool = False
    lines: int = 16
    step: int = 2
    dropout: float = 0.1
    bend: float = 2.0
    seed: int = 0
    rows: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.lines < 1 or self.step < 1:
            raise ValueError(f"data.sparse.lines and data.sparse.step must be >= 1, got {self.lines}, {self.step}")
        check_number("data.sparse.dropout", self.dropout, 0, 1, high_open=True)
        if len(self.rows) != 2 or not 0 <= self.rows[0] < self.rows[1] <= 1:
            raise ValueError(f"data.sparse.rows must be (top, bottom) with 0 <= top < bottom <= 1, got {list(self.rows)}")
        check_number("data.sparse.bend", self.bend, 0)


def lidar_mask(height: int, width: int, config: SparseDepthConfig, index: int) -> torch.Tensor:
    """(H, W) bool: the pixels a simulated LiDAR measures in frame ``index``.

    Coverage is about ``lines / H * (1 - dropout) / step`` of the pixels (3.7% for 16 lines, step 2,
    dropout 0.1 at H = 192), all inside the band ``rows``.
    """
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + index)
    top = config.rows[0] * height
    spacing = (config.rows[1] - config.rows[0]) * height / config.lines
    phase = top + float(torch.rand((), generator=g)) * spacing
    x = torch.arange(0, width, config.step)
    t = x.float() / max(width - 1, 1) * 2 - 1  # -1 .. 1 across the image
    mask = torch.zeros(height, width, dtype=torch.bool)
    for k in range(config.lines):
        curve = config.bend * float(torch.rand((), generator=g) * 2 - 1) * (t * t)
        rows = (phase + k * spacing + curve).round().long()
        keep = (rows >= 0) & (rows < height) & (torch.rand(len(x), generator=g) >= config.dropout)
        mask[rows[keep], x[keep]] = True
    return mask


class SparseDepth(Dataset):
    """A data set whose samples keep depth only where :func:`lidar_mask` measures (``valid`` and ``depth`` masked)."""

    def __init__(self, dataset: Dataset, config: SparseDepthConfig):
        self.dataset = dataset
        self.config = config

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        sample = self.dataset[index]
        depth, valid = sample["depth"], sample["valid"]
        keep = lidar_mask(depth.shape[-2], depth.shape[-1], self.config, index)[None] & valid
        return dict(sample, depth=torch.where(keep, depth, torch.zeros_like(depth)), valid=keep)
