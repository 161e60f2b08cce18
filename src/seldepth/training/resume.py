"""Resuming a training run as if it had never stopped: what a checkpoint holds beyond Lightning's own state.

Lightning's checkpoint restores the weights, the optimiser and schedule, and the loop counters (epoch, step,
batches done in the epoch). For a resumed run to train on the same batches with the same random numbers as an
uninterrupted one, this module adds:

* the training order (:class:`EpochSampler`): a permutation drawn from ``(trainer.seed, epoch)`` alone, never
  from the global random state, so that it does not depend on what ran before;
* each sample's augmentation (:class:`SeededSamples`): drawn from its own seed, which the sampler hands out
  with its index, so that it does not depend on the order the loader workers load in, nor on the global state;
* the position in the epoch (:class:`ResumableTrainLoader`): the batches already trained on, saved and restored
  by Lightning with the fit loop (the loader's ``state_dict`` / ``load_state_dict``), so that a run resumed
  mid-epoch skips exactly those;
* the global random state (torch, CUDA, numpy, python; what dropout and the losses draw from) and the training
  time so far (:class:`ResumeState`), so that ``results.json``'s ``train_seconds`` counts every part of a run.

docs/training.md ("Resuming") lists what still differs.
"""

from __future__ import annotations

import math
import random
import time

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from seldepth.data.collate import collate_samples
from seldepth.data.datamodule import DataConfig, DepthDataModule, SequenceDataModule


def _order_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63)


class EpochSampler(DistributedSampler):
    """The training order: ``(index, sample seed)`` pairs of a permutation drawn from ``(seed, epoch)``.

    A :class:`~torch.utils.data.DistributedSampler` (so that Lightning keeps it under DDP and calls
    ``set_epoch``): each of ``num_replicas`` processes takes every ``num_replicas``-th pair of the padded
    permutation. :meth:`resume_at` makes the next pass over ``epoch`` start after the pairs already trained on.
    """

    def __init__(self, dataset: Dataset, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, start: int) -> None:
        """Take ``epoch``'s order and skip its first ``start`` pairs (of this process) on the next pass."""
        self.set_epoch(epoch)
        self._resume = (int(epoch), int(start))

    def pairs(self, epoch: int) -> list[tuple[int, int]]:
        """This process's ``(index, sample seed)`` pairs of ``epoch``, in order."""
        n = len(self.dataset)
        g = torch.Generator().manual_seed(_order_seed(self.seed, epoch))
        order = torch.randperm(n, generator=g).tolist()
        seeds = torch.randint(0, 2**62, (n,), generator=g).tolist()
        pairs = list(zip(order, seeds))
        if self.total_size > n:  # every process gets as many (DistributedSampler's padding)
            pairs += (pairs * math.ceil((self.total_size - n) / n))[: self.total_size - n]
        return pairs[self.rank:self.total_size:self.num_replicas]

    def __iter__(self):
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
        self._resume = None
        return iter(self.pairs(self.epoch)[start:])


class SeededSamples(Dataset):
    """``dataset[index]`` drawn under ``torch.manual_seed(sample_seed)`` for the ``(index, sample_seed)`` keys of
    :class:`EpochSampler`; the global random state is left as it was (``torch.random.fork_rng``)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class ResumableTrainLoader(DataLoader):
    """The training loader, resumable mid-epoch: ``state_dict`` holds the epoch and the batches handed out in
    it; Lightning saves it with the fit loop and calls ``load_state_dict`` before the resumed run's first batch.

    Lightning's fetcher does not read ahead of the training step for a loader with a length, so the batches
    handed out are the batches trained on when a checkpoint is written (at a step's or an epoch's end).
    """

    def __init__(self, dataset: Dataset, sampler: EpochSampler, batch_size: int, drop_last: bool, num_workers: int = 0):
        self._epoch = 0
        self._batches = 0
        super().__init__(SeededSamples(dataset), batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                         num_workers=num_workers, collate_fn=collate_samples, persistent_workers=num_workers > 0,
                         generator=torch.Generator().manual_seed(_order_seed(sampler.seed, -1)))

    def __iter__(self):
        return self._counted(super().__iter__())

    def _counted(self, batches):
        for batch in batches:
            epoch = self.sampler.epoch
            if epoch != self._epoch:
                self._epoch, self._batches = epoch, 0
            self._batches += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state: dict) -> None:
        epoch, batches = int(state["epoch"]), int(state["batches"])
        if batches >= len(self):  # saved at the epoch's end: the next run starts the next epoch
            epoch, batches = epoch + 1, 0
        self._epoch, self._batches = epoch, batches
        self.sampler.resume_at(epoch, batches * self.batch_size)


class _ResumableTraining:
    """A data module whose training loader is a :class:`ResumableTrainLoader` over :class:`EpochSampler`."""

    seed: int = 0

    def train_dataloader(self) -> ResumableTrainLoader:
        c: DataConfig = self.config
        trainer = getattr(self, "trainer", None)
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(self.train_set, seed=self.seed, num_replicas=replicas, rank=rank)
        return ResumableTrainLoader(self.train_set, sampler, c.batch_size,
                                    drop_last=len(self.train_set) >= c.batch_size, num_workers=c.num_workers)


class ResumableDepthData(_ResumableTraining, DepthDataModule):
    """:class:`~seldepth.data.datamodule.DepthDataModule` with a resumable training order seeded by ``seed``."""

    def __init__(self, config: DataConfig, seed: int = 0):
        super().__init__(config)
        self.seed = int(seed)


class ResumableSequenceData(_ResumableTraining, SequenceDataModule):
    """:class:`~seldepth.data.datamodule.SequenceDataModule` with a resumable training order seeded by ``seed``."""

    def __init__(self, config: DataConfig, stride: int = 1, seed: int = 0):
        super().__init__(config, stride)
        self.seed = int(seed)


def random_states() -> dict:
    """The global random states (torch, CUDA when in use, numpy, python), as types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_states(state: dict) -> None:
    """Restore what :func:`random_states` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


class ResumeState(L.Callback):
    """Saves with every checkpoint the global random states and the training seconds so far; restores both.

    ``seconds_before``: the training time of the run's earlier parts (0 for a run that starts fresh), up to the
    checkpoint it resumed from; :meth:`train_seconds` adds this part's.
    """

    def __init__(self):
        self.seconds_before = 0.0
        self._started = time.monotonic()

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._started = time.monotonic()

    def train_seconds(self) -> float:
        """Training seconds of the whole run so far, earlier parts included."""
        return self.seconds_before + (time.monotonic() - self._started)

    def state_dict(self) -> dict:
        return {"random_states": random_states(), "train_seconds": self.train_seconds()}

    def load_state_dict(self, state: dict) -> None:
        self.seconds_before = float(state.get("train_seconds", 0.0))
        if "random_states" in state:
            set_random_states(state["random_states"])
