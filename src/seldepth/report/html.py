"""One self-contained HTML page comparing training runs side by side (``seldepth report``).

The page needs nothing but itself: images are inline base64 PNG data URIs, the CSS is inline,
there is no script and no external resource. Sections:

1. metrics: a table with one row per run (model, regularised layers, lambda, bins, test
   RMSE / AbsRel / delta1, val RMSE, train time, overall mean DS of the dissection); the best
   value of a metric column is marked only where it beats the second best by more than the
   spread of the per-image metric (:func:`seldepth.report.comparison.clear_best`: one standard
   error of the per-image differences where ``results.json`` holds per-image values, else a 1 %
   margin, as results.json holds only means today); the table's note says which rule applied;
2. settings that differ: one row per run, one column per config key (dotted path) whose value
   is not the same in all runs (:func:`seldepth.report.comparison.differing_settings`; the
   note names the keys left out: ``trainer.out_dir`` and paths inside each run's own folder);
3. sample predictions on the first run's test split: RGB, ground truth, each run's
   prediction and |error|, one fixed depth colour range with a colour bar;
4. attention maps A(T) of each run's regularised (else most selective) layers on a test image;
5. per-layer mean DS of each run's dissection, grouped bars, regularised layers marked;
6. unit response curves (R per bin against bin-centre depth) of the regularised layers
   (if no run regularises any, the two most selective layers of the first dissection);
7. ablation curves of the runs that have them, and their heatmap of ablation per depth range
   (``ablate_by_bin/by_bin.json`` or, from an experiment, ``ablate_by_bin/LAYER-GROUPING/by_bin.json``,
   :mod:`seldepth.report.by_bin_plots`);
8. training curves from ``csv/metrics.csv``, runs overlaid;
9. for an experiment folder with a ``pruning:`` section (its ``pruning.json``): test RMSE change against FLOPs
   and against ONNX Runtime latency per criterion (:mod:`seldepth.report.pruning_plots`), and the table.

A section without data says so in one line. A run folder is what ``seldepth train`` writes
(see :mod:`seldepth.training`); ``config.yaml`` and ``results.json`` are required,
``model.safetensors``, ``csv/metrics.csv``, ``dissect/selectivity.{json,npz}`` (written by
``seldepth dissect --out RUN/dissect``), ``ablation/ablation.json`` and ``ablate_by_bin/by_bin.json``
(``seldepth ablate --by-bin --out RUN/ablate_by_bin``) are optional.

An experiment folder (what ``seldepth experiment --out`` writes: one run folder per run) stands
for its runs (:func:`expand_run_dirs`): those of its ``experiment.json``, in that file's order
(the experiment file's), or without one, its sub-folders that are run folders, by name. Run and
experiment folders can be mixed; a run named twice is shown once.

Example:
    >>> write_report(["runs/baseline", "runs/sel_enc7"], "report.html", samples=4)
    >>> write_report(["runs/selectivity_study"], "report.html")   # an experiment folder
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from seldepth.atomic import write_text_atomic
from seldepth.defaults import DEFAULT_REPORT_SAMPLES
from seldepth.report.ablation_plots import plot_ablation
from seldepth.report.by_bin_plots import plot_by_bin
from seldepth.report.pruning_plots import plot_pruning
from seldepth.report.comparison import (ABSENT, ALWAYS_IGNORED, RELATIVE_MARGIN, clear_best, differing_settings,
                                         setting_words)
from seldepth.report.run_plots import plot_mean_ds_comparison, plot_prediction_grid, plot_training_curves, run_colors
from seldepth.report.selectivity_plots import plot_unit_responses
from seldepth.training.run_folder import REQUIRED_FILES, RunFolder, read_json

MISSING = "&mdash;"

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em auto; max-width: 1500px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1.0em; margin: 1em 0 0.3em; }
nav a { margin-right: 1em; }
.info, .how { color: #555; font-size: 0.9em; }
.note { color: #777; font-style: italic; margin: 0.3em 0; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; }
td.text, th.text { text-align: left; white-space: normal; }
.wide { overflow-x: auto; }
td.best { font-weight: bold; background: #eaf5ea; }
figure { margin: 0.6em 0 1.2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85em; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""


EXPERIMENT_FILE = "experiment.json"  # written by seldepth experiment: {"runs": [{"run": name, ...}, ...], ...}


def _is_run_folder(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def experiment_runs(folder: str | os.PathLike) -> list[Path] | None:
    """The run folders of an experiment folder in the experiment's order, or None if ``folder`` is not one.

    With ``experiment.json``: the folders of its ``runs`` rows (``"run"``: the name), in its order
    (the experiment file's; it lists the runs that finished). Without: the sub-folders holding
    ``config.yaml`` and ``results.json``, sorted by name.

    Raises:
        ValueError: naming ``experiment.json`` when it is unreadable or lists no run.
    """
    folder = Path(folder)
    record = folder / EXPERIMENT_FILE
    if record.is_file():
        rows = read_json(record).get("runs")
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("run"), str) for r in rows):
            raise ValueError(f"{record}: expected \"runs\": a list of rows each naming its \"run\"")
        if not rows:
            raise ValueError(f"experiment folder {folder}: {EXPERIMENT_FILE} lists no finished run")
        return [folder / r["run"] for r in rows]
    subs = sorted((p for p in folder.iterdir() if p.is_dir() and _is_run_folder(p)), key=lambda p: p.name)
    return subs or None


def expand_run_dirs(run_dirs: list) -> list[tuple[Path, Path | None]]:
    """Run and experiment folders -> ``[(run folder, the experiment folder it came from or None)]``.

    A folder holding ``config.yaml`` or ``results.json`` is a run folder; else a folder with
    ``experiment.json`` or with sub-folders that are run folders is an experiment folder and stands
    for its runs (:func:`experiment_runs`). A run folder met twice is kept the first time.

    Raises:
        ValueError: for no folder; naming a folder that does not exist or is neither a run nor an experiment folder.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("run_dirs: expected at least one run folder")
    out, seen = [], set()
    for path in paths:
        if not path.is_dir() or any((path / name).is_file() for name in REQUIRED_FILES):
            runs = [(path, None)]  # a run folder (RunFolder.check names what is missing)
        else:
            found = experiment_runs(path)
            if found is None:
                raise ValueError(f"{path} is neither a run folder (no {' or '.join(REQUIRED_FILES)}) nor an experiment "
                                 f"folder (no {EXPERIMENT_FILE}, no sub-folder with {' and '.join(REQUIRED_FILES)})")
            runs = [(run, path) for run in found]
        for run, source in runs:
            key = run.resolve()
            if key not in seen:
                seen.add(key)
                out.append((run, source))
    return out


def check_run_dirs(run_dirs: list) -> list[Path]:
    """The run folders as paths (experiment folders expanded, :func:`expand_run_dirs`), after checking that
    each exists and holds ``config.yaml`` and ``results.json``.

    Raises:
        ValueError: for no folder, or naming the first folder that is missing, lacks a required file,
            or is neither a run folder nor an experiment folder.
    """
    paths = [run for run, _ in expand_run_dirs(run_dirs)]
    for path in paths:
        RunFolder(path).check()
    return paths


def run_names(paths: list[Path]) -> list[str]:
    """Folder names; where two folders share a name, ``parent/name``, and a number if that still clashes."""
    names = [p.name or str(p) for p in paths]
    names = [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if names.count(n) == 1 else f"{n} ({seen[n]})")
    return out


def load_runs(run_dirs: list) -> list[RunFolder]:
    """Check all folders (:func:`check_run_dirs`), then read their configs and results."""
    paths = check_run_dirs(run_dirs)
    runs = [RunFolder(path, name) for name, path in zip(run_names(paths), paths)]
    for run in runs:  # read now: a broken file stops the report before any work
        run.config, run.results
    return runs


# ---------------------------------------------------------------------------------------- building blocks

def esc(value) -> str:
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """A one-line note (for a section or run without data)."""
    return f'<p class="note">{esc(text)}</p>'


def img_tag(png: str | os.PathLike, alt: str) -> str:
    """An ``<img>`` with the PNG file inline as a base64 data URI."""
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def figure(png: str | os.PathLike, caption: str) -> str:
    return f"<figure>{img_tag(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def section(anchor: str, title: str, how: str, body: str) -> str:
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n<p class="how">{esc(how)}</p>\n{body}\n</section>'


class FigureFolder:
    """Names PNG files in a scratch folder, in the order they are asked for."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._count = 0

    def new(self, stem: str) -> Path:
        self._count += 1
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
        return self.root / f"{self._count:03d}_{safe}.png"


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return MISSING
    try:
        v = float(value)
    except (TypeError, ValueError):
        return esc(value)
    return f"{v:.{digits}f}" if np.isfinite(v) else MISSING


def format_duration(seconds) -> str:
    """``4 s``, ``12 min 05 s``, ``3 h 02 min``; a dash for None."""
    if seconds is None:
        return MISSING
    s = round(float(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _metric(run: RunFolder, split: str, key: str):
    block = run.results.get(split)
    return ((block or {}).get("metrics") or {}).get(key) if isinstance(block, dict) else None


def _per_image(run: RunFolder, split: str, key: str):
    """``results[split]["per_image"][key]`` (one value per test image), or None where results.json has none."""
    block = run.results.get(split)
    per_image = block.get("per_image") if isinstance(block, dict) else None
    return per_image.get(key) if isinstance(per_image, dict) else None


METRIC_COLUMNS = (  # (title in words, HTML; split, key, better: -1 lower, +1 higher)
    ("test RMSE (m)", "test", "rmse", -1), ("test relative error (AbsRel)", "test", "abs_rel", -1),
    ("test share of pixels within 1.25&times; (&delta;1)", "test", "delta1", 1),
    ("validation RMSE (m)", "val", "rmse", -1))


def best_rule_note(rules: set) -> str:
    """The metrics table's sentence on what the bold values mean, for the rules :func:`clear_best` used."""
    if not rules:
        return "Bold: none (fewer than two runs with a value to compare)."
    parts = []
    if "per-image" in rules:
        parts.append("more than one standard error of the per-image differences between the two (paired over "
                     "the same test images; from the per-image values in results.json)")
    if "margin" in rules:
        parts.append(f"more than {RELATIVE_MARGIN:.0%} of the second best's value"
                     + (" where results.json holds only means" if "per-image" in rules else
                        " (results.json holds only the means of the per-image metrics, not their spread, so a "
                        "gap smaller than that is not taken as a difference)"))
    return ("Bold: the best run of a metric column, only where it beats the second best by "
            + "; or by ".join(parts) + "; no bold in a column: no run is clearly best.")


def metrics_table(runs: list[RunFolder]) -> str:
    """The metrics table: one row per run (``<table id="metrics">``).

    The best value of a metric column is marked (``td.best``) only where it beats the second best
    by more than the spread (:func:`seldepth.report.comparison.clear_best`): one standard error of
    the per-image differences where both runs' results.json hold ``per_image`` values, else more
    than ``RELATIVE_MARGIN`` (1 %) of the second best's value. The note under the table says which.
    """
    best, rules = {}, set()
    for _, split, key, sign in METRIC_COLUMNS:
        outcome = clear_best([_metric(r, split, key) for r in runs], sign > 0,
                             [_per_image(r, split, key) for r in runs])
        best[(split, key)] = outcome.index
        if outcome.rule:
            rules.add(outcome.rule)
    head = ("<tr><th class=\"text\">run</th><th class=\"text\">model</th><th class=\"text\">data (test split)</th>"
            "<th class=\"text\">regularised layers</th><th>selectivity weight &lambda;</th>"
            "<th class=\"text\">depth bins</th>"
            + "".join(f"<th>{title}</th>" for title, *_ in METRIC_COLUMNS)
            + "<th>epochs</th><th>training time</th><th>mean depth selectivity (DS)</th></tr>")
    rows = []
    for index, run in enumerate(runs):
        sel = run.config_section("selectivity")
        layers = run.regularised_layers
        cells = [f'<td class="text">{esc(run.name)}</td>', f'<td class="text">{esc(run.model_name)}</td>',
                 f'<td class="text">{esc(run.data_spec or "?")} ({esc(run.test_split)})</td>',
                 f'<td class="text">{esc(", ".join(layers)) if layers else "none"}</td>',
                 f"<td>{esc(sel.get('weight')) if layers else MISSING}</td>",
                 f'<td class="text">{esc(sel.get("bins", "?")) if layers else MISSING}</td>']
        for _, split, key, _ in METRIC_COLUMNS:
            v = _metric(run, split, key)
            mark = ' class="best"' if best.get((split, key)) == index else ""
            cells.append(f"<td{mark}>{_fmt(v, 4)}</td>")
        dissection = run.dissection()
        cells += [f"<td>{esc(run.results['epochs']) if 'epochs' in run.results else MISSING}</td>",
                  f"<td>{format_duration(run.results.get('train_seconds'))}</td>",
                  f"<td>{_fmt((dissection or {}).get('mean_ds'))}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    protocols = sorted({str(((r.results.get("test") or {}).get("protocol") or {}).get("name", "?")) for r in runs})
    caption = (f"Test metrics under protocol {', '.join(protocols)}, each the mean over the test images of the "
               "per-image value; validation RMSE of the selected (best) checkpoint; selectivity weight and depth "
               "bins of the regulariser (a dash where no layer is regularised); mean depth selectivity: mean over "
               "the dissected layers (dissect/selectivity.json), a dash without a dissection. "
               + best_rule_note(rules))
    return (f'<div class="wide"><table id="metrics">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows)
            + f"\n</tbody>\n</table></div>\n<p class=\"info\">{esc(caption)}</p>")


def _setting_value(value) -> str:
    """A config value in a table cell: lists comma-joined, ``none`` for null and empty, a dash where absent."""
    if value is ABSENT:
        return MISSING
    if value is None or value == [] or value == {}:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return esc(", ".join(str(v) for v in value))
    return esc(value)


def settings_table(runs: list[RunFolder]) -> str:
    """The settings that differ: one row per run, one column per config key (dotted path) whose value is not
    the same in all runs (``<table id="settings">``; :func:`seldepth.report.comparison.differing_settings`)."""
    if len(runs) < 2:
        return note("One run: no settings to compare.")
    diff = differing_settings([r.config for r in runs], [r.path for r in runs])
    ignored = "; ".join(f"{key} ({why})" for key, why in diff.ignored.items() if key not in ALWAYS_IGNORED)
    left_out = ("Not compared: trainer.out_dir (each run's own folder) and values that differ only by that folder "
                "(a path inside it)" + (f"; left out here: {ignored}." if ignored else "."))
    if not diff.keys:
        return note(f"The runs' configs (config.yaml) are the same. {left_out}")
    head = ('<tr><th class="text">run</th>'
            + "".join(f'<th class="text">{esc(setting_words(k))}<br><code>{esc(k)}</code></th>' for k in diff.keys)
            + "</tr>")
    rows = []
    for i, run in enumerate(runs):
        cells = [f'<td class="text">{esc(run.name)}</td>']
        cells += [f'<td class="text">{_setting_value(diff.values[k][i])}</td>' for k in diff.keys]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = ("Config keys (config.yaml; the dotted path under each column's name) whose value is not the same in "
               f"all runs; a dash: the key is not in that run's config. {left_out}")
    return (f'<div class="wide"><table id="settings">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows)
            + f"\n</tbody>\n</table></div>\n<p class=\"info\">{esc(caption)}</p>")


def _open_test_split(run: RunFolder):
    """The run's test split, or a note (str) saying why it cannot be shown. Never generates data."""
    from seldepth.data.spec import open_dataset, resolve_spec

    spec = run.data_spec
    if not spec:
        return f"{run.name}: config.yaml names no data.path"
    try:
        path = resolve_spec(str(spec), key="data.path")
        if str(spec).startswith("synthetic:default") and not (path / "dataset.json").is_file():
            return f"data set {spec} is not generated on this machine ({path}); seldepth train generates it"
        return open_dataset(str(spec), split=run.test_split)
    except (ValueError, OSError) as exc:
        return f"data set {spec} (split {run.test_split}) cannot be opened: {exc}"


def sample_indices(length: int, samples: int) -> list[int]:
    """``samples`` indices spread evenly over ``range(length)`` (fewer if the data set is smaller)."""
    n = min(samples, length)
    return [] if n <= 0 else sorted({round(float(i)) for i in np.linspace(0, length - 1, n)})


def predictions_section(runs: list[RunFolder], samples: int, figures: FigureFolder, progress: bool = True,
                        device="cpu") -> str:
    """The sample-prediction grid of ``samples`` images of the first run's test split."""
    if samples <= 0:
        return note("No sample predictions: samples = 0.")
    dataset = _open_test_split(runs[0])
    if isinstance(dataset, str):
        return note(f"No sample predictions: {dataset}.")
    indices = sample_indices(len(dataset), samples)
    if not indices:
        return note(f"No sample predictions: the test split of {runs[0].data_spec} is empty.")
    items = [dataset[i] for i in indices]
    notes = [note(f"{run.name}: no model.safetensors, left out.") for run in runs if run.model_file is None]
    predictions = {}
    for run in tqdm([r for r in runs if r.model_file is not None], desc="predict", unit="run", leave=False,
                    disable=not progress):
        from seldepth.models.model_file import read_model_file

        model = read_model_file(run.model_file, device=device).eval()
        predictions[run.name] = [predict_depth_map(model, s["image"], tuple(s["depth"].shape[-2:])) for s in items]
        del model
    if not predictions:
        return note("No sample predictions: no run has a model.safetensors.")
    path = plot_prediction_grid([s["image"].numpy() for s in items], [s["depth"][0].numpy() for s in items],
                                [s["valid"][0].numpy() for s in items], predictions, figures.new("predictions"),
                                titles=[f"{runs[0].test_split} #{i}" for i in indices])
    caption = (f"{len(indices)} image{'s' if len(indices) > 1 else ''} of {runs[0].data_spec} (split {runs[0].test_split}, "
               f"indices {', '.join(map(str, indices))}); every run predicts at the ground truth's resolution.")
    return "\n".join([*notes, figure(path, caption)])


def predict_depth_map(model: torch.nn.Module, image: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(H, W) depth in metres of one (3, H, W) image in [0, 1], at ``size``."""
    from seldepth.inference import predict_depth

    return predict_depth(model, image[None], size=size)[0, 0].float().cpu().numpy()


def attention_section(runs: list[RunFolder], figures: FigureFolder, max_layers: int = 6, device="cpu") -> str:
    """Attention maps A(T) = sum |T| of each run's layers on the first test image (the attention visualisation of Jiao et al., ECCV 2018).

    The layers are :func:`response_layers` (regularised or most selective) when the runs have
    dissections, else each model's first ``max_layers`` selectivity layers.
    """
    from seldepth.models.model_file import read_model_file
    from seldepth.report.attention import capture_attention, plot_attention_grid

    dataset = _open_test_split(runs[0])
    if isinstance(dataset, str):
        return note(f"No attention maps: {dataset}.")
    if len(dataset) == 0:
        return note(f"No attention maps: the test split of {runs[0].data_spec} is empty.")
    image = dataset[0]["image"]
    wanted = response_layers(runs)
    rows, notes = {}, []
    for run in runs:
        if run.model_file is None:
            notes.append(note(f"{run.name}: no model.safetensors, left out."))
            continue
        model = read_model_file(run.model_file, device=device)
        known = list(getattr(model, "selectivity_layers", {}) or {})
        layers = [layer for layer in wanted if layer in known] or known[:max_layers]
        if not layers:
            notes.append(note(f"{run.name}: its model names no layers."))
            continue
        rows[run.name] = capture_attention(model, image, layers[:max_layers])
    if not rows:
        return "\n".join(notes) or note("No attention maps: no run has a model.safetensors.")
    path = plot_attention_grid(image, rows, figures.new("attention"))
    caption = (f"Test image #0 of {runs[0].data_spec}; each panel is the layer's A(T) = sum over channels of |T|, "
               f"min-max normalised per panel (bright: strong activation).")
    return "\n".join([*notes, figure(path, caption)])


def mean_ds_section(runs: list[RunFolder], figures: FigureFolder) -> str:
    """Grouped bars of the per-layer mean DS of every run with a dissection."""
    with_dissection = [r for r in runs if (r.dissection() or {}).get("layers")]
    if not with_dissection:
        return note("No dissection in any run (dissect/selectivity.json; write one with "
                    "seldepth dissect --out RUN/dissect).")
    notes = [note(f"{r.name}: no dissection.") for r in runs if r not in with_dissection]
    mean_ds = {r.name: {layer: float(v.get("mean_ds", np.nan)) for layer, v in r.dissection()["layers"].items()}
               for r in with_dissection}
    colors = run_colors([r.name for r in runs])
    path = plot_mean_ds_comparison(mean_ds, figures.new("mean_ds"),
                                   regularised={r.name: r.regularised_layers for r in with_dissection},
                                   colors={r.name: colors[r.name] for r in with_dissection})
    details = "; ".join(f"{r.name}: {r.dissection().get('num_images', '?')} images, mean DS over all dissected layers "
                        f"{_fmt(r.dissection().get('mean_ds'))}" for r in with_dissection)
    return "\n".join([*notes, figure(path, f"Mean depth selectivity per layer. {details}."), tuning_table(with_dissection)])


def tuning_table(runs: list[RunFolder]) -> str:
    """Units tuned to a depth range, ramps and flat units per layer of each run's dissection
    (``tuning.counts`` of ``dissect/selectivity.json``; :mod:`seldepth.selectivity.tuning`), as ``tuned / ramp /
    flat``; empty without tuning counts (dissections written before they existed)."""
    layers = list(dict.fromkeys(layer for r in runs for layer, v in r.dissection()["layers"].items()
                                if "tuning" in v))
    if not layers:
        return ""
    head = "<tr><th class=\"text\">run</th>" + "".join(f"<th>{esc(layer)}</th>" for layer in layers) + "<th>all</th></tr>"
    rows = []
    for run in runs:
        counts = {layer: v["tuning"]["counts"] for layer, v in run.dissection()["layers"].items() if "tuning" in v}
        total = {kind: sum(c.get(kind, 0) for c in counts.values()) for kind in ("tuned", "ramp", "flat")}
        cells = [f"{c['tuned']} / {c['ramp']} / {c['flat']}" if (c := counts.get(layer)) else "-" for layer in layers]
        share = total["tuned"] / max(1, sum(total.values()))
        cells.append(f"{total['tuned']} / {total['ramp']} / {total['flat']} ({100 * share:.0f}% tuned)")
        rows.append(f"<tr><td class=\"text\">{esc(run.name)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    caption = ("Units per layer tuned to a depth range / ramps (response rising or falling to the first or last bin) / "
               "flat, from the same responses as DS (thresholds: docs/selectivity.md).")
    return f"<table id=\"tuning\">{head}{''.join(rows)}</table>\n{note(caption)}"


def response_layers(runs: list[RunFolder], fallback: int = 2) -> list[str]:
    """The layers whose unit responses are shown: the regularised layers of all runs, in order; if none,
    the ``fallback`` layers of highest mean DS in the first run with a dissection."""
    layers: list[str] = []
    for run in runs:
        layers += [layer for layer in run.regularised_layers if layer not in layers]
    if layers:
        return layers
    for run in runs:
        dissected = (run.dissection() or {}).get("layers") or {}
        if dissected:
            ranked = sorted(dissected, key=lambda n: -float(dissected[n].get("mean_ds", 0.0)))
            return ranked[:fallback]
    return []


def responses_section(runs: list[RunFolder], figures: FigureFolder, max_units: int = 16) -> str:
    """Unit response curves (R per bin against bin-centre depth) per run and layer of :func:`response_layers`."""
    with_dissection = [r for r in runs if r.dissection() is not None]
    if not with_dissection:
        return note("No unit responses: no run has a dissection (dissect/selectivity.npz).")
    layers = response_layers(runs)
    if not layers:
        return note("No unit responses: the dissections hold no layers.")
    parts = [note(f"{r.name}: no dissection.") for r in runs if r not in with_dissection]
    how = "regularised layers" if any(r.regularised_layers for r in runs) else "most selective layers (no run is regularised)"
    parts.append(f'<p class="info">Layers: {esc(", ".join(layers))} ({esc(how)}).</p>')
    for run in with_dissection:
        parts.append(f"<h3>{esc(run.name)}</h3>")
        if not (run.path / "dissect" / "selectivity.npz").is_file():
            parts.append(note(f"{run.name}: no dissect/selectivity.npz (the responses R are stored there)."))
            continue
        for layer in layers:
            sel = run.layer_selectivity(layer)
            if sel is None:
                parts.append(note(f"{run.name}: layer {layer} is not in its dissection."))
                continue
            mark = "regularised" if layer in run.regularised_layers else "not regularised"
            path = plot_unit_responses(sel, figures.new(f"responses_{run.name}_{layer}"), max_units=max_units)
            parts.append(figure(path, f"{run.name}, {layer} ({mark} in this run): response R against depth-bin centre "
                                      f"for the {min(max_units, sel.num_units)} units of highest depth selectivity (DS); "
                                      "red dot: preferred bin."))
    return "\n".join(parts)


ABLATION_MODES = {"zero": "output set to zero", "mean": "output set to its mean"}


BY_BIN_FOLDER = "ablate_by_bin"  # seldepth ablate --by-bin --out RUN/ablate_by_bin; experiments: RUN/ablate_by_bin/LAYER-GROUPING


def _by_bins(run: RunFolder) -> list[tuple[str, dict]]:
    """The run's ablations per depth range: ``ablate_by_bin/by_bin.json`` and ``ablate_by_bin/*/by_bin.json``,
    as (path relative to the run folder, content), in name order."""
    if getattr(run, "path", None) is None:  # a run described without a folder
        return []
    folder = Path(run.path) / BY_BIN_FOLDER
    paths = [folder / "by_bin.json", *sorted(folder.glob("*/by_bin.json"))]
    return [(str(p.relative_to(run.path)), read_json(p)) for p in paths if p.is_file()]


def by_bin_panel(run: RunFolder, where: str, result: dict, figures: FigureFolder) -> str:
    """The RMSE-excess heatmap of one of a run's ablations per depth range (``where``), with how to read it."""
    try:
        path = plot_by_bin(result, figures.new(f"by_bin_{run.name}"))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return note(f"{run.name}: {where} lacks what the heatmap needs ({exc!r}).")
    grouping = result.get("grouping")
    how = ("the bin the regulariser assigned them" if isinstance(grouping, str) and grouping.startswith("assigned")
           else "the depth range they prefer")
    caption = (f"{run.name}: units of {result.get('layer', '?')} grouped by {how}; each cell is "
               "how much more the RMSE on a depth range (column) rises when one group's units (row) are silenced than "
               "when as many random units are: red on the diagonal means units matter most for the depths they "
               f"prefer ({where}).")
    return figure(path, caption)


def ablation_section(runs: list[RunFolder], figures: FigureFolder) -> str:
    """Ablation curves of each run with ``ablation/ablation.json``, and its heatmaps per depth range
    (``ablate_by_bin/``)."""
    by_bins = {r.name: _by_bins(r) for r in runs}
    with_ablation = [r for r in runs if r.ablation() is not None or by_bins[r.name]]
    if not with_ablation:
        return note("No ablation in any run (ablation/ablation.json, ablate_by_bin/).")
    parts = [note(f"{r.name}: no ablation.") for r in runs if r not in with_ablation]
    for run in with_ablation:
        result = run.ablation()
        if result is not None:
            parts.append(_curves_panel(run, result, figures))
        for where, by_bin in by_bins[run.name]:
            parts.append(by_bin_panel(run, where, by_bin, figures))
    return "\n".join(parts)


def _curves_panel(run: RunFolder, result: dict, figures: FigureFolder) -> str:
    """The ablation curves of a run (``ablation/ablation.json``) with their caption."""
    try:
        path = plot_ablation(result, figures.new(f"ablation_{run.name}"))
    except (KeyError, TypeError, ValueError) as exc:
        return note(f"{run.name}: ablation/ablation.json lacks what the plot needs ({exc!r}).")
    base = result.get("baseline") or {}
    mode = ABLATION_MODES.get(result.get("mode"), f"mode {result.get('mode', '?')}")
    caption = (f"{run.name}: units of {result.get('layer', '?')} silenced ({mode}), most selective first, least "
               f"selective first, or at random; RMSE without ablation {_fmt(base.get('rmse'), 4)} m")
    gaps, fractions = result.get("top_minus_random_rmse") or [], result.get("fractions") or []
    if gaps and len(gaps) == len(fractions):
        caption += (f"; RMSE with the most selective units silenced minus RMSE with random units silenced, at "
                    f"{fractions[-1]:g} of the units: {_fmt(gaps[-1], 4)} m")
    caption += "."
    return figure(path, caption)


def training_section(runs: list[RunFolder], figures: FigureFolder) -> str:
    """Training curves of the runs with ``csv/metrics.csv``, overlaid."""
    logs = {r.name: r.metrics_log() for r in runs if r.metrics_log()}
    if not logs:
        return note("No training curves: no run has csv/metrics.csv.")
    parts = [note(f"{r.name}: no csv/metrics.csv.") for r in runs if r.name not in logs]
    colors = run_colors([r.name for r in runs])
    path = plot_training_curves(logs, figures.new("training_curves"), colors={n: colors[n] for n in logs})
    parts.append(figure(path, "Training curves from csv/metrics.csv: one colour per run; line style per layer."))
    return "\n".join(parts)


PRUNING_FILE = "pruning.json"  # an experiment folder's pruning summary (seldepth experiment, pruning: section)


def pruning_section(experiments: list[Path], figures: FigureFolder) -> str:
    """Each experiment's pruned models: RMSE change against FLOPs and against latency, per criterion, and the table."""
    parts = []
    for folder in experiments:
        path = Path(folder) / PRUNING_FILE
        rows = read_json(path).get("rows") if path.is_file() else None
        if not rows:
            continue
        parts.append(figure(plot_pruning(rows, figures.new("pruning_flops"), x="flops"),
                            f"{Path(folder).name}: test RMSE change against the FLOPs kept, one line per criterion "
                            f"(dashed: +2%)."))
        if any("latency_ratio" in r for r in rows):
            parts.append(figure(plot_pruning(rows, figures.new("pruning_latency"), x="latency"),
                                f"{Path(folder).name}: test RMSE change against the ONNX Runtime FP32 p50 latency "
                                f"ratio, timed side by side with the unpruned model."))
        head = ("<tr><th class=\"text\">pruned model</th><th class=\"text\">criterion</th><th>FLOPs kept</th>"
                "<th>parameters</th><th>RMSE cut</th><th>RMSE fine-tuned</th><th>vs source</th><th>latency ratio</th></tr>")
        body = "".join(
            f"<tr><td class=\"text\">{esc(r['run'])}</td><td class=\"text\">{esc(r['criterion'])}</td>"
            f"<td>{_fmt(r['achieved_flops_fraction'])}</td><td>{r['parameters_after']:,}</td>"
            f"<td>{_fmt(r['rmse_before_finetune'], 4)}</td><td>{_fmt(r['rmse'], 4)}</td>"
            f"<td>{r['rmse_change_pct']:+.1f}%</td><td>{_fmt(r.get('latency_ratio'), 2)}</td></tr>"
            for r in sorted(rows, key=lambda r: (r["source"], -r["flops_fraction"], r["criterion"])))
        parts.append(f"<table>{head}{body}</table>")
    return "\n".join(parts) or note("No pruning in any experiment folder (pruning.json).")


def render_page(title: str, info: str, sections: list[tuple[str, str, str, str]]) -> str:
    """The whole page: ``sections`` as (anchor, title, how to read it, body HTML)."""
    nav = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _, _ in sections)
    body = "\n".join(section(*s) for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n<p class=\"info\">{info}</p>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")


def generation_info(runs: list[RunFolder], experiments: list[Path] = ()) -> str:
    """HTML line: when and by what the page was generated, from which folders (and experiment folders)."""
    from seldepth import __version__

    folders = ", ".join(f"<code>{esc(r.name)}</code> = <code>{esc(r.path.resolve())}</code>" for r in runs)
    line = (f"Generated {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} by seldepth {esc(__version__)} "
            f"(torch {esc(torch.__version__)}) from {len(runs)} run folder{'s' if len(runs) != 1 else ''}: {folders}.")
    if experiments:
        line += (f" Experiment folder{'s' if len(experiments) != 1 else ''} "
                 + ", ".join(f"<code>{esc(Path(e).resolve())}</code>" for e in experiments)
                 + f": its runs in the order of its {EXPERIMENT_FILE} (without one: its run folders by name).")
    return line


def write_report(run_dirs: list, out: str | os.PathLike, samples: int = DEFAULT_REPORT_SAMPLES, progress: bool = True,
                 device="cpu") -> Path:
    """Write one self-contained HTML page comparing training run folders.

    The metrics table marks the best value of a column only where it beats the second best by
    more than one standard error of the per-image differences (results.json with per-image values,
    ``results[split]["per_image"][metric]``), else by more than 1 % of the second best's value (as
    ``seldepth train`` writes only the means); see :func:`seldepth.report.comparison.clear_best`.
    The settings table lists the config keys whose value differs between the runs.

    Args:
        run_dirs: run folders written by ``seldepth train`` (each with ``config.yaml`` and ``results.json``),
            or experiment folders (``seldepth experiment --out``), each standing for its runs in the
            experiment's order (:func:`expand_run_dirs`); both can be mixed.
        out: the HTML file to write (atomically: a temporary file, then a rename).
        samples: test images of the first run's data in the prediction grid (0: none).
        progress: show a progress bar over the sections.
        device: where the runs' models predict and show attention (``cpu``, ``cuda[:N]``, ``mps``, ``auto``).

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: before any work, for a run folder that is missing or lacks ``config.yaml`` or
            ``results.json`` (naming the folder and the file), a folder that is neither a run nor an
            experiment folder (naming it), unreadable config/results/experiment.json, or ``samples < 0``.
    """
    if int(samples) != samples or samples < 0:
        raise ValueError(f"samples: expected an integer >= 0, got {samples!r}")
    expanded = expand_run_dirs(run_dirs)
    experiments = list(dict.fromkeys(source for _, source in expanded if source is not None))
    runs = load_runs([run for run, _ in expanded])
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="seldepth-report-") as tmp:
        figures = FigureFolder(tmp)
        steps = [
            ("metrics", "Metrics", "One row per run.", lambda: metrics_table(runs)),
            ("settings", "Settings that differ",
             "One row per run, one column per configuration key whose value is not the same in all runs.",
             lambda: settings_table(runs)),
            ("predictions", "Sample predictions",
             ("Test images of the first run's data: RGB, ground truth, each run's prediction, then each run's "
              "absolute error; all depth panels share one colour range."),
             lambda: predictions_section(runs, int(samples), figures, progress, device)),
            ("attention", "Attention maps",
             "A(T) = sum over channels of |T| for the layers shown below, per run, on one test image (Jiao et al., ECCV 2018).",
             lambda: attention_section(runs, figures, device=device)),
            ("mean-ds", "Mean depth selectivity per layer",
             "Mean depth selectivity (DS) of each layer's units in each run's dissection, runs side by side.",
             lambda: mean_ds_section(runs, figures)),
            ("responses", "Unit response curves",
             ("Mean response R of single units per depth bin against the bin's centre depth; a selective unit "
              "peaks in one bin."),
             lambda: responses_section(runs, figures)),
            ("ablation", "Ablation",
             "RMSE as more units of a layer are silenced, most selective first, least selective first, or at random.",
             lambda: ablation_section(runs, figures)),
            ("training", "Training curves", "From each run's csv/metrics.csv.", lambda: training_section(runs, figures)),
            ("pruning", "Pruning",
             ("Each source model pruned by each criterion to each FLOPs fraction and fine-tuned: test RMSE against "
              "FLOPs and latency."),
             lambda: pruning_section(experiments, figures)),
        ]
        sections = []
        with tqdm(total=len(steps), desc="report", unit="section", disable=not progress) as bar:
            for anchor, title, how, build in steps:
                bar.set_postfix_str(anchor)
                sections.append((anchor, title, how, build()))
                bar.update()
    names = [r.name for r in runs]
    title = "seldepth report: " + (" vs ".join(names) if len(names) <= 4 else f"{len(names)} runs")
    return write_text_atomic(out, render_page(title, generation_info(runs, experiments), sections))
