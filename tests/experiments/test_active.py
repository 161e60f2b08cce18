"""Active learning: uncertainty by MC dropout and ensembles, the chosen list, and training on it."""

import pytest
import torch

from seldepth.experiments.uncertainty import (
    mc_dropout,
    relative_spread,
    uncertainty_scores,
    write_selection,
)
from seldepth.data.subsets import read_selection
from seldepth.models import create_model
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing


class _Images(torch.utils.data.Dataset):
    def __init__(self, n=6):
        torch.manual_seed(0)
        self.images = torch.rand(n, 3, 64, 64)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "depth": torch.ones(1, 64, 64), "valid": torch.ones(1, 64, 64, dtype=torch.bool),
                "K": torch.eye(3), "meta": {"rgb": f"img{i}.png"}}


def _model(seed=0):
    torch.manual_seed(seed)
    model = create_model("meter_xxs").eval()
    model.preprocessing = Preprocessing((64, 64))
    return model


def test_relative_spread_by_hand():
    preds = torch.tensor([[1.0, 2.0], [3.0, 2.0]]).view(2, 1, 1, 1, 2)  # two passes, one image of two pixels
    # pixel 1: mean 2, std 1 -> 0.5; pixel 2: no spread -> 0
    torch.testing.assert_close(relative_spread(preds), torch.tensor([0.25]))
    torch.testing.assert_close(relative_spread(preds, torch.tensor([[[[True, False]]]])), torch.tensor([0.5]))


def test_mc_dropout_perturbs_the_decoder_only_inside_the_block():
    model, x = _model(), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with mc_dropout(model, 0.5):
            a, b = model(x), model(x)
        assert not torch.equal(a, b) and not torch.equal(a, ref)
        torch.testing.assert_close(model(x), ref)  # hooks removed
    with pytest.raises(ValueError, match="unknown layers decoder.up9"):
        with mc_dropout(model, 0.2, ["decoder.up9"]):
            pass


def test_scores_rank_and_the_chosen_list_round_trips(tmp_path):
    pool = _Images()
    scores = uncertainty_scores([_model()], pool, "mc-dropout", passes=4, progress=False)
    assert scores.shape == (6,) and (scores > 0).all()
    again = uncertainty_scores([_model()], pool, "mc-dropout", passes=4, progress=False)
    torch.testing.assert_close(scores, again)  # seeded
    ensemble = uncertainty_scores([_model(0), _model(1)], pool, "ensemble", progress=False)
    assert (ensemble > 0).all()
    random = uncertainty_scores([_model()], pool, "random", seed=3)
    torch.testing.assert_close(random, torch.rand(6, generator=torch.Generator().manual_seed(3)))
    chosen = write_selection(torch.tensor([0.1, 0.9, 0.5, 0.7, 0.2, 0.8]), pool, 2, tmp_path / "c.txt", exclude={1})
    assert chosen == [5, 3]  # the two most uncertain, index 1 already labelled
    assert (tmp_path / "c.txt").read_text() == "5\timg5.png\n3\timg3.png\n"
    assert read_selection(tmp_path / "c.txt", 6) == [5, 3]
    assert (tmp_path / "scores.csv").read_text().splitlines()[1] == "0,5,img5.png,0.8,1"
    with pytest.raises(ValueError, match="ensemble needs at least 2 models"):
        uncertainty_scores([_model()], pool, "ensemble")
    with pytest.raises(ValueError, match="budget 6 is more than the 5 images left"):
        write_selection(torch.rand(6), pool, 6, tmp_path / "d.txt", exclude={0})
    (tmp_path / "bad.txt").write_text("3\ta.png\n9\tb.png\n")
    with pytest.raises(ValueError, match=r"bad.txt, line 2: index 9 is beyond the split's 6 images"):
        read_selection(tmp_path / "bad.txt", 6)


def test_seldepth_select_and_training_on_the_chosen_images(tmp_path, monkeypatch, capsys):
    from seldepth.cli import main
    from seldepth.data.datamodule import DataConfig, DepthDataModule

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    path = save_model_file(_model(), tmp_path / "m.safetensors", Preprocessing((64, 64)))
    (tmp_path / "have.txt").write_text("0\n1\n")
    out = tmp_path / "sel" / "chosen.txt"
    assert main(["select", "--model", str(path), "--pool", "synthetic:default:12", "--budget", "3", "--passes", "3",
                 "--exclude", str(tmp_path / "have.txt"), "--out", str(out)]) == 0
    assert "chose 3 of 8 unlabelled images by mc-dropout" in capsys.readouterr().out  # 10 training scenes, 2 labelled
    chosen = read_selection(out)
    assert len(chosen) == 3 and not set(chosen) & {0, 1}
    module = DepthDataModule(DataConfig(path="synthetic:default:12", input_size=(64, 64), train_subset=str(out)))
    module.setup()
    assert [s["meta"]["index"] for s in (module.train_set.dataset[i] for i in range(3))] == chosen
    assert main(["select", "--model", str(path), "--pool", "synthetic:default:12", "--budget", "30", "--out", str(out)]) == 2
    assert "--budget 30 is more than the 10 unlabelled images" in capsys.readouterr().err


def test_active_rounds_table_by_hand_and_config_errors(tmp_path):
    import yaml

    from seldepth.experiments.active import plot_active, read_active, summary_table

    rec = lambda r, n, rmse: {"round": r, "labelled": n, "rmse": rmse, "abs_rel": 0.1, "delta1": 0.9, "train_seconds": 1}
    summary = {"spec": {"seeds": [0, 1]}, "chains": [
        {"seed": 0, "method": "initial", "rounds": [rec(0, 10, 1.0)]},
        {"seed": 1, "method": "initial", "rounds": [rec(0, 10, 2.0)]},
        {"seed": 0, "method": "random", "rounds": [rec(1, 20, 0.9)]},
        {"seed": 1, "method": "random", "rounds": [rec(1, 20, 1.1)]},
        {"seed": 0, "method": "mc-dropout", "rounds": [rec(1, 20, 0.5)]},
        {"seed": 1, "method": "mc-dropout", "rounds": [rec(1, 20, 0.7)]}]}
    lines = summary_table(summary).splitlines()
    assert lines[0] == ("| round | labelled images | RMSE mc-dropout (mean +- std) | RMSE random (mean +- std) | "
                        "mc-dropout per seed | random per seed |")
    assert lines[2] == "| 0 | 10 | 1.5000 +- 0.5000 | 1.5000 +- 0.5000 | 1.0000 / 2.0000 | 1.0000 / 2.0000 |"
    assert lines[3] == "| 1 | 20 | 0.6000 +- 0.1000 | 1.0000 +- 0.1000 | 0.5000 / 0.7000 | 0.9000 / 1.1000 |"
    plot_active(summary, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 10_000
    path = tmp_path / "active.yaml"
    for content, message in (({"methods": ["ensemble"]}, "methods must be mc-dropout and/or random"),
                             ({"budget": 0}, "budget must be a whole number >= 1"),
                             ({"select": {"passes": 2, "p": 0.1}}, "select takes passes and dropout, got p"),
                             ({"base": {"optim": {"lr": -1}}}, "base: optim.lr must be a finite number > 0"),
                             ({"roundz": 2}, "unknown keys roundz")):
        path.write_text(yaml.safe_dump(content))
        with pytest.raises(ValueError, match=message):
            read_active(path)
