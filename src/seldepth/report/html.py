"""One self-contained HTML page comparing training runs side by side (``seldepth report``).

The page needs nothing but itself: images are inline base64 PNG data URIs, the CSS is inline,
there is no script and no external resource. Sections:

1. metrics: a table with one row per run (model, regularised layers, lambda, bins, test
   RMSE / AbsRel / delta1, val RMSE, train time, overall mean DS of the dissection);
2. sample predictions on the first run's test split: RGB, ground truth, each run's
   prediction and |error|, one fixed depth colour range with a colour bar;
3. per-layer mean DS of each run's dissection, grouped bars, regularised layers marked;
4. unit response curves (R per bin against bin-centre depth) of the regularised layers
   (if no run regularises any, the two most selective layers of the first dissection);
5. ablation curves of the runs that have them;
6. training curves from ``csv/metrics.csv``, runs overlaid.

A section without data says so in one line. A run folder is what ``seldepth train`` writes
(see :mod:`seldepth.training`); ``config.yaml`` and ``results.json`` are required,
``model.safetensors``, ``csv/metrics.csv``, ``dissect/selectivity.{json,npz}`` (written by
``seldepth dissect --out RUN/dissect``) and ``ablation/ablation.json`` are optional.

Example:
    >>> write_report(["runs/baseline", "runs/sel_enc7"], "report.html", samples=4)
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
from seldepth.report.run_plots import plot_mean_ds_comparison, plot_prediction_grid, plot_training_curves, run_colors
from seldepth.report.selectivity_plots import plot_unit_responses
from seldepth.training.run_folder import RunFolder

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


def check_run_dirs(run_dirs: list) -> list[Path]:
    """The run folders as paths, after checking that each exists and holds ``config.yaml`` and ``results.json``.

    Raises:
        ValueError: for no folder, or naming the first folder that is missing or lacks a required file.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise ValueError("run_dirs: expected at least one run folder")
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


METRIC_COLUMNS = (  # (title, split, key, better: -1 lower, +1 higher)
    ("test RMSE (m)", "test", "rmse", -1), ("test AbsRel", "test", "abs_rel", -1), ("test &delta;1", "test", "delta1", 1),
    ("val RMSE (m)", "val", "rmse", -1))


def metrics_table(runs: list[RunFolder]) -> str:
    """The metrics table: one row per run (``<table id="metrics">``); the best value of a metric column is marked."""
    best = {}
    for _, split, key, sign in METRIC_COLUMNS:
        values = [_metric(r, split, key) for r in runs]
        finite = [float(v) for v in values if v is not None and np.isfinite(float(v))]
        if len(runs) > 1 and finite:
            best[(split, key)] = (max if sign > 0 else min)(finite)
    head = ("<tr><th class=\"text\">run</th><th class=\"text\">model</th><th class=\"text\">data (test split)</th>"
            "<th class=\"text\">regularised layers</th><th>&lambda;</th><th class=\"text\">bins</th>"
            + "".join(f"<th>{title}</th>" for title, *_ in METRIC_COLUMNS)
            + "<th>epochs</th><th>train time</th><th>mean DS</th></tr>")
    rows = []
    for run in runs:
        sel = run.config_section("selectivity")
        layers = run.regularised_layers
        cells = [f'<td class="text">{esc(run.name)}</td>', f'<td class="text">{esc(run.model_name)}</td>',
                 f'<td class="text">{esc(run.data_spec or "?")} ({esc(run.test_split)})</td>',
                 f'<td class="text">{esc(", ".join(layers)) if layers else "none"}</td>',
                 f"<td>{esc(sel.get('weight')) if layers else MISSING}</td>",
                 f'<td class="text">{esc(sel.get("bins", "?")) if layers else MISSING}</td>']
        for _, split, key, _ in METRIC_COLUMNS:
            v = _metric(run, split, key)
            mark = ' class="best"' if v is not None and best.get((split, key)) == float(v) else ""
            cells.append(f"<td{mark}>{_fmt(v, 4)}</td>")
        dissection = run.dissection()
        cells += [f"<td>{esc(run.results['epochs']) if 'epochs' in run.results else MISSING}</td>",
                  f"<td>{format_duration(run.results.get('train_seconds'))}</td>",
                  f"<td>{_fmt((dissection or {}).get('mean_ds'))}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    protocols = sorted({str(((r.results.get("test") or {}).get("protocol") or {}).get("name", "?")) for r in runs})
    caption = (f"Test metrics under protocol {', '.join(protocols)}; val RMSE of the selected (best) checkpoint; "
               "mean DS: mean over the dissected layers (dissect/selectivity.json), a dash without a dissection; "
               "bold: best of the runs.")
    return (f'<div class="wide"><table id="metrics">\n<thead>{head}</thead>\n<tbody>\n' + "\n".join(rows)
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
        from seldepth.models.model_file import load_model

        model = load_model(run.model_file, device=device).eval()
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
    from seldepth.models.model_file import load_model
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
        model = load_model(run.model_file, device=device)
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
    details = "; ".join(f"{r.name}: {r.dissection().get('num_images', '?')} images, overall mean DS "
                        f"{_fmt(r.dissection().get('mean_ds'))}" for r in with_dissection)
    return "\n".join([*notes, figure(path, f"Mean depth selectivity per layer. {details}.")])


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
                                      f"for the {min(max_units, sel.num_units)} units of highest DS; red dot: preferred bin."))
    return "\n".join(parts)


def ablation_section(runs: list[RunFolder], figures: FigureFolder) -> str:
    """Ablation curves of each run with ``ablation/ablation.json``."""
    with_ablation = [r for r in runs if r.ablation() is not None]
    if not with_ablation:
        return note("No ablation in any run (ablation/ablation.json).")
    parts = [note(f"{r.name}: no ablation.") for r in runs if r not in with_ablation]
    for run in with_ablation:
        result = run.ablation()
        try:
            path = plot_ablation(result, figures.new(f"ablation_{run.name}"))
        except (KeyError, TypeError, ValueError) as exc:
            parts.append(note(f"{run.name}: ablation/ablation.json lacks what the plot needs ({exc!r})."))
            continue
        base = result.get("baseline") or {}
        caption = (f"{run.name}: units of {result.get('layer', '?')} ablated ({result.get('mode', '?')}) in order of DS "
                   f"(top, bottom) or at random; baseline RMSE {_fmt(base.get('rmse'), 4)} m")
        gaps, fractions = result.get("top_minus_random_rmse") or [], result.get("fractions") or []
        if gaps and len(gaps) == len(fractions):
            caption += f"; top minus random RMSE at fraction {fractions[-1]:g}: {_fmt(gaps[-1], 4)} m"
        caption += "."
        parts.append(figure(path, caption))
    return "\n".join(parts)


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


def render_page(title: str, info: str, sections: list[tuple[str, str, str, str]]) -> str:
    """The whole page: ``sections`` as (anchor, title, how to read it, body HTML)."""
    nav = " ".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t, _, _ in sections)
    body = "\n".join(section(*s) for s in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n<p class=\"info\">{info}</p>\n<nav>{nav}</nav>\n{body}\n</body>\n</html>\n")


def generation_info(runs: list[RunFolder]) -> str:
    """HTML line: when and by what the page was generated, from which folders."""
    from seldepth import __version__

    folders = ", ".join(f"<code>{esc(r.name)}</code> = <code>{esc(r.path.resolve())}</code>" for r in runs)
    return (f"Generated {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))} by seldepth {esc(__version__)} "
            f"(torch {esc(torch.__version__)}) from {len(runs)} run folder{'s' if len(runs) != 1 else ''}: {folders}.")


def write_report(run_dirs: list, out: str | os.PathLike, samples: int = DEFAULT_REPORT_SAMPLES, progress: bool = True,
                 device="cpu") -> Path:
    """Write one self-contained HTML page comparing training run folders.

    Args:
        run_dirs: run folders written by ``seldepth train`` (each with ``config.yaml`` and ``results.json``).
        out: the HTML file to write (atomically: a temporary file, then a rename).
        samples: test images of the first run's data in the prediction grid (0: none).
        progress: show a progress bar over the sections.
        device: where the runs' models predict and show attention (``cpu``, ``cuda[:N]``, ``mps``, ``auto``).

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: before any work, for a run folder that is missing or lacks ``config.yaml`` or
            ``results.json`` (naming the folder and the file), unreadable config/results, or ``samples < 0``.
    """
    if int(samples) != samples or samples < 0:
        raise ValueError(f"samples: expected an integer >= 0, got {samples!r}")
    runs = load_runs(run_dirs)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="seldepth-report-") as tmp:
        figures = FigureFolder(tmp)
        steps = [
            ("metrics", "Metrics", "One row per run.", lambda: metrics_table(runs)),
            ("predictions", "Sample predictions",
             ("Test images of the first run's data: RGB, ground truth, each run's prediction, then each run's "
              "absolute error; all depth panels share one colour range."),
             lambda: predictions_section(runs, int(samples), figures, progress, device)),
            ("attention", "Attention maps",
             "A(T) = sum over channels of |T| for the layers shown below, per run, on one test image (Jiao et al., ECCV 2018).",
             lambda: attention_section(runs, figures, device=device)),
            ("mean-ds", "Mean depth selectivity per layer",
             "Mean DS of each layer's units in each run's dissection, runs side by side.",
             lambda: mean_ds_section(runs, figures)),
            ("responses", "Unit response curves",
             ("Mean response R of single units per depth bin against the bin's centre depth; a selective unit "
              "peaks in one bin."),
             lambda: responses_section(runs, figures)),
            ("ablation", "Ablation",
             "Metrics as more units are silenced, most selective first, least selective first, or at random.",
             lambda: ablation_section(runs, figures)),
            ("training", "Training curves", "From each run's csv/metrics.csv.", lambda: training_section(runs, figures)),
        ]
        sections = []
        with tqdm(total=len(steps), desc="report", unit="section", disable=not progress) as bar:
            for anchor, title, how, build in steps:
                bar.set_postfix_str(anchor)
                sections.append((anchor, title, how, build()))
                bar.update()
    names = [r.name for r in runs]
    title = "seldepth report: " + (" vs ".join(names) if len(names) <= 4 else f"{len(names)} runs")
    return write_text_atomic(out, render_page(title, generation_info(runs), sections))
