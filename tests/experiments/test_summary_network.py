import math

from seldepth.experiments.summary import format_network, same_seed_changes, tuned_units


def _layer(kinds, ds):
    return {"mean_ds": sum(d for d in ds if not math.isnan(d)) / len(ds), "ds": ds, "tuning": {"kind": kinds}}


def test_tuned_units_share_and_mean_ds_of_tuned_units():
    dissection = {"layers": {
        "a": _layer(["tuned", "ramp", "tuned", "flat"], [0.5, 0.9, 0.3, 0.0]),
        "b": _layer(["ramp", "flat"], [0.8, 0.1]),            # no tuned unit: left out of the mean
        "c": _layer(["tuned", "tuned"], [0.6, math.nan]),     # undefined DS left out
    }}
    out = tuned_units(dissection)
    assert out["tuned_a"] == 2 and out["tuned_b"] == 0 and out["tuned_c"] == 2
    assert out["tuned_share"] == 4 / 8
    assert math.isclose(out["mean_ds_tuned"], (0.4 + 0.6) / 2)


def test_tuned_units_empty_without_tuning():
    assert tuned_units({"layers": {"a": {"mean_ds": 0.2, "ds": [0.2]}}}) == {}


def _row(run, layers, seed, rmse, mean_ds, ds, tuned_share=None):
    row = {"run": run, "layers": layers, "seed": seed, "rmse": rmse, "mean_ds": mean_ds, "tuned_share": tuned_share}
    row.update({f"ds_{k}": v for k, v in ds.items()})
    return row


def test_changes_are_against_the_baseline_of_the_same_seed():
    rows = [_row("base0", "-", 0, 1.00, 0.30, {"x": 0.3, "y": 0.3, "z": 0.3}, 0.5),
            _row("base1", "-", 1, 2.00, 0.40, {"x": 0.4, "y": 0.4, "z": 0.4}, 0.6),
            _row("reg0", "x+y", 0, 1.01, 0.45, {"x": 0.5, "y": 0.35, "z": 0.2}, 0.4),
            _row("reg1", "x+y", 1, 1.96, 0.41, {"x": 0.5, "y": 0.4, "z": 0.33}, 0.7),
            _row("orphan", "x", 7, 1.0, 0.5, {"x": 0.5})]
    same_seed_changes(rows)
    reg0, reg1 = rows[2], rows[3]
    assert reg0["baseline"] == "base0" and reg1["baseline"] == "base1"
    assert math.isclose(reg0["mean_ds_change"], 0.15) and math.isclose(reg1["mean_ds_change"], 0.01)
    assert math.isclose(reg0["rmse_change_vs_baseline_pct"], 1.0) and math.isclose(reg1["rmse_change_vs_baseline_pct"], -2.0)
    assert (reg0["layers_more_selective"], reg0["layers_dissected"]) == (2, 3)
    assert reg1["layers_more_selective"] == 1  # y equal is not more selective
    assert math.isclose(reg0["tuned_share_change"], -0.1)
    assert "baseline" not in rows[0] and "baseline" not in rows[4]
    table = format_network(rows).splitlines()
    assert len(table) == 4  # head, rule, two regularised runs
    assert "| reg0 | 0 | base0 | 0.450 (+0.150) | +1.0% | 2 / 3 | 40% (-10 pts) | - |" == table[2]


def test_by_bin_rows_read_each_ablation_of_a_run(tmp_path):
    import json

    from seldepth.experiments.summary import by_bin_rows, format_by_bin

    def doc(units, near, contrast):
        control = {"near_diagonal_mean": 0.3, "near_diagonal_std": 0.1, "contrast_std": 0.05}
        dominance = {"rows": 3, "near_diagonal": near, "chance": 0.4, "contrast": contrast, "control": control}
        return {"layer": "enc_6", "grouping": "preferred", "units": units, "units_per_group": [2, 0, 3, 1],
                "num_units": 8, "dominance": {"rmse": dominance, "abs_rel": dict(dominance, contrast=contrast / 10)}}

    run = tmp_path / "baseline"
    for name, content in (("enc_6-preferred", doc("all", 2 / 3, 0.25)), ("enc_6-preferred-tuned", doc("tuned", 1.0, 0.5))):
        (run / "ablate_by_bin" / name).mkdir(parents=True)
        (run / "ablate_by_bin" / name / "by_bin.json").write_text(json.dumps(content))
    rows = by_bin_rows({"baseline": run})
    assert [r["units"] for r in rows] == ["all", "tuned"]  # folder name order
    assert rows[0]["grouped_units"] == 6 and rows[0]["rmse_near_diagonal"] == 2 / 3
    table = format_by_bin(rows).splitlines()
    assert table[2] == ("| baseline | enc_6 | preferred | 6 / 8 | 3 | 0.67 (0.40; 0.30 ± 0.10) | +0.250 (0.050) | "
                        "0.67 (0.40; 0.30 ± 0.10) | +0.0250 (0.0500) |")
    assert "6 / 8 tuned" in table[3]
