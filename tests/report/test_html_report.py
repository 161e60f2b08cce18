"""seldepth report: the HTML page's content, its errors, the CLI, and its rendering in headless Chromium."""

import base64
import io
import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers import tiny_train_args
from seldepth.cli import main
from seldepth.report import html as report_html
from seldepth.report.html import sample_indices, write_report
from seldepth.report.run_plots import series
from seldepth.training import run_folder
from seldepth.training.run_folder import read_metrics_csv


pytestmark = pytest.mark.usefixtures("one_thread")


def _hand_made_run(out: Path, splits: Path) -> Path:
    """A run folder written by hand: an untrained METER-xxs, a CSV log with few columns, no dissection or ablation."""
    from seldepth.models import create_model
    from seldepth.models.model_file import save_model_file
    from seldepth.models.preprocessing import Preprocessing

    (out / "csv").mkdir(parents=True)
    save_model_file(create_model("meter_xxs"), out / "model.safetensors", Preprocessing(input_size=(64, 96)))
    config = {"model": "meter_xxs", "protocol": "nyu", "trainer": {"out_dir": str(out)},
              "data": {"path": f"nyu:{splits}", "input_size": [64, 96], "test_split": "val"},
              "selectivity": {"layers": [], "weight": 0.1, "bins": "sid:32"}}
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"rmse": 3.25, "abs_rel": 0.875, "delta1": 0.0625}
    split = {"metrics": metrics, "num_images": 3, "protocol": {"name": "nyu"}}
    (out / "results.json").write_text(json.dumps({"train_seconds": 754.0, "epochs": 2, "val": split, "test": split}))
    (out / "csv" / "metrics.csv").write_text("epoch,step,train/loss,val/rmse\n0,0,500.0,\n0,1,450.0,\n0,1,,3.6\n"
                                            "1,2,400.0,\n1,3,,3.5\n")
    return out


def _ablation(layer: str) -> dict:
    fractions = [0.0, 0.25, 0.5]

    def point(f, rmse):
        return {"fraction": f, "k": int(64 * f), "rmse": rmse, "abs_rel": rmse / 4, "delta1": 1 - rmse / 5}

    return {"info": {}, "layer": layer, "num_units": 64, "mode": "zero", "bins": "sid:16", "protocol": "nyu",
            "fractions": fractions, "seeds": 2, "baseline": {"rmse": 1.0, "abs_rel": 0.25, "delta1": 0.8},
            "curves": {"top": [point(f, 1 + f) for f in fractions], "bottom": [point(f, 1 + f / 3) for f in fractions],
                       "random": [{**point(f, 1 + f / 2), "rmse_std": 0.05, "rmse_per_seed": [1 + f / 2] * 2}
                                  for f in fractions]},
            "top_minus_random_rmse": [0.0, 0.125, 0.25]}


@pytest.fixture(scope="session")
def report_runs(tiny_splits, tmp_path_factory) -> list[Path]:
    """[untrained (hand-made), sel_enc7 (a tiny real training with the selectivity regulariser on enc_7,
    dissected, with an ablation.json)]."""
    from seldepth.data.spec import open_dataset
    from seldepth.models.loading import load_model
    from seldepth.selectivity.dissect import dissect

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("report_runs")
        untrained = _hand_made_run(root / "untrained", tiny_splits)
        trained = root / "sel_enc7"
        args = [*tiny_train_args(tiny_splits, trained, epochs=2), "--data.input_size", "[64,128]",  # METER pads to 64
                "--selectivity.layers", "[enc_7]", "--selectivity.weight", "1.0"]
        assert main(["train", *args]) == 0
        with warnings.catch_warnings():  # the 3 validation images leave some bins empty
            warnings.simplefilter("ignore")
            result = dissect(load_model(trained / "model.safetensors"), open_dataset(f"nyu:{tiny_splits}", "val"),
                             layers=["enc_5", "enc_7", "dec_0"], bins="sid:16", progress=False)
        result.save(trained / "dissect")
        (trained / "ablation").mkdir()
        (trained / "ablation" / "ablation.json").write_text(json.dumps(_ablation("enc_7")))
    finally:
        torch.set_num_threads(before)
    return [untrained, trained]


@pytest.fixture(scope="session")
def report(report_runs, tmp_path_factory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("report") / "report.html"
        assert write_report(report_runs, out, samples=2, progress=False) == out
    finally:
        torch.set_num_threads(before)
    return out


def _data_uris(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)


def test_report_is_one_self_contained_page(report):
    page = report.read_text(encoding="utf-8")
    assert list(report.parent.iterdir()) == [report]  # written atomically: no temporary file left
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', page), "a resource outside the page"
    images = _data_uris(page)
    assert len(images) == page.count("<img ") == 6  # predictions, attention, mean DS, enc_7 responses, ablation, training
    for data in images:
        png = Image.open(io.BytesIO(base64.b64decode(data)))
        assert png.format == "PNG" and png.width > 200 and png.height > 100


def test_report_content(report, report_runs):
    page = report.read_text(encoding="utf-8")
    rows = re.findall(r"<tr>(.*?)</tr>", page.split('<table id="metrics">')[1].split("</table>")[0], re.DOTALL)
    assert len(rows) == 3  # header + one per run
    untrained_row, trained_row = rows[1], rows[2]
    assert ">untrained<" in untrained_row and "3.2500" in untrained_row and "12 min 34 s" in untrained_row
    results = json.loads((report_runs[1] / "results.json").read_text())
    dissection = json.loads((report_runs[1] / "dissect" / "selectivity.json").read_text())
    assert ">sel_enc7<" in trained_row and ">enc_7<" in trained_row and ">1.0<" in trained_row and ">sid:32<" in trained_row
    assert f"{results['test']['metrics']['rmse']:.4f}" in trained_row
    assert f"{dissection['mean_ds']:.3f}" in trained_row
    # tuned / ramp / flat units per dissected layer, as the dissection counted them
    tuning = page.split('<table id="tuning">')[1].split("</table>")[0]
    counts = dissection["layers"]["enc_7"]["tuning"]["counts"]
    assert f"<td>{counts['tuned']} / {counts['ramp']} / {counts['flat']}</td>" in tuning and ">enc_5<" in tuning
    assert sum(counts.values()) == dissection["layers"]["enc_7"]["num_units"]
    # the run without a dissection or ablation gets one-line notes, the other its figures
    for text in ("untrained: no dissection.", "untrained: no ablation.", "sel_enc7, enc_7 (regularised in this run)",
                 "Layers: enc_7 (regularised layers)", "2 images of nyu:", "indices 0, 2"):
        assert text in page, text
    assert "A(T) = sum over channels of |T|, min-max normalised per panel" in page
    for anchor in ("metrics", "settings", "predictions", "attention", "mean-ds", "responses", "ablation", "training"):
        assert f'<section id="{anchor}">' in page
    # the settings that differ: the hand-made run's config has few keys, the trained run's all of them
    settings = page.split('<table id="settings">')[1].split("</table>")[0]
    keys = re.findall(r"<code>(.*?)</code>", settings.split("</thead>")[0])
    assert {"data.input_size", "selectivity.layers", "selectivity.weight", "trainer.epochs"} <= set(keys)
    assert not {"trainer.out_dir", "data.path", "protocol", "model", "selectivity.bins"} & set(keys)
    assert "regularised layers<br><code>selectivity.layers</code>" in settings
    assert "Not compared: trainer.out_dir (each run&#x27;s own folder)" in page
    headers = re.findall(r"<th[^>]*>(.*?)</th>", page.split('<table id="metrics">')[1].split("</thead>")[0])
    assert headers[6:] == ["test RMSE (m)", "test relative error (AbsRel)",
                           "test share of pixels within 1.25&times; (&delta;1)", "validation RMSE (m)", "epochs",
                           "training time", "mean depth selectivity (DS)"]


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium not installed (CI installs Debian's chromium; apt-get install chromium)")
    return path


CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute("data-check", "tables=" + document.querySelectorAll("table").length
    + ";rows=" + document.querySelectorAll("table#metrics tbody tr").length
    + ";images=" + images.length + ";decoded=" + decoded);
});
</script>
"""


def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = _chromium()
    page = tmp_path / "checked.html"  # a copy with a checking script; the report itself has none
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], check=False, capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    check = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert check, "the page did not finish loading: " + dom.stdout[:500]
    counts = dict(item.split("=") for item in check.group(1).split(";"))
    assert counts == {"tables": "3", "rows": "2", "images": "6", "decoded": "6"}, counts  # metrics, settings, tuning
    for text in ("seldepth report: untrained vs sel_enc7", "Sample predictions", "Training curves", "sel_enc7"):
        assert text in dom.stdout, text

    shot = tmp_path / "shot.png"
    done = subprocess.run([*flags, "--window-size=1280,1600", f"--screenshot={shot}", report.as_uri()],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (1600, 1280)
    assert (pixels < 200).mean() > 0.03, "the rendered page is (almost) blank"
    assert len(np.unique(pixels)) > 50  # text, table and the colour maps of the first figure


@pytest.mark.parametrize("broken, missing", [("folder", "does not exist"), ("config.yaml", "config.yaml"),
                                             ("results.json", "results.json")])
def test_missing_folder_or_file_is_named_before_any_work(report_runs, tmp_path, monkeypatch, broken, missing):
    bad = tmp_path / "bad_run"
    if broken != "folder":
        shutil.copytree(report_runs[0], bad)
        (bad / broken).unlink()

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the run folders were checked")

    monkeypatch.setattr(report_html, "metrics_table", no_work)
    monkeypatch.setattr(run_folder, "read_yaml", no_work)
    out = tmp_path / "report.html"
    with pytest.raises(ValueError, match=re.escape(str(bad))) as info:
        write_report([report_runs[0], bad], out, progress=False)
    assert missing in str(info.value)
    assert not out.exists()


def test_no_run_folder_and_bad_samples_are_errors(report_runs, tmp_path):
    with pytest.raises(ValueError, match="at least one run folder"):
        write_report([], tmp_path / "r.html", progress=False)
    with pytest.raises(ValueError, match="samples"):
        write_report(report_runs, tmp_path / "r.html", samples=-1, progress=False)


def test_cli_one_run_without_dissection_or_ablation(report_runs, tmp_path, capsys):
    out = tmp_path / "sub" / "one.html"
    assert main(["report", str(report_runs[0]), "--out", str(out), "--samples", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith(str(out))
    page = out.read_text(encoding="utf-8")
    for text in ("No dissection in any run", "No unit responses: no run has a dissection", "No ablation in any run"):
        assert text in page, text
    assert len(_data_uris(page)) == 3  # predictions, attention maps (the model's first layers) and training curves
    assert page.count("<tr>") == 2

    assert main(["report", str(report_runs[0]), str(tmp_path / "nope"), "--out", str(tmp_path / "x.html")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err


def test_read_metrics_csv_with_sparse_rows_and_missing_columns(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,lr-AdamW,step,train/loss,val/rmse\n,0.001,0,,\n0,,0,5.0,\n0,,1,4.0,\n0,,1,,2.5\n")
    log = read_metrics_csv(path)
    x, y = series(log, "train/loss")
    assert x.tolist() == [0, 1] and y.tolist() == [5.0, 4.0]
    x, y = series(log, "val/rmse", x="epoch")
    assert x.tolist() == [0] and y.tolist() == [2.5]
    assert [len(a) for a in series(log, "val/ds/enc_7", x="epoch")] == [0, 0]
    path.write_text("epoch,step,train/loss\n0,0,nan-ish\n")
    with pytest.raises(ValueError, match="metrics.csv"):
        read_metrics_csv(path)


def test_sample_indices_spread_over_the_split():
    assert sample_indices(10, 4) == [0, 3, 6, 9]
    assert sample_indices(3, 8) == [0, 1, 2]
    assert sample_indices(0, 4) == [] and sample_indices(5, 0) == []


def test_a_partial_ablation_document_gets_a_note_not_a_crash(tmp_path):
    from seldepth.report.html import ablation_section

    class Run:
        name = "run"

        def ablation(self):
            return {"layer": "enc_7", "curves": {"top": [{"fraction": 0.0, "rmse": 1.0}]}}

    html = ablation_section([Run()], report_html.FigureFolder(tmp_path))
    assert "run: ablation/ablation.json lacks what the plot needs" in html


def test_attention_section_shows_the_regularised_layer_of_each_run(report_runs, tmp_path, monkeypatch):
    from seldepth.report import attention
    from seldepth.report import html as report_html

    original, captured = attention.plot_attention_grid, {}

    def grid(image, rows, path):
        captured.update({name: list(maps.maps) for name, maps in rows.items()})
        return original(image, rows, path)

    monkeypatch.setattr(attention, "plot_attention_grid", grid)
    html = report_html.attention_section(report_html.load_runs(report_runs), report_html.FigureFolder(tmp_path))
    assert captured == {"untrained": ["enc_7"], "sel_enc7": ["enc_7"]} and "<img " in html


def _experiment(root: Path, report_runs, order: list[str] | None) -> Path:
    """A fake experiment folder from the fixture's runs (their config.yaml and results.json): z_sel (the trained
    run) and a_untrained, named so that their sorted order differs from ``order``; a failed run's folder
    (requested.yaml only) beside them; experiment.json listing ``order`` (none if None), as gather() writes it."""
    root.mkdir()
    for name, source in (("z_sel", report_runs[1]), ("a_untrained", report_runs[0])):
        (root / name).mkdir()
        for file in ("config.yaml", "results.json"):
            shutil.copy(source / file, root / name / file)
    (root / "m_failed").mkdir()
    (root / "m_failed" / "requested.yaml").write_text("model: meter_xxs\n")
    (root / "summary.md").write_text("| run |\n")
    if order is not None:
        (root / "experiment.json").write_text(json.dumps({"runs": [{"run": n, "rmse": 1.0} for n in order],
                                                          "baseline": order[0], "ablation": {}}))
    return root


def test_an_experiment_folder_expands_to_its_runs_in_the_experiments_order(report_runs, tmp_path):
    exp = _experiment(tmp_path / "exp", report_runs, order=["z_sel", "a_untrained"])
    assert report_html.check_run_dirs([exp]) == [exp / "z_sel", exp / "a_untrained"]  # experiment.json's order
    assert report_html.check_run_dirs(str(exp)) == [exp / "z_sel", exp / "a_untrained"]
    # mixed with run folders; a run met twice is kept the first time
    assert report_html.check_run_dirs([report_runs[0], exp]) == [report_runs[0], exp / "z_sel", exp / "a_untrained"]
    assert report_html.check_run_dirs([exp / "a_untrained", exp]) == [exp / "a_untrained", exp / "z_sel"]
    # without experiment.json: its sub-folders that are run folders, by name (the failed run's is not one)
    plain = _experiment(tmp_path / "plain", report_runs, order=None)
    assert report_html.check_run_dirs([plain]) == [plain / "a_untrained", plain / "z_sel"]


def test_cli_report_of_an_experiment_folder(report_runs, tmp_path, capsys):
    exp = _experiment(tmp_path / "exp", report_runs, order=["z_sel", "a_untrained"])
    out = tmp_path / "exp.html"
    assert main(["report", str(exp), "--out", str(out), "--samples", "0"]) == 0
    page = out.read_text(encoding="utf-8")
    rows = re.findall(r"<tr>(.*?)</tr>", page.split('<table id="metrics">')[1].split("</table>")[0], re.DOTALL)
    assert [re.search(r'<td class="text">(.*?)</td>', r).group(1) for r in rows[1:]] == ["z_sel", "a_untrained"]
    settings = page.split('<table id="settings">')[1].split("</table>")[0]
    assert [re.search(r'<td class="text">(.*?)</td>', r).group(1)
            for r in re.findall(r"<tr>(.*?)</tr>", settings, re.DOTALL)[1:]] == ["z_sel", "a_untrained"]
    assert f"<code>{exp.resolve()}</code>: its runs in the order of its experiment.json" in page
    assert "seldepth report: z_sel vs a_untrained" in page


def test_a_folder_that_is_neither_a_run_nor_an_experiment_folder_is_named(report_runs, tmp_path, capsys):
    stray = tmp_path / "stray"
    (stray / "sub").mkdir(parents=True)
    (stray / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=re.escape(str(stray)) + ".*neither a run folder.*nor an experiment folder"):
        write_report([report_runs[0], stray], tmp_path / "r.html", progress=False)
    assert main(["report", str(stray), "--out", str(tmp_path / "x.html")]) == 2
    assert str(stray) in capsys.readouterr().err and not (tmp_path / "x.html").exists()
    # experiment.json naming a run whose folder is gone; one listing no run
    exp = _experiment(tmp_path / "exp", report_runs, order=["z_sel", "gone"])
    with pytest.raises(ValueError, match=re.escape(str(exp / "gone")) + ".*does not exist"):
        write_report([exp], tmp_path / "r.html", progress=False)
    (exp / "experiment.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(ValueError, match=re.escape(str(exp)) + ".*lists no finished run"):
        write_report([exp], tmp_path / "r.html", progress=False)
    (exp / "experiment.json").write_text(json.dumps({"runs": [{"rmse": 1.0}]}))
    with pytest.raises(ValueError, match=re.escape(str(exp / "experiment.json"))):
        write_report([exp], tmp_path / "r.html", progress=False)
