
import pytest
import torch
from safetensors.torch import save_file

from helpers import constant_teacher
from seldepth.losses.logdepth import IGNORE_LABEL
from seldepth.training.teachers import TeacherConfig, TeacherError, TrainingTargets, median_align
from seldepth.training.config import parse_train_args


def _batch():
    depth = torch.full((2, 1, 16, 16), 4.0)
    valid = torch.zeros_like(depth, dtype=torch.bool)
    valid[:, :, ::4] = True  # sparse rows
    return {"image": torch.rand(2, 3, 16, 16), "depth": torch.where(valid, depth, torch.zeros_like(depth)), "valid": valid}


@pytest.mark.parametrize("mode", ["fill", "fill_aligned", "replace"])
def test_depth_teacher_modes(tmp_path, mode):
    path = constant_teacher(tmp_path / "t.safetensors", 2.0)
    batch = _batch()
    depth, valid, labels = TrainingTargets(TeacherConfig(depth=str(path), depth_mode=mode))(batch)
    assert valid.all() and labels is None
    measured, gaps = depth[batch["valid"]], depth[~batch["valid"]]
    if mode == "replace":  # teacher everywhere, the measurements too
        torch.testing.assert_close(depth, torch.full_like(depth, 2.0), atol=1e-4, rtol=1e-4)
    elif mode == "fill":  # measurements kept, teacher in the gaps
        assert (measured == 4.0).all()
        torch.testing.assert_close(gaps, torch.full_like(gaps, 2.0), atol=1e-4, rtol=1e-4)
    else:  # teacher scaled by median(gt / teacher) = 2 before filling
        assert (measured == 4.0).all()
        torch.testing.assert_close(gaps, torch.full_like(gaps, 4.0), atol=1e-4, rtol=1e-4)


def test_no_teacher_passes_the_ground_truth_through():
    batch = _batch()
    depth, valid, labels = TrainingTargets()(batch)
    assert depth is batch["depth"] and torch.equal(valid, batch["valid"]) and labels is None


def test_median_align_per_image():
    teacher = torch.ones(2, 1, 2, 2)
    gt = torch.stack([torch.full((1, 2, 2), 3.0), torch.full((1, 2, 2), 0.5)])
    valid = torch.ones_like(gt, dtype=torch.bool)
    valid[1] = False  # no measurement: unchanged
    out = median_align(teacher, gt, valid)
    assert torch.equal(out[0], torch.full((1, 2, 2), 3.0)) and torch.equal(out[1], teacher[1])


def test_semantic_targets_from_labels_and_from_a_teacher(tmp_path):
    batch = _batch()
    batch["semantics"] = torch.randint(0, 3, (2, 16, 16))
    batch["semantics"][0, 0, 0] = -1
    _, _, labels = TrainingTargets(TeacherConfig(semantic="labels"), semantic_classes=3)(batch)
    assert torch.equal(labels, batch["semantics"]) and labels[0, 0, 0] == IGNORE_LABEL
    path = constant_teacher(tmp_path / "sem.safetensors", 2.0, semantic_classes=3, label=2)
    _, _, labels = TrainingTargets(TeacherConfig(semantic=str(path)), semantic_classes=3)(batch)
    assert labels.shape == (2, 16, 16) and (labels == 2).all()


def test_bad_teacher_file_is_an_error_naming_the_key(tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(TeacherError, match="teacher.depth: .*broken.safetensors"):
        TrainingTargets(TeacherConfig(depth=str(bad)))
    with pytest.raises(TeacherError, match="teacher.depth: .*missing.safetensors"):
        TrainingTargets(TeacherConfig(depth=str(tmp_path / "missing.safetensors")))


def test_teacher_in_another_unit_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    path = constant_teacher(tmp_path / "t.safetensors", 2.0)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta["output_unit"] = "cm"
    save_file(tensors, str(tmp_path / "cm.safetensors"), metadata=meta)
    with pytest.raises(TeacherError, match="predicts depth in 'cm' but the student predicts metres"):
        TrainingTargets(TeacherConfig(depth=str(tmp_path / "cm.safetensors")))
    # through the command line: exit 2 with the message, before any run folder is made
    from seldepth.cli import main

    out = tmp_path / "run"
    assert main(["train", "--model", "realtime_depth", "--data.path", "synthetic:default:12", "--multiscale.space", "log",
                 "--teacher.depth", str(tmp_path / "cm.safetensors"), "--trainer.out_dir", str(out)]) == 2
    assert "teacher.depth" in capsys.readouterr().err and not out.exists()


def test_semantic_teacher_needs_semantic_output_with_the_students_classes(tmp_path):
    depth_only = constant_teacher(tmp_path / "d.safetensors", 2.0)
    with pytest.raises(TeacherError, match="has no semantic output"):
        TrainingTargets(TeacherConfig(semantic=str(depth_only)), semantic_classes=3)
    four = constant_teacher(tmp_path / "s4.safetensors", 2.0, semantic_classes=4)
    with pytest.raises(TeacherError, match="predicts 4 classes but the student has 3"):
        TrainingTargets(TeacherConfig(semantic=str(four)), semantic_classes=3)


def test_train_config_checks_teachers_before_training(tmp_path):
    base = ["--model", "realtime_depth", "--data.path", "synthetic:default:320", "--trainer.out_dir", str(tmp_path / "run")]
    with pytest.raises(ValueError, match="teacher.depth: .*nothing.safetensors"):
        parse_train_args(base + ["--teacher.depth", str(tmp_path / "nothing.safetensors")])
    with pytest.raises(ValueError, match="teacher.semantic: realtime_depth has no semantic output"):
        parse_train_args(base + ["--teacher.semantic", "labels"])
    with pytest.raises(ValueError, match="multiscale: meter_xxs has a single output"):
        parse_train_args(["--model", "meter_xxs", "--data.path", "synthetic:default:320", "--multiscale.space", "log"])
    assert not (tmp_path / "run").exists()


def test_teachers_see_the_image_without_colour_augmentation(tmp_path, monkeypatch):
    import seldepth.training.teachers as teachers

    seen = []
    real = teachers.predict_depth
    monkeypatch.setattr(teachers, "predict_depth", lambda model, image, size: seen.append(image) or real(model, image, size=size))
    batch = _batch()
    batch["teacher_image"] = torch.rand(2, 3, 16, 16)
    TrainingTargets(TeacherConfig(depth=str(constant_teacher(tmp_path / "t.safetensors", 2.0))))(batch)
    assert seen[0] is batch["teacher_image"]


def test_training_realtime_depth_on_sparse_ground_truth_with_teachers(tmp_path, monkeypatch):
    """The setting of Chiu et al., ICPR 2020, end to end: sparse GT filled by a depth teacher, semantic labels, four heads."""
    import csv
    import json

    from seldepth.cli import main
    from seldepth.models.loading import load_model

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    teacher = constant_teacher(tmp_path / "teacher.safetensors", 3.0)
    out = tmp_path / "run"
    argv = ["train", "--model", "realtime_depth", "--model_options", "{semantic_classes: 5}", "--data.path",
            "synthetic:default:12", "--data.batch_size", "4", "--data.input_size", "[64,96]", "--data.sparse.enabled",
            "true", "--multiscale.space", "log", "--multiscale.betas", "[0.5,0.5,0.5,0.5]", "--teacher.depth",
            str(teacher), "--teacher.depth_mode", "fill_aligned", "--teacher.semantic", "labels",
            "--trainer.epochs", "1", "--trainer.out_dir", str(out), "--trainer.progress_bar", "false",
            "--trainer.log_every_n_steps", "1"]
    assert main(argv) == 0
    model = load_model(out / "model.safetensors")
    assert model.heads == ("L", "M", "S", "XS") and model.config.semantic_classes == 5
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    logged = {k for r in rows for k, v in r.items() if v}
    assert {f"train/depth_{h}" for h in ("L", "M", "S", "XS")} <= logged
    assert {f"train/sem_{h}" for h in ("L", "M", "S", "XS")} <= logged
    assert json.loads((out / "results.json").read_text())["test"]["metrics"]["rmse"] > 0
