"""The experiment file: merging, checks before any work, and the summary table (the runs themselves: test_demo)."""

import pytest
import yaml
from helpers import REPO

from seldepth.cli import main
from seldepth.experiments.runner import prepare_runs
from seldepth.experiments.spec import deep_merge, read_experiment
from seldepth.experiments.summary import format_summary


def _write(tmp_path, content: dict):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(content))
    return path


def test_deep_merge_merges_nested_keys_and_replaces_the_rest():
    base = {"data": {"path": "a", "input_size": [1, 2]}, "selectivity": {"layers": ["x"], "weight": 1}}
    out = deep_merge(base, {"data": {"path": "b"}, "selectivity": {"layers": ["y", "z"]}})
    assert out == {"data": {"path": "b", "input_size": [1, 2]}, "selectivity": {"layers": ["y", "z"], "weight": 1}}
    assert base["data"]["path"] == "a"  # the base is not modified


def test_the_shipped_grid_parses_and_quick_only_shrinks_data_and_epochs():
    path = REPO / "configs" / "experiments" / "selectivity_meter_xxs.yaml"
    full, quick = read_experiment(path), read_experiment(path, quick=True)
    assert list(full.runs) == list(quick.runs) and "baseline" in full.runs and full.jobs == 2
    assert full.runs["setup1_skip3"]["selectivity"]["layers"] == ["enc_7"]
    assert full.runs["seed001_l100_nb24"]["selectivity"] == {**full.runs["baseline"]["selectivity"], "layers": ["enc_6"],
                                                            "weight": 100, "bins": "sid:24"}
    assert quick.runs["baseline"]["trainer"]["epochs"] < full.runs["baseline"]["trainer"]["epochs"]
    assert quick.runs["ours_enc6_l100_warm"]["selectivity"] == full.runs["ours_enc6_l100_warm"]["selectivity"]
    assert set(full.ablation["runs"]) <= set(full.runs)


def test_the_shipped_realtime_ablation_builds_the_seeds_rows_in_order():
    spec = read_experiment(REPO / "configs" / "experiments" / "realtime_teachers.yaml")
    runs = spec.runs
    assert list(runs)[:5] == ["a_sparse_gt", "b_teacher_origin", "c_teacher_compensated", "d_log_depth", "e_semantic_teacher"]
    assert all(r["data"]["sparse"]["enabled"] for n, r in runs.items() if n != "f_dense_gt")
    assert not runs["f_dense_gt"]["data"]["sparse"]["enabled"] and "teacher" not in runs["a_sparse_gt"]
    assert [runs[n].get("teacher", {}).get("depth_mode") for n in list(runs)[:5]] == [None, "replace", "fill_aligned",
                                                                                       "fill_aligned", "fill_aligned"]
    assert [runs[n]["multiscale"]["space"] for n in list(runs)[:5]] == ["linear", "linear", "linear", "log", "log"]
    assert max(runs["d_log_depth"]["multiscale"]["betas"]) == 0 < min(runs["e_semantic_teacher"]["multiscale"]["betas"])
    assert runs["e_semantic_teacher"]["teacher"]["semantic"] == "labels"


@pytest.mark.parametrize("content, message", [
    ({"runs": {"a": {}}, "jobz": 2}, "unknown keys jobz"),
    ({"runs": {}}, "'runs' must map run names"),
    ({"runs": {"a b": {}}}, "run name 'a b'"),
    ({"runs": {"a": {}}, "ablation": {"runs": ["b"], "layer": "enc_7"}}, "ablation.runs names unknown runs b"),
    ({"runs": {"a": {}}, "jobs": 0}, "jobs must be >= 1"),
    ({"runs": {"a": {}}, "ablation_by_bin": {"runs": ["b"], "layers": ["enc_7"]}}, "ablation_by_bin.runs names unknown runs b"),
    ({"runs": {"a": {}}, "ablation_by_bin": {"runs": ["a"]}}, "ablation_by_bin.layers: the layers to ablate are missing"),
    ({"runs": {"a": {}}, "ablation_by_bin": {"runs": ["a"], "layers": ["enc_7"], "group_by": ["nearest"]}},
     "ablation_by_bin.group_by: expected some of preferred, assigned"),
    ({"runs": {"a": {}}, "ablation_by_bin": {"runs": ["a"], "layers": ["enc_7"], "groups": 1}},
     "ablation_by_bin.groups must be >= 2"),
])
def test_bad_experiment_files_are_named(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        read_experiment(_write(tmp_path, content))


def test_a_bad_run_config_names_the_run_and_key_before_any_training(tmp_path, capsys):
    path = _write(tmp_path, {"base": {"data": {"path": "synthetic:default:320", "input_size": [128, 192]},
                                      "trainer": {"epochs": 1}},
                             "runs": {"good": {}, "bad": {"selectivity": {"layers": ["enc_99"]}}}})
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "run 'bad'" in err and "selectivity.layers: no layer 'enc_99'" in err
    assert not (out / "good" / "checkpoints").exists()  # nothing trained


def test_prepare_runs_writes_each_runs_merged_config(tmp_path):
    spec = read_experiment(_write(tmp_path, {"base": {"data": {"path": "synthetic:default:320"}, "optim": {"lr": 0.01}},
                                             "runs": {"a": {}, "b": {"optim": {"lr": 0.02}}}}))
    folders = prepare_runs(spec, tmp_path / "out")
    b = yaml.safe_load((folders["b"] / "requested.yaml").read_text())
    assert b["optim"]["lr"] == 0.02 and b["trainer"]["out_dir"] == str(tmp_path / "out" / "b")
    assert b["data"]["path"] == "synthetic:default:320"


def test_summary_table_shows_changes_against_the_baseline():
    rows = [
        {"run": "base", "layers": "-", "lambda": None, "bins": None, "rmse": 0.5, "abs_rel": 0.1, "delta1": 0.9,
         "rmse_change_pct": 0.0, "mean_ds": 0.40, "train_seconds": 10.0, "ds_enc_6": 0.30},
        {"run": "reg", "layers": "enc_6", "lambda": 100.0, "bins": "sid:32", "rmse": 0.51, "abs_rel": 0.1, "delta1": 0.9,
         "rmse_change_pct": 2.0, "mean_ds": 0.45, "train_seconds": 11.0, "ds_enc_6": 0.55},
    ]
    lines = format_summary(rows, ["enc_6"], "base").splitlines()
    assert lines[0].startswith("| run | regularised | lambda | bins | RMSE (m)") and "DS enc_6" in lines[0]
    assert "| reg | enc_6 | 100 | sid:32 | 0.5100 |" in lines[3]
    assert "+2.0%" in lines[3] and "0.550 (+0.250)" in lines[3] and "0.450 (+0.050)" in lines[3]
    assert "(+" not in lines[2]  # the baseline row has no deltas


def test_runs_without_regulariser_are_described_by_their_overrides(tmp_path):
    spec = read_experiment(_write(tmp_path, {"base": {"data": {"path": "synthetic:default:320"}},
                                             "runs": {"a": {}, "b": {"teacher": {"depth": "runs/t/m.safetensors",
                                                                                 "depth_mode": "replace"},
                                                                     "optim": {"lr": 0.02}}}}))
    assert spec.settings == {"a": "", "b": "optim.lr=0.02, teacher.depth=m.safetensors, teacher.depth_mode=replace"}
    rows = [
        {"run": "a", "layers": "-", "lambda": None, "bins": None, "rmse": 0.5, "abs_rel": 0.1, "delta1": 0.9,
         "rmse_change_pct": 0.0, "mean_ds": 0.40, "train_seconds": 10.0, "setting": ""},
        {"run": "b", "layers": "-", "lambda": None, "bins": None, "rmse": 0.4, "abs_rel": 0.1, "delta1": 0.9,
         "rmse_change_pct": -20.0, "mean_ds": 0.40, "train_seconds": 10.0, "setting": spec.settings["b"]},
    ]
    lines = format_summary(rows, [], "a").splitlines()
    assert lines[0].startswith("| run | setting | RMSE (m)") and "regularised" not in lines[0]
    assert lines[2].startswith("| a | (base) | 0.5000 |")
    assert lines[3].startswith("| b | optim.lr=0.02, teacher.depth=m.safetensors, teacher.depth_mode=replace | 0.4000 |")
    assert "-20.0%" in lines[3]


def test_a_run_can_start_from_another_runs_model(tmp_path):
    from seldepth.experiments.summary import format_caps

    content = {"base": {"data": {"path": "synthetic:default:320"}}, "caps": [4, 6],
               "runs": {"pre": {"trainer": {"best_by": "val/rmse"}},
                        "fine": {"init_from": "{out}/pre/model.safetensors", "freeze": ["encoder"]}}}
    spec = read_experiment(_write(tmp_path, content))
    assert spec.dependencies("fine") == ["pre"] and spec.dependencies("pre") == [] and spec.caps == (4.0, 6.0)
    folders = prepare_runs(spec, tmp_path / "out")  # checked although pre's model does not exist yet
    requested = yaml.safe_load((folders["fine"] / "requested.yaml").read_text())
    assert requested["init_from"] == str(tmp_path / "out" / "pre" / "model.safetensors")
    bad = dict(content, runs={"a": {"init_from": "{out}/nope/model.safetensors"}})
    with pytest.raises(ValueError, match=r"run 'a': init_from '\{out\}/nope/model.safetensors' must be"):
        read_experiment(_write(tmp_path, bad))
    loop = dict(content, runs={"a": {"init_from": "{out}/b/model.safetensors"}, "b": {"init_from": "{out}/a/model.safetensors"}})
    with pytest.raises(ValueError, match="start from each other's models"):
        read_experiment(_write(tmp_path, loop))
    rows = [{"run": "pre", "rmse@4m": 0.25, "abs_rel@4m": 0.1, "delta1@4m": 0.9, "rmse@6m": 0.5, "abs_rel@6m": 0.2,
             "delta1@6m": 0.8}, {"run": "fine"}]
    lines = format_caps(rows, (4.0, 6.0)).splitlines()
    assert lines[0] == "| run | RMSE <= 4 m | AbsRel <= 4 m | delta1 <= 4 m | RMSE <= 6 m | AbsRel <= 6 m | delta1 <= 6 m |"
    assert lines[2] == "| pre | 0.2500 | 0.1000 | 0.9000 | 0.5000 | 0.2000 | 0.8000 |" and lines[3] == "| fine | - | - | - | - | - | - |"


def test_the_shipped_synergy_grid_compares_the_seeds_rows():
    spec = read_experiment(REPO / "configs" / "experiments" / "synergy_structures.yaml")
    runs = spec.runs
    assert spec.caps == (4.0, 6.0, 8.0) and spec.dependencies("d_fine_tuned") == ["d0_pretrain_semantics"]
    assert {n: r.get("model_options", {}).get("structure") for n, r in runs.items() if r["model"] == "synergy_depth"} == {
        "a_depth_only": "depth_only", "b_synergy_lda": "lateral", "c_synergy_l1": "lateral",
        "d0_pretrain_semantics": "fine_tuned", "d_fine_tuned": "fine_tuned", "e_cascaded": "cascaded",
        "f_merge_in": "merge_in", "g_branch_out": "branch_out"}
    assert [runs[n]["synergy"]["depth"] for n in ("b_synergy_lda", "c_synergy_l1")] == ["attention", "l1"]
    assert runs["d0_pretrain_semantics"]["synergy"]["tasks"] == ["semantics"] and runs["d_fine_tuned"]["synergy"]["tasks"] == ["depth"]
    assert runs["h_meter_xxs"]["model"] == "meter_xxs" and runs["h_meter_xxs"]["synergy"] is None


@pytest.mark.parametrize("name", ["selfsup_synthetic.yaml", "selfsup_snippet_motion.yaml"])
def test_the_shipped_selfsup_comparisons_check_and_give_every_run_the_same_time(tmp_path, name):
    spec = read_experiment(REPO / "configs" / "experiments" / name)
    folders = prepare_runs(spec, tmp_path)  # each run's config through the training parser
    assert set(folders) == set(spec.runs) and "supervised" in spec.runs
    assert len({r["trainer"]["max_minutes"] for r in spec.runs.values()}) == 1  # "trained for the same time"
    selfsup = {n: r["selfsup"] for n, r in spec.runs.items() if "selfsup" in r}
    assert selfsup and all(s["stride"] == 2 for s in selfsup.values())
    if name == "selfsup_snippet_motion.yaml":
        assert selfsup["selfsup_snippet_motion"]["snippet_motion_lr"] == 0.003


def test_by_bin_outputs_group_by_assigned_only_the_regularised_layers(tmp_path):
    from seldepth.experiments.spec import ByBinSpec

    spec = ByBinSpec(runs=["a"], layers=["enc_6", "enc_7"], group_by=("preferred", "assigned"))
    run = tmp_path / "a"
    run.mkdir()
    names = [p.name for p in spec.outputs(run)]
    assert names == ["enc_6-preferred", "enc_7-preferred"]  # no assignment file: an unregularised run
    (run / "selectivity_assignment.json").write_text('{"enc_6": {"num_bins": 2, "bins_spec": "sid:2", "assigned": [0, 1]}}')
    assert [p.name for p in spec.outputs(run)] == ["enc_6-preferred", "enc_6-assigned", "enc_7-preferred"]
    assert all(p.parent == run / "ablate_by_bin" for p in spec.outputs(run))


def test_the_shipped_network_grid_pairs_every_setting_with_a_second_seed():
    spec = read_experiment(REPO / "configs/experiments/selectivity_network.yaml")
    runs = spec.runs
    seeds = {name: cfg["trainer"]["seed"] for name, cfg in runs.items()}
    sweep = [name for name in runs if name.startswith("all16_perlayer_w")]  # the lambda sweep: seed 0 only
    assert len(sweep) >= 2
    for name in sweep:
        setting = dict(runs[name]["selectivity"])
        assert seeds[name] == 0 and setting.pop("weight") != runs["all16_perlayer"]["selectivity"]["weight"]
        assert setting == {k: v for k, v in runs["all16_perlayer"]["selectivity"].items() if k != "weight"}
    for name in runs:
        if not name.endswith("_seed1") and name not in sweep:
            twin = "baseline_seed1" if name == "baseline" else f"{name}_seed1"
            assert twin in runs and seeds[twin] == 1 and seeds[name] == 0
            assert runs[twin]["selectivity"] == runs[name]["selectivity"]
    per_layer = runs["all16_perlayer"]["selectivity"]
    assert len(per_layer["layers"]) == 16 and set(per_layer["bins"]) == set(per_layer["layers"])
    assert per_layer["weight"] == 100 * 16 and per_layer["layer_weighting"] == "mean"
    assert set(spec.by_bin.runs) <= set(runs) and spec.by_bin.layers
