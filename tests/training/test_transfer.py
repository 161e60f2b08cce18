"""Transfer learning: init_from (a model file's weights), freeze (parts left unchanged) and per-part learning rates."""

import pytest
import torch

from seldepth.models import create_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.training import DepthTrainingModule
from seldepth.training.transfer import freeze, init_from_file, parameter_groups, source_preprocessing


def _saved(tmp_path, name="meter_xxs", seed=1, preprocessing=Preprocessing(), **options):
    torch.manual_seed(seed)
    model = create_model(name, **options)
    path = save_model_file(model, tmp_path / f"{name}_{seed}.safetensors", preprocessing)
    return model, path


def test_init_from_copies_every_tensor_and_init_skip_keeps_fresh_parts(tmp_path):
    source, path = _saved(tmp_path, "synergy_depth", semantic_classes=3)
    torch.manual_seed(2)
    model = create_model("synergy_depth", semantic_classes=5)  # another class count: a new semantic head
    fresh = model.semantic_head.weight.detach().clone()
    with pytest.raises(ValueError, match=r"other shapes \(2\): semantic_head.weight: file \(3, 8, 3, 3\) vs model \(5, 8, 3, 3\).*init_skip"):
        init_from_file(model, path)
    taken = init_from_file(model, path, skip=("semantic_head",))
    assert not any(n.startswith("semantic_head") for n in taken)
    for name, value in source.state_dict().items():
        if not name.startswith("semantic_head"):
            torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    torch.testing.assert_close(model.semantic_head.weight, fresh, rtol=0, atol=0)


def test_init_from_errors_name_the_file_and_tensors(tmp_path):
    _, path = _saved(tmp_path, "meter_xxs")
    with pytest.raises(ValueError, match=r"init_from: .*meter_xxs_1.safetensors does not fit synergy_depth: missing from the file"):
        init_from_file(create_model("synergy_depth"), path)
    with pytest.raises(ValueError, match="init_skip names decoderr, which match no tensor"):
        init_from_file(create_model("meter_xxs"), path, skip=("decoderr",))
    with pytest.raises(FileNotFoundError, match="init_from: model file not found"):
        init_from_file(create_model("meter_xxs"), tmp_path / "none.safetensors")


def test_a_run_started_from_a_file_keeps_its_normalisation(tmp_path):
    kitti_like = Preprocessing((192, 640), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")
    _, path = _saved(tmp_path, preprocessing=kitti_like)
    p = source_preprocessing(path, (128, 192))
    assert p == Preprocessing((128, 192), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "bilinear")


def test_frozen_parts_do_not_change_in_training_buffers_included():
    torch.manual_seed(0)
    module = DepthTrainingModule("meter_xxs", Preprocessing(input_size=(64, 64)).to_dict(), loss={}, optim={},
                                 freeze=["encoder"])
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    opt = module.configure_optimizers()["optimizer"]
    module.model.train()
    module.on_train_epoch_start()
    d = torch.rand(2, 1, 64, 64) * 4 + 0.5
    batch = {"image": torch.rand(2, 3, 64, 64), "depth": d, "valid": torch.ones_like(d, dtype=torch.bool)}
    for _ in range(2):
        opt.zero_grad()
        module.training_step(batch, 0).backward()
        opt.step()
    after = module.model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("decoder") for k in changed)  # running BN statistics of the encoder too
    assert any("running_mean" in k for k in before if k.startswith("encoder"))
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(
        p.numel() for n, p in module.model.named_parameters() if n.startswith("decoder"))


def test_part_learning_rates_and_their_errors():
    model = create_model("meter_xxs")
    groups = parameter_groups(model, 1e-3, {"encoder": 1e-4, "encoder.head": 5e-4})
    by_name = {g["name"]: g for g in groups}
    assert {k: g["lr"] for k, g in by_name.items()} == {"encoder": 1e-4, "encoder.head": 5e-4, "rest": 1e-3}
    head = {id(p) for p in model.encoder.head.parameters()}
    assert {id(p) for p in by_name["encoder.head"]["params"]} == head  # the more specific prefix wins
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert [set(g) for g in parameter_groups(model, 1e-3, {})] == [{"params", "lr"}]
    with pytest.raises(ValueError, match="optim.part_lr: encodr name no parameters of meter_xxs; its top-level parts are decoder, encoder"):
        parameter_groups(model, 1e-3, {"encodr": 1e-4})
    with pytest.raises(ValueError, match="freeze: every parameter is frozen"):
        freeze(model, ["encoder", "decoder"])
        parameter_groups(model, 1e-3, {})


def test_train_config_checks_transfer_keys_before_work(tmp_path):
    from seldepth.training.config import parse_train_args

    _, path = _saved(tmp_path)
    base = ["--data.path", "synthetic:default:12", "--trainer.out_dir", str(tmp_path / "run")]
    cfg, _ = parse_train_args(base + ["--init_from", str(path), "--freeze", "[encoder]", "--optim.part_lr", "{decoder: 1e-4}"])
    assert cfg.init_from == str(path) and cfg.freeze == ["encoder"] and cfg.optim.part_lr == {"decoder": 1e-4}
    with pytest.raises(ValueError, match="freeze: encoderr name no parameters"):
        parse_train_args(base + ["--freeze", "[encoderr]"])
    with pytest.raises(ValueError, match="init_skip: names parts to leave out of init_from"):
        parse_train_args(base + ["--init_skip", "[decoder]"])
    with pytest.raises(FileNotFoundError, match="init_from: model file not found"):
        parse_train_args(base + ["--init_from", str(tmp_path / "missing.safetensors")])


def test_seldepth_train_from_a_file_with_a_frozen_encoder(tmp_path, monkeypatch):
    """End to end: the trained model's encoder is the file's, bit for bit; its decoder has moved."""
    from safetensors.torch import load_file

    from seldepth.cli import main

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    _, path = _saved(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--model", "meter_xxs", "--data.path", "synthetic:default:12", "--data.batch_size", "4",
                 "--data.input_size", "[64,64]", "--trainer.epochs", "1", "--trainer.out_dir", str(out),
                 "--trainer.progress_bar", "false", "--init_from", str(path), "--freeze", "[encoder]",
                 "--optim.part_lr", "{decoder.output: 0.01}"]) == 0
    start, trained = load_file(str(path)), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(trained[k], v) for k, v in start.items() if k.startswith("encoder"))
    assert not all(torch.equal(trained[k], v) for k, v in start.items() if k.startswith("decoder"))
