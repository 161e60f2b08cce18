"""The experiment file's ``pruning:`` section: its checks, the shipped grid, the comparison of criteria, and a tiny
experiment run end to end (pruned, fine-tuned, timed, summarised; a second call does nothing)."""

import json

import pytest
import yaml
from helpers import REPO

from seldepth.experiments.pruning import compare_criteria, meets_targets
from seldepth.experiments.spec import read_experiment

TINY = {"base": {"model": "meter_xxs", "data": {"path": "synthetic:default:12", "input_size": [64, 128], "batch_size": 4},
                 "trainer": {"epochs": 1, "progress_bar": False, "log_every_n_steps": 1}},
        "runs": {"a": {}},
        "dissect": {"bins": "sid:8", "layers": ["enc_7"]}, "jobs": 2,
        "pruning": {"sources": ["a"], "criteria": ["ds", "l1"], "fractions": [0.6], "finetune_epochs": 1, "bins": "sid:8",
                    "min_keep": 0.125, "min_channels": 4, "latency_runs": 3}}


def _write(tmp_path, content: dict):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_the_shipped_pruning_grid_prunes_both_seeds_of_both_models_by_every_criterion():
    path = REPO / "configs/experiments/pruning_meter_xxs.yaml"
    spec, quick = read_experiment(path), read_experiment(path, quick=True)
    p = spec.pruning
    assert set(p.sources) == {"baseline", "baseline_seed1", "regularised", "regularised_seed1"}
    assert {spec.runs[s]["trainer"]["seed"] for s in p.sources} == {0, 1}
    assert spec.runs["regularised"]["selectivity"]["layers"] and not spec.runs["baseline"].get("selectivity", {}).get("layers")
    assert set(p.criteria) == {"ds", "ds-inverse", "l1", "random"} and sorted(p.fractions) == [0.4, 0.6, 0.8]
    assert len(p.jobs()) == 4 * 4 * 3 and "regularised_seed1-ds-040" in p.jobs()
    assert p.jobs()["baseline-l1-080"] == ("baseline", "l1", 0.8)
    assert quick.pruning.finetune_epochs == 1 and quick.pruning.latency_runs <= 20 and quick.pruning.fractions == p.fractions


@pytest.mark.parametrize(("pruning", "message"), [
    ({"sources": ["nope"]}, "pruning.sources names unknown runs nope"),
    ({"sources": ["a"], "criteria": ["l2"]}, "pruning.criteria: expected some of ds, ds-inverse, l1, random"),
    ({"sources": ["a"], "fractions": [1.0]}, r"pruning.fractions: expected FLOPs fractions in \(0, 1\)"),
    ({"sources": ["a"], "fractions": [0.601, 0.6]}, "round to the same hundredth"),
    ({"sources": ["a"], "finetune_epochs": 0}, "pruning.finetune_epochs must be >= 1"),
    ({"sources": ["a"], "bins": "sid:x"}, "pruning.bins"),
    ({"sources": ["a"], "epochs": 2}, "pruning takes"),
])
def test_bad_pruning_sections_are_named(tmp_path, pruning, message):
    with pytest.raises(ValueError, match=message):
        read_experiment(_write(tmp_path, {**TINY, "pruning": pruning}))


def test_a_pruned_model_may_not_take_a_runs_name(tmp_path):
    content = {**TINY, "runs": {"a": {}, "a-l1-060": {}}, "pruning": {"sources": ["a"], "criteria": ["l1"], "fractions": [0.6]}}
    with pytest.raises(ValueError, match="pruned model 'a-l1-060' has the name of a run"):
        read_experiment(_write(tmp_path, content))


def test_criteria_are_compared_at_equal_flops_by_hand():
    rows = [{"source": "s", "flops_fraction": 0.6, "criterion": c, "rmse": r}
            for c, r in (("ds", 0.50), ("l1", 0.52), ("random", 0.49), ("ds-inverse", 0.55))]
    rows += [{"source": "s", "flops_fraction": 0.8, "criterion": c, "rmse": r} for c, r in (("ds", 0.40), ("l1", 0.41))]
    out = compare_criteria(rows)
    assert out[0] == {"source": "s", "flops_fraction": 0.6, "ranking": ["random", "ds", "l1", "ds-inverse"],
                      "ds_beats": {"l1": True, "random": False}}
    assert out[1]["ds_beats"] == {"l1": True}  # no random model at 0.8: not compared
    row = {"achieved_flops_fraction": 0.69, "latency_ratio": 0.79, "rmse_change_pct": 1.9}
    assert meets_targets(row)
    assert not meets_targets({**row, "achieved_flops_fraction": 0.71})
    assert not meets_targets({**row, "latency_ratio": 0.81}) and not meets_targets({**row, "rmse_change_pct": 2.1})
    assert not meets_targets({k: v for k, v in row.items() if k != "latency_ratio"})  # not timed: not met


def test_a_tiny_pruning_experiment_prunes_fine_tunes_times_and_summarises(tmp_path, monkeypatch, capsys):
    from seldepth.experiments.runner import run_experiment
    from seldepth.models.model_file import read_model_file
    from seldepth.training.run_folder import RunFolder

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    summary = run_experiment(_write(tmp_path, TINY), out)
    rows = {r["run"]: r for r in summary["pruning"]["rows"]}
    assert set(rows) == {"a-ds-060", "a-l1-060"}
    source = read_model_file(RunFolder(out / "a").model_file_path)
    for name, row in rows.items():
        run = RunFolder(out / "pruned" / name)
        assert run.is_done and (run.path / "pruned.safetensors").is_file()
        tuned = read_model_file(run.model_file_path)
        pruning = tuned.metadata["provenance"]["pruning"]
        assert pruning["criterion"] == row["criterion"] and pruning["fine_tuned_epochs"] == 1
        assert tuned.flops(64, 128) / source.flops(64, 128) == pytest.approx(row["achieved_flops_fraction"])
        assert row["achieved_flops_fraction"] == pytest.approx(0.6, rel=0.05) and row["achieved_flops_fraction"] <= 0.6
        assert all(w % 8 == 0 for w in tuned.config_dict()["mv2_widths"] or [])  # round_to 8 by default
        results = json.loads(run.results_path.read_text())
        assert row["rmse"] == results["test"]["metrics"]["rmse"]
        base = json.loads(RunFolder(out / "a").results_path.read_text())["test"]["metrics"]["rmse"]
        assert row["rmse_change_pct"] == pytest.approx(100 * (row["rmse"] / base - 1))
        assert row["latency_ratio"] == pytest.approx(row["latency_p50_ms"] / row["source_latency_p50_ms"])
    assert rows["a-ds-060"]["dissected_split"] == "val" and rows["a-l1-060"]["dissected_split"] is None
    latency = json.loads((out / "pruned" / "latency.json").read_text())
    assert set(latency["a"]["models"]) == {"a", "a-ds-060", "a-l1-060"} and latency["a"]["runs"] == 3
    md = (out / "pruning.md").read_text()
    assert "| a-ds-060 | a | 0 | ds |" in md and "| a | 0.6 |" in md
    assert (out / "pruning_flops.png").stat().st_size > 0 and (out / "pruning_latency.png").stat().st_size > 0
    from seldepth.report.html import write_report

    page = write_report([out], tmp_path / "report.html", samples=0, progress=False).read_text()
    pruning = page[page.index('id="pruning"'):]
    assert pruning.count("<img") == 2 and "a-ds-060" in pruning and "No pruning" not in pruning
    capsys.readouterr()
    again = run_experiment(_write(tmp_path, TINY), out)  # nothing left: no training, no pruning, no timing
    printed = capsys.readouterr().out
    assert "[a-ds-060] already done, skipped" in printed and "timing" not in printed
    assert again["pruning"]["rows"] == summary["pruning"]["rows"]
