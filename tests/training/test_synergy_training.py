"""Training of the synergy network (Jiao et al., ECCV 2018): the synergy loss through seldepth train, and weak supervision (one task's targets per batch)."""

import json

import pytest
import torch

from seldepth.data.collate import IGNORE_LABEL, collate_samples
from seldepth.models.preprocessing import Preprocessing
from seldepth.training import DepthTrainingModule


def _module(structure="lateral"):
    torch.manual_seed(0)
    return DepthTrainingModule("synergy_depth", Preprocessing(input_size=(64, 64)).to_dict(), loss={}, optim={},
                               model_options={"structure": structure, "semantic_classes": 3},
                               teacher={"semantic": "labels"}, synergy={"depth": "attention"})


def _batch(depth=True, labels=True):
    torch.manual_seed(1)
    d = torch.rand(2, 1, 64, 64) * 4 + 0.5
    batch = {"image": torch.rand(2, 3, 64, 64), "depth": d, "valid": torch.full_like(d, depth, dtype=torch.bool)}
    batch["semantics"] = torch.randint(0, 3, (2, 64, 64)) if labels else torch.full((2, 64, 64), IGNORE_LABEL)
    return batch


def _step(module, batch):
    opt = module.configure_optimizers()["optimizer"]
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    opt.zero_grad()
    module.training_step(batch, 0).backward()
    module.on_after_backward()
    opt.step()
    return {n for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}


@pytest.mark.parametrize("structure", ["lateral", "branch_out", "cascaded"])
def test_a_depth_only_batch_leaves_the_semantic_branch_unchanged(structure):
    module = _module(structure)
    changed = _step(module, _batch(labels=False))
    semantic = {n for n, p in module.model.named_parameters()
                if any(p is q for q in module.model.task_parameters("semantics"))}
    assert semantic and not (changed & semantic)
    assert any(n.startswith("depth_head") for n in changed) and any(n.startswith("encoder") for n in changed)


def test_a_semantics_only_batch_leaves_the_depth_branch_unchanged_and_both_train_together():
    module = _module()
    changed = _step(module, _batch(depth=False))
    depth = {n for n, p in module.model.named_parameters() if any(p is q for q in module.model.task_parameters("depth"))}
    assert depth and not (changed & depth) and any(n.startswith("semantic_head") for n in changed)
    changed = _step(module, _batch())
    assert depth <= changed | {n for n in depth if "phi" in n}  # the sharing scalars may stay at exact 0 gradient


def test_mixed_batch_collates_missing_labels_as_unlabelled():
    a = {"image": torch.rand(3, 4, 4), "depth": torch.ones(1, 4, 4), "valid": torch.ones(1, 4, 4, dtype=torch.bool),
         "K": torch.eye(3), "meta": {}}
    b = dict(a, semantics=torch.ones(4, 4, dtype=torch.long))
    for batch in ([a, b], [b, a]):
        out = collate_samples(batch)
        labelled = [i for i, s in enumerate(batch) if "semantics" in s][0]
        assert (out["semantics"][1 - labelled] == IGNORE_LABEL).all() and (out["semantics"][labelled] == 1).all()


def test_seldepth_train_with_the_synergy_loss(tmp_path, monkeypatch):
    from seldepth.cli import main

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    base = ["train", "--model", "synergy_depth", "--data.path", "synthetic:default:12", "--data.batch_size", "4",
            "--data.input_size", "[64,128]", "--trainer.epochs", "1", "--trainer.out_dir", str(out),
            "--trainer.progress_bar", "false", "--trainer.log_every_n_steps", "1", "--synergy.depth", "attention"]
    assert main(base) == 2  # no semantic targets named: refused before any work
    assert not out.exists()
    assert main(base + ["--teacher.semantic", "labels"]) == 0
    assert json.loads((out / "results.json").read_text())["test"]["metrics"]["rmse"] > 0
    import csv

    logged = {k for r in csv.DictReader((out / "csv" / "metrics.csv").open()) for k, v in r.items() if v}
    assert {"train/depth", "train/semantic", "train/gradient", "val/miou"} <= logged


def test_a_one_task_phase_trains_only_that_task_on_full_batches():
    """The fine-tuned schedule's phases: synergy.tasks leaves the other task's branch unchanged."""
    torch.manual_seed(0)
    module = DepthTrainingModule("synergy_depth", Preprocessing(input_size=(64, 64)).to_dict(), loss={}, optim={},
                                 model_options={"structure": "lateral", "semantic_classes": 3},
                                 teacher={"semantic": "labels"}, synergy={"tasks": ["semantics"]})
    changed = _step(module, _batch())
    depth = {n for n, p in module.model.named_parameters() if any(p is q for q in module.model.task_parameters("depth"))}
    assert depth and not (changed & depth) and any(n.startswith("semantic_head") for n in changed)


def test_the_depth_only_baseline_trains_with_the_synergy_depth_loss():
    torch.manual_seed(0)
    module = DepthTrainingModule("synergy_depth", Preprocessing(input_size=(64, 64)).to_dict(), loss={}, optim={},
                                 model_options={"structure": "depth_only"}, synergy={"depth": "attention"})
    batch = _batch()
    loss = module.training_step(batch, 0)
    from seldepth.losses.synergy import SynergyLoss, SynergyLossConfig

    out = module.model.forward_tasks(module.model.preprocessing(batch["image"]))
    expected, terms, supervised = SynergyLoss(SynergyLossConfig())(out.depth, None, batch["depth"], batch["valid"])
    assert supervised == {"depth": True, "semantics": False} and set(terms) == {"depth", "gradient"}
    torch.testing.assert_close(loss, expected)
    assert _step(module, batch)
