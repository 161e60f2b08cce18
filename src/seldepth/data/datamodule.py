"""The Lightning data module of training: train/val/test splits of a data spec, augmentation, loaders."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, Subset

from seldepth.data.collate import collate_samples
from seldepth.data.errors import DatasetError
from seldepth.data.sequences import FrameSnippets
from seldepth.data.sparse import SparseDepth, SparseDepthConfig
from seldepth.data.spec import open_dataset
from seldepth.data.subsets import Transformed, first_n, read_selection
from seldepth.data.transforms import AugmentConfig, TrainTransform


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is fed.

    Attributes:
        path: data spec (``synthetic:DIR``, ``nyu:PATH``); ``synthetic:default`` is the cached default set.
        input_size: (H, W) the network is trained at.
        batch_size: per process.
        num_workers: loader processes per training process.
        limit_train, limit_val: use only the first N samples (None = all).
        train_subset: a chosen list (``seldepth select``'s ``index<TAB>path`` lines) of the
            training split's samples to train on; None = all.
        augment: training augmentation.
        sparse: LiDAR-like sparsification of the training split's ground truth (validation and
            test keep theirs), applied before augmentation.
    """

    path: str = "synthetic:default"
    input_size: tuple[int, int] = (192, 256)
    batch_size: int = 16
    num_workers: int = 0
    limit_train: int | None = None
    limit_val: int | None = None
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    train_subset: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sparse: SparseDepthConfig = field(default_factory=SparseDepthConfig)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"data.input_size must be (H, W) > 0, got {self.input_size}")
        for key in ("limit_train", "limit_val"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"data.{key} must be >= 1 or null, got {getattr(self, key)}")


class DepthDataModule(L.LightningDataModule):
    """Train (augmented, at ``input_size``), val and test (native resolution) loaders of a data spec."""

    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        c = self.config
        if self.train_set is None:
            train = open_dataset(c.path, c.train_split)
            if c.train_subset:
                train = Subset(train, read_selection(c.train_subset, len(train)))
            train = first_n(train, c.limit_train)
            if c.sparse.enabled:
                train = SparseDepth(train, c.sparse)
            self.train_set = Transformed(train, TrainTransform(c.input_size, c.augment))
            self.val_set = first_n(open_dataset(c.path, c.val_split), c.limit_val)

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        c = self.config
        sampler = None
        trainer = getattr(self, "trainer", None)
        if not train and trainer is not None and trainer.world_size > 1:
            # Each sample scored exactly once across processes (no padding repeats).
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False)
        return DataLoader(dataset, batch_size=c.batch_size, shuffle=train, drop_last=train and len(dataset) >= c.batch_size,
                          sampler=sampler, num_workers=c.num_workers, collate_fn=collate_samples,
                          persistent_workers=c.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)


class SequenceDataModule(DepthDataModule):
    """Frame snippets for self-supervised training: target and neighbours ``stride`` frames away.

    Training snippets are resized to ``input_size`` (K scaled) and not augmented; validation
    snippets keep the native size, with the target's depth for the metrics.
    """

    def __init__(self, config: DataConfig, stride: int = 1):
        super().__init__(config)
        self.stride = stride

    def setup(self, stage: str | None = None) -> None:
        c = self.config
        if self.train_set is None:
            try:
                self.train_set = first_n(FrameSnippets(open_dataset(c.path, c.train_split), self.stride, tuple(c.input_size)),
                                        c.limit_train)
                self.val_set = first_n(FrameSnippets(open_dataset(c.path, c.val_split), self.stride), c.limit_val)
            except DatasetError as exc:
                raise DatasetError(f"data.path {c.path}: {exc}") from None
