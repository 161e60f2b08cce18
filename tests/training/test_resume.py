"""A run stopped and resumed trains exactly as an uninterrupted one: same batches, same augmentation, same random
numbers, so the same weights and metrics; and its results count the training time of every part."""

import json

import pytest
import torch

from helpers import tiny_train_args
from seldepth.cli import main
from seldepth.training import DepthTrainingModule
from seldepth.training.resume import EpochSampler


SHORT = ["--data.limit_train", "12", "--trainer.evaluate_test", "false"]  # 6 steps an epoch


class Killed(Exception):
    pass


def _kill_at(monkeypatch, step: int) -> None:
    """Stop training (as a kill would) when global step ``step`` starts."""
    original = DepthTrainingModule.training_step

    def training_step(self, batch, batch_idx):
        if self.global_step == step:
            raise Killed(f"killed at step {step}")
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DepthTrainingModule, "training_step", training_step)


def _state(path) -> dict:
    return torch.load(path, weights_only=True, map_location="cpu")


@pytest.fixture(scope="module")
def uninterrupted(tiny_splits, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "uninterrupted"
    args = [*tiny_train_args(tiny_splits, out, epochs=2), *SHORT,
            "--trainer.checkpoint_every_n_steps", "4"]  # where checkpoints are written changes no number
    assert main(["train", *args]) == 0
    return out


@pytest.mark.parametrize("every, resumed_from", [("4", 8), (None, 6)], ids=["mid-epoch", "epoch-end"])
def test_a_run_killed_and_resumed_equals_the_uninterrupted_run(uninterrupted, tiny_splits, tmp_path, monkeypatch,
                                                               every, resumed_from):
    out = tmp_path / "run"
    args = [*tiny_train_args(tiny_splits, out, epochs=2), *SHORT]
    if every:
        args += ["--trainer.checkpoint_every_n_steps", every, "--data.num_workers", "1"]  # the order does not
        # depend on the loader's worker processes either
    _kill_at(monkeypatch, 10)  # in the second epoch (6 steps each)
    assert main(["train", *args]) == 1
    monkeypatch.undo()
    killed = _state(out / "checkpoints" / "last.ckpt")
    assert killed["global_step"] == resumed_from
    assert _state(uninterrupted / "checkpoints" / "last.ckpt")["global_step"] == 12  # 2 epochs of 6 steps
    assert not (out / "results.json").exists()

    assert main(["train", *args, "--resume"]) == 0
    for name in ("last.ckpt", "best.ckpt"):  # the same batches and random numbers: the same weights
        final, reference = _state(out / "checkpoints" / name), _state(uninterrupted / "checkpoints" / name)
        assert final["global_step"] == reference["global_step"], name
        for key, value in reference["state_dict"].items():
            assert torch.equal(final["state_dict"][key], value), (name, key)
    results = json.loads((out / "results.json").read_text())
    expected = json.loads((uninterrupted / "results.json").read_text())
    for key, value in expected["val"]["metrics"].items():
        assert results["val"]["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    # the training time of both parts: up to the checkpoint resumed from, and the resumed part's
    before = next(s for k, s in killed["callbacks"].items() if "ResumeState" in k)["train_seconds"]
    assert results["train_seconds"] >= results["train_seconds_this_run"] > 0
    assert results["train_seconds"] == pytest.approx(before + results["train_seconds_this_run"], abs=0.2)


def test_the_epoch_sampler_order_depends_on_seed_and_epoch_only_and_resumes_mid_epoch():
    data = list(range(10))
    a, b = EpochSampler(data, seed=3), EpochSampler(data, seed=3)
    torch.rand(5)  # the global random state plays no part
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b) and sorted(i for i, _ in a) == data
    seeds = dict(a.pairs(1))
    b.resume_at(1, 4)
    assert list(b) == a.pairs(1)[4:]  # the rest of the epoch, with each sample's own seed
    assert list(b) == a.pairs(1)  # once only: the next pass is a whole epoch
    assert len(set(seeds.values())) == 10
    # under DDP the processes share each epoch's permutation (padded to equal shares)
    shares = [EpochSampler(data, seed=3, num_replicas=3, rank=r) for r in range(3)]
    covered = [i for s in shares for i, _ in s]
    assert set(covered) == set(data) and [len(list(s)) for s in shares] == [4, 4, 4]


def test_the_per_snippet_motion_optimiser_is_saved_and_restored():
    # self-supervised runs fit per-snippet corrections with their own SparseAdam, which Lightning does not save
    from seldepth.models.preprocessing import Preprocessing
    from seldepth.training.selfsup import SelfSupervisedModule

    def make():
        return SelfSupervisedModule("meter_xxs", Preprocessing(input_size=(64, 64)).to_dict(), optim={"lr": 1e-3},
                                    model_options={"output": "softplus"}, selfsup={"snippet_motion_lr": 0.01},
                                    num_snippets=5)

    trained = make()
    trained.snippet_motion(torch.tensor([1, 3])).sum().backward()
    trained._snippet_optimizer.step()
    checkpoint = {}
    trained.on_save_checkpoint(checkpoint)
    resumed = make()
    resumed.on_load_checkpoint(checkpoint)
    saved, restored = trained._snippet_optimizer.state_dict()["state"][0], resumed._snippet_optimizer.state_dict()["state"][0]
    assert saved.keys() == restored.keys() and "exp_avg" in saved
    for key, value in saved.items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored[key])), key
