"""A loss or weights that stop being finite stop training with an error naming the step and the terms; the
checkpoints keep the last finite state (not one byte changes) and no model file or results are written."""

import pytest
import torch

from helpers import tiny_train_args
from seldepth.cli import main
from seldepth.losses.balanced import BalancedLoss
from seldepth.training import DepthTrainingModule

EVERY_STEP = ["--data.limit_train", "12", "--trainer.evaluate_test", "false",  # 6 steps an epoch
              "--trainer.checkpoint_every_n_steps", "1"]  # a checkpoint after each step, were it not stopped


def _assert_nothing_written_from_it(out, before: dict) -> None:
    for name, content in before.items():
        assert (out / "checkpoints" / name).read_bytes() == content, name
    assert not (out / "results.json").exists() and not (out / "model.safetensors").exists()


def test_a_loss_that_is_not_finite_stops_training_before_its_update(tiny_splits, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    original = BalancedLoss.forward
    calls, before = [], {}

    def forward(self, *args):
        loss, terms = original(self, *args)
        calls.append(1)
        if len(calls) == 9:  # step 8, in the second epoch: last.ckpt (step 7) and best.ckpt (epoch 0) exist
            before.update({name: (out / "checkpoints" / name).read_bytes() for name in ("last.ckpt", "best.ckpt")})
            terms = dict(terms, ssim=torch.tensor(float("nan")), grad=torch.tensor(float("inf")))
            loss = loss + terms["ssim"]
        return loss, terms

    monkeypatch.setattr(BalancedLoss, "forward", forward)
    assert main(["train", *tiny_train_args(tiny_splits, out, epochs=2), *EVERY_STEP]) == 1
    err = capsys.readouterr().err
    assert "training diverged at step 8 (epoch 1, batch 2): the loss is nan; terms not finite: grad = inf, ssim = nan" in err
    assert "optim.lr" in err and "TrainingDiverged" in err
    _assert_nothing_written_from_it(out, before)
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8  # steps 0 .. 7


def test_weights_that_are_not_finite_are_never_checkpointed(tiny_splits, tmp_path, monkeypatch, capsys):
    # a finite loss can still give infinite gradients: the update makes the weights NaN
    out = tmp_path / "run"
    original = DepthTrainingModule.optimizer_step
    before = {}

    def optimizer_step(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.global_step == 3:
            before["last.ckpt"] = (out / "checkpoints" / "last.ckpt").read_bytes()
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))

    monkeypatch.setattr(DepthTrainingModule, "optimizer_step", optimizer_step)
    assert main(["train", *tiny_train_args(tiny_splits, out, epochs=1), *EVERY_STEP]) == 1
    err = capsys.readouterr().err
    assert "training diverged: the weights are not finite after step 3 (epoch 0; model." in err
    _assert_nothing_written_from_it(out, before)
