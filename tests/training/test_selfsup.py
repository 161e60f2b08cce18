"""Self-supervised training from video: no depth label is read, both networks learn, and the run's outputs."""

import json

import pytest
import torch

from seldepth.losses.photometric import pose_to_matrix
from seldepth.models.preprocessing import Preprocessing
from seldepth.training.selfsup import SelfSupervisedModule, pose_errors


def _module(**selfsup):
    torch.manual_seed(0)
    return SelfSupervisedModule("meter_xxs", Preprocessing(input_size=(64, 64)).to_dict(), optim={"lr": 1e-3},
                                model_options={"output": "softplus"}, selfsup=selfsup)


def _batch():
    torch.manual_seed(1)
    K = torch.tensor([[40.0, 0, 31.5], [0, 40.0, 31.5], [0, 0, 1]]).repeat(2, 1, 1)
    return {"image": torch.rand(2, 3, 64, 64), "sources": torch.rand(2, 2, 3, 64, 64), "K": K}


def test_training_reads_no_depth_and_trains_both_networks():
    for selfsup in ({}, {"loss": {"w_alignment": 0.1}}):
        module = _module(**selfsup)
        batch = _batch()  # no "depth" or "valid" key: a label read would fail
        loss = module.training_step(batch, 0)
        assert torch.isfinite(loss) and loss > 0
        loss.backward()
        for net in (module.model, module.pose_net):
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
        assert module.pose_net.motion.weight.grad.abs().sum() > 0


def test_pose_errors_by_hand():
    a = pose_to_matrix(torch.tensor([[0.1, 0, 0.1, 0, 0, 0], [0, 0, 1.0, 0.2, 0, 0]]))
    b = pose_to_matrix(torch.tensor([[0.5, 0, 0.5, 0, 0, 0], [0, 0, 3.0, 0, 0, 0]]))  # same directions, other lengths
    t, r = pose_errors(a, b)
    torch.testing.assert_close(t, torch.zeros(2), atol=1e-3, rtol=0)
    torch.testing.assert_close(r, torch.tensor([0.0, 11.459]), atol=1e-3, rtol=0)  # 0.2 rad


def test_pose_errors_skip_the_direction_of_a_camera_turning_on_the_spot():
    turn = pose_to_matrix(torch.tensor([[0.0, 0, 0, 0, 0.1, 0]]))  # no translation: no direction to score
    moved = pose_to_matrix(torch.tensor([[0.0, 0, 0.2, 0, 0.1, 0]]))
    t, r = pose_errors(moved, turn)
    assert torch.isnan(t).all()
    torch.testing.assert_close(r, torch.zeros(1), atol=1e-3, rtol=0)


def test_evaluate_pose_averages_the_direction_over_moving_pairs_only():
    from seldepth.training.selfsup import evaluate_pose

    class Sideways(torch.nn.Module):  # always predicts a step along +x to both sources
        def forward(self, target, sources):
            return torch.tensor([1.0, 0, 0, 0, 0, 0]).expand(len(target), sources.shape[1], 6)

    true = pose_to_matrix(torch.tensor([[[0.0, 0, 1.0, 0, 0, 0], [1.0, 0, 0, 0, 0, 0]],   # 90 and 0 deg off
                                        [[0.0, 0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0, 0]]]))  # standing still
    snippets = [{"image": torch.rand(3, 8, 8), "sources": torch.rand(2, 3, 8, 8), "source_pose": true[i],
                 "source_pose_known": torch.tensor(True), "meta": {}} for i in range(2)]
    result = evaluate_pose(Sideways(), snippets, (8, 8))
    assert result["num_pairs"] == 4 and result["translation_pairs"] == 2
    assert abs(result["translation_deg"] - 45.0) < 1e-3  # (90 + 0) / 2; the still pairs would have pulled it to 22.5
    assert abs(result["rotation_deg"]) < 1e-3


def test_with_true_motion_puts_in_the_named_part_by_hand():
    from seldepth.training.selfsup import with_true_motion

    predicted = pose_to_matrix(torch.tensor([[[0.1, 0, 0, 0, 0.05, 0]]]))
    true = pose_to_matrix(torch.tensor([[[0.0, 0, 0.3, 0.02, 0, 0]]]))
    known = torch.tensor([True])
    rot = with_true_motion(predicted, true, known, "rotation")
    assert torch.equal(rot[..., :3, :3], true[..., :3, :3]) and torch.equal(rot[..., :3, 3], predicted[..., :3, 3])
    trans = with_true_motion(predicted, true, known, "translation")
    assert torch.equal(trans[..., :3, :3], predicted[..., :3, :3]) and torch.equal(trans[..., :3, 3], true[..., :3, 3])
    assert torch.equal(with_true_motion(predicted, true, known, "both"), true)
    assert with_true_motion(predicted, true, torch.tensor([False]), "none") is predicted
    with pytest.raises(ValueError, match="selfsup.true_motion: rotation needs camera poses.*1 without"):
        with_true_motion(predicted, true, torch.tensor([False]), "rotation")


def test_true_motion_both_trains_the_depth_on_the_true_motion_only():
    from seldepth.losses.photometric import PhotometricLoss

    with pytest.raises(ValueError, match="selfsup.true_motion must be one of none, rotation, translation, both"):
        _module(true_motion="all")
    module = _module(true_motion="both")
    batch = _batch()
    batch["source_pose"] = pose_to_matrix(torch.tensor([[[0.05, 0, 0.1, 0, 0.02, 0], [-0.05, 0, -0.1, 0, -0.02, 0]]] * 2))
    batch["source_pose_known"] = torch.tensor([True, True])
    loss = module.training_step(batch, 0)
    expected, _ = PhotometricLoss()(batch["image"], batch["sources"], module._depth(batch["image"]), batch["source_pose"],
                                    batch["K"])
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is None for p in module.pose_net.parameters())  # scored only, not trained
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.model.parameters())


def test_snippet_motion_corrects_the_pose_network_and_moves_only_the_batch_rows():
    from seldepth.losses.photometric import PhotometricLoss

    with pytest.raises(ValueError, match="selfsup.snippet_motion_lr must be a finite number >= 0"):
        _module(snippet_motion_lr=-1)
    module = SelfSupervisedModule("meter_xxs", Preprocessing(input_size=(64, 64)).to_dict(), optim={"lr": 1e-3},
                                  model_options={"output": "softplus"}, selfsup={"snippet_motion_lr": 0.01}, num_snippets=5)
    assert module.snippet_motion.weight.shape == (5, 12) and not module.snippet_motion.weight.any()
    batch = _batch()
    batch["snippet"] = torch.tensor([3, 1])
    correction = torch.tensor([[0.02, 0, 0.1, 0, 0.01, 0], [-0.02, 0, -0.1, 0, -0.01, 0]])
    with torch.no_grad():
        module.snippet_motion.weight[3] = correction.flatten()
    loss = module.training_step(batch, 0)
    # the loss sees the pose network's motion plus each snippet's own row (zero for snippet 1)
    motion = module.pose_net(batch["image"], batch["sources"]).detach() + torch.stack([correction, torch.zeros(2, 6)])
    expected, _ = PhotometricLoss()(batch["image"], batch["sources"], module._depth(batch["image"]), pose_to_matrix(motion),
                                    batch["K"])
    torch.testing.assert_close(loss, expected)
    before = module.snippet_motion.weight.detach().clone()
    loss.backward()
    module.on_after_backward()  # Lightning calls it after the backward pass: the rows' SparseAdam step
    moved = (module.snippet_motion.weight.detach() != before).any(1)
    assert moved.tolist() == [False, True, False, True, False]
    # Adam's first step moves each coordinate with a gradient by the learning rate, against the gradient's sign
    step = (module.snippet_motion.weight.detach() - before)[[1, 3]]
    torch.testing.assert_close(step.abs()[step != 0], torch.full_like(step[step != 0], 0.01), rtol=1e-3, atol=1e-6)
    assert module.pose_net.motion.weight.grad.abs().sum() > 0  # the pose network still learns from the same loss
    assert module.snippet_motion.weight.grad is None  # cleared for the next batch


def test_seldepth_train_selfsup_end_to_end(tmp_path, monkeypatch, capsys):
    from seldepth.cli import main
    from seldepth.models.loading import load_model

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    args = ["train", "--model", "meter_xxs", "--data.path", "synthetic:default:10:0:3", "--data.batch_size", "4",
            "--data.input_size", "[64,64]", "--trainer.epochs", "1", "--trainer.out_dir", str(out),
            "--trainer.progress_bar", "false", "--selfsup", "{stride: 1, snippet_motion_lr: 0.003}"]
    assert main(args) == 2 and "model_options: {output: softplus}" in capsys.readouterr().err  # refused before any work
    assert main(args + ["--model_options", "{output: softplus}"]) == 0
    printed = capsys.readouterr().out
    assert "median-scaled per image" in printed and "translation direction error" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["protocol"]["median_scaling"] and results["test"]["metrics"]["scale_ratio"] > 0
    assert results["pose"]["num_pairs"] > 0 and 0 <= results["pose"]["translation_deg"] <= 180
    assert load_model(out / "pose.safetensors").name == "pose_net"
    assert load_model(out / "model.safetensors").config.output == "softplus"
    # one correction row per training snippet, each moved by training; the checkpoint rebuilds the table
    ckpt = out / "checkpoints" / "last.ckpt"
    rows = torch.load(ckpt, weights_only=False)["state_dict"]["snippet_motion.weight"]
    assert rows.shape[1] == 12 and bool(rows.abs().sum(1).gt(0).all())
    assert torch.equal(SelfSupervisedModule.load_from_checkpoint(ckpt).snippet_motion.weight.detach(), rows)
    assert main(["eval", "--model", str(out / "model.safetensors"), "--data", "synthetic:default:10:0:3", "--split", "test",
                 "--protocol", "synthetic", "--median-scaling"]) == 0
    assert "median scaling: ratio median(gt) / median(pred) mean" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--selectivity.layers", "[enc_7]"], "selfsup: self-supervised training takes no teacher or selectivity"),
    (["--selfsup.pose_model", "posenet9"], "selfsup.pose_model: unknown pose network 'posenet9'; available: pose_net"),
])
def test_selfsup_config_errors(tmp_path, extra, message):
    from seldepth.training.config import parse_train_args

    base = ["--data.path", "synthetic:default:12", "--model_options", "{output: softplus}", "--selfsup", "{stride: 1}",
            "--trainer.out_dir", str(tmp_path / "r")]
    with pytest.raises(ValueError, match=message):
        parse_train_args(base + extra)


def test_pose_net_shapes_options_and_errors():
    from torch import nn

    from seldepth.models import create_model, list_models

    assert list_models("pose") == ["pose_net"] and "pose_net" not in list_models()
    net = create_model("pose_net", sources=3)
    assert net(torch.rand(2, 3, 64, 96), torch.rand(2, 3, 3, 64, 96)).shape == (2, 3, 6)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 7
    plain = create_model("pose_net", batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    with pytest.raises(ValueError, match=r"pose_net expects target \(B, 3, H, W\) and sources \(B, 2, 3, H, W\)"):
        plain(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 3, 64, 64))
