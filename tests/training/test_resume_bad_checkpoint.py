"""Resuming from a truncated or hostile ``last.ckpt``: a ValueError naming the file; a pickle's code never runs."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_train_args
from seldepth.training.config import parse_train_args
from seldepth.training.run import train
from seldepth.training.run_folder import RunFolder


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("kind", ["hostile", "truncated"])
def test_resume_from_a_bad_last_checkpoint_names_it(tiny_splits, tmp_path, kind, one_thread):
    out = tmp_path / "run"
    cfg, _ = parse_train_args(tiny_train_args(tiny_splits, out, epochs=1))
    last = RunFolder(out).last_checkpoint
    last.parent.mkdir(parents=True)
    marker = tmp_path / "ran"
    torch.save({"global_step": 3, "state_dict": {}, "payload": Payload(marker) if kind == "hostile" else 0}, last)
    if kind == "truncated":
        last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{last}: cannot be resumed from"):
        train(cfg, resume=True)
    assert not marker.exists()
    assert not RunFolder(out).config_path.exists()  # refused before the run's config is written
