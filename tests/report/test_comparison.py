"""seldepth report's comparisons: the settings that differ between runs, and when a best value is marked."""

import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import yaml

from seldepth.report.comparison import ABSENT, RELATIVE_MARGIN, clear_best, differing_settings, standard_error
from seldepth.report.html import load_runs, metrics_table, settings_table


def _config(out_dir: str, **changes) -> dict:
    cfg = {"model": "meter_xxs", "protocol": "nyu",
           "data": {"path": "nyu:splits", "input_size": [64, 96], "train_subset": f"{out_dir}/labelled.txt"},
           "optim": {"lr": 0.001, "weight_decay": 0.01},
           "selectivity": {"layers": [], "weight": 0.1, "bins": "sid:32"},
           "trainer": {"out_dir": out_dir, "epochs": 2, "seed": 0}}
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = cfg
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def test_differing_settings_lists_exactly_the_keys_that_differ():
    configs = [_config("runs/exp/a"),
               _config("runs/exp/b", optim__lr=0.0001, selectivity__layers=["enc_7"]),
               _config("runs/exp/c", trainer__epochs=2.0, init_from="runs/exp/a/model.safetensors")]
    diff = differing_settings(configs)
    # trainer.out_dir and data.train_subset (RUN/labelled.txt in each) differ only by the run's own folder;
    # 2 and 2.0 epochs are the same setting; init_from is absent from two runs
    assert diff.keys == ["optim.lr", "selectivity.layers", "init_from"]
    assert diff.values["optim.lr"] == [0.001, 0.0001, 0.001]
    assert diff.values["selectivity.layers"] == [[], ["enc_7"], []]
    assert diff.values["init_from"] == [ABSENT, ABSENT, "runs/exp/a/model.safetensors"]
    assert list(diff.ignored) == ["data.train_subset", "trainer.out_dir"]
    assert "RUN/labelled.txt" in diff.ignored["data.train_subset"]


def test_a_path_that_differs_below_the_run_folder_is_a_difference():
    configs = [_config("runs/exp/a"), _config("runs/exp/b", data__train_subset="runs/exp/b/round2.txt")]
    diff = differing_settings(configs)
    assert diff.keys == ["data.train_subset"] and list(diff.ignored) == ["trainer.out_dir"]
    assert differing_settings([_config("runs/a"), _config("runs/a")]).keys == []


def _run(root: Path, name: str, config: dict | None = None, test: dict | None = None, per_image: dict | None = None,
         val_rmse: float = 2.0) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config or _config(str(folder))))
    test = {"rmse": 1.0, "abs_rel": 0.1, "delta1": 0.9, **(test or {})}
    block = {"metrics": test, "num_images": 3, "protocol": {"name": "nyu"}}
    if per_image is not None:
        block["per_image"] = per_image
    val = {"metrics": {"rmse": val_rmse, "abs_rel": 0.2, "delta1": 0.8}, "num_images": 3, "protocol": {"name": "nyu"}}
    (folder / "results.json").write_text(json.dumps({"epochs": 2, "train_seconds": 5.0, "test": block, "val": val}))
    return folder


def test_settings_table_has_one_row_per_run_and_one_column_per_differing_key(tmp_path):
    runs = load_runs([_run(tmp_path, "a"), _run(tmp_path, "b", _config(str(tmp_path / "b"), selectivity__weight=1.0,
                                                                       selectivity__layers=["enc_7"]))])
    html = settings_table(runs)
    head = re.search(r"<thead>(.*?)</thead>", html, re.DOTALL).group(1)
    assert re.findall(r"<code>(.*?)</code>", head) == ["selectivity.layers", "selectivity.weight"]
    assert "regularised layers<br>" in head and "selectivity weight \u03bb<br>" in head  # words, then the dotted path
    rows = re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>")[1], re.DOTALL)
    assert len(rows) == 2 and ">none<" in rows[0] and ">0.1<" in rows[0] and ">enc_7<" in rows[1] and ">1.0<" in rows[1]
    assert "Not compared: trainer.out_dir" in html and "left out here: data.train_subset" in html
    assert "One run" in settings_table(runs[:1]) and "<table" not in settings_table(runs[:1])
    same = load_runs([_run(tmp_path, "c"), _run(tmp_path, "d")])
    assert "configs (config.yaml) are the same" in settings_table(same) and "<table" not in settings_table(same)


def _best_cells(html: str) -> dict[int, list[int]]:
    """{column index: rows (0-based) whose cell is marked best} of the metrics table."""
    rows = re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>")[1], re.DOTALL)
    marked: dict[int, list[int]] = {}
    for r, row in enumerate(rows):
        for c, attrs in enumerate(re.findall(r"<td([^>]*)>", row)):
            if 'class="best"' in attrs:
                marked.setdefault(c, []).append(r)
    return marked


RMSE, ABS_REL, DELTA1, VAL_RMSE = 6, 7, 8, 9  # columns of the metrics table


def test_best_is_marked_only_where_the_gap_exceeds_the_margin_without_per_image_values(tmp_path):
    tiny = 1.0 * (1 + RELATIVE_MARGIN / 2)  # half the margin behind
    runs = load_runs([_run(tmp_path, "a", test={"rmse": 1.0, "abs_rel": 0.10, "delta1": 0.90}, val_rmse=2.0),
                      _run(tmp_path, "b", test={"rmse": tiny, "abs_rel": 0.20, "delta1": 0.50}, val_rmse=2.0),
                      _run(tmp_path, "c", test={"rmse": 1.5, "abs_rel": 0.30, "delta1": 0.40}, val_rmse=1.0)])
    html = metrics_table(runs)
    # RMSE: a beats b by 0.5 % only (no mark); AbsRel and delta1 (higher is better): a by far; val RMSE: c by far
    assert _best_cells(html) == {ABS_REL: [0], DELTA1: [0], VAL_RMSE: [2]}
    note = unescape(html.split('<p class="info">')[1])
    assert "more than 1% of the second best's value" in note and "only the means" in note
    assert "standard error" not in note


def test_a_tie_marks_no_run(tmp_path):
    runs = load_runs([_run(tmp_path, "a"), _run(tmp_path, "b")])
    assert _best_cells(metrics_table(runs)) == {}


def test_best_is_marked_only_where_the_gap_exceeds_one_standard_error_of_the_per_image_differences(tmp_path):
    a = [0.5, 1.0, 1.5]
    steady = [v + 0.005 for v in a]  # 0.5 % worse on every image: within the 1 % margin, but far beyond the spread
    noisy = [0.9, 0.6, 1.8]  # 10 % worse on average, but image by image the runs change places
    runs = load_runs([_run(tmp_path, "a", test={"rmse": 1.0, "abs_rel": 0.1}, per_image={"rmse": a, "abs_rel": a}),
                      _run(tmp_path, "b", test={"rmse": 1.005, "abs_rel": 0.11},
                           per_image={"rmse": steady, "abs_rel": [0.1, 0.2, None]})])
    html = metrics_table(runs)
    assert _best_cells(html)[RMSE] == [0]
    runs = load_runs([_run(tmp_path, "c", test={"rmse": 1.0}, per_image={"rmse": a}),
                      _run(tmp_path, "d", test={"rmse": 1.1}, per_image={"rmse": noisy})])
    html = metrics_table(runs)
    assert RMSE not in _best_cells(html)
    note = unescape(html.split('<p class="info">')[1])
    assert "more than one standard error of the per-image differences" in note
    assert "where results.json holds only means" in note  # AbsRel, delta1 and val RMSE have no per-image values


def test_clear_best_and_standard_error():
    assert clear_best([1.0], higher_is_better=False).index is None
    assert clear_best([None, 1.0, float("nan")], higher_is_better=False).rule is None
    best = clear_best([0.8, 0.9], higher_is_better=True)
    assert best.index == 1 and best.rule == "margin" and best.spread == pytest.approx(0.008)
    # paired: the differences are all 0.1 -> no spread; unpaired (other lengths): the two samples' spread
    assert standard_error(np.array([1.0, 2.0, 3.0]), np.array([1.1, 2.1, 3.1])) == pytest.approx(0.0, abs=1e-12)
    assert standard_error(np.array([1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx((0.5 / 2 + 1.0 / 3) ** 0.5)
    best = clear_best([1.0, 1.1], False, [[1.0, 2.0, 0.0], [1.1, 2.1, 0.1, 1.2]])
    assert best.rule == "per-image" and best.index is None  # 0.1 apart, unpaired standard error ~0.63
    assert clear_best([1.0, 1.1], False, [[1.0, 1.0, 1.0], None]).rule == "margin"  # one run without per-image values
