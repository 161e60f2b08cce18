"""Plots comparing training runs (the figures of ``seldepth report``).

- :func:`plot_training_curves`: train task loss per step (the selectivity term apart), val RMSE, val mean DS and train assigned DS, runs overlaid.
- :func:`plot_prediction_grid`: RGB, ground truth, each run's prediction and |error|, one fixed depth range.
- :func:`plot_mean_ds_comparison`: per-layer mean DS, grouped bars of several runs, regularised layers marked.

Like :mod:`seldepth.report.selectivity_plots`, figures are drawn on matplotlib's Agg canvas
directly (no pyplot, no global backend change); each ``plot_*`` writes a PNG and returns its path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from seldepth.prediction.colormap import colorize_depth, depth_map_2d
from seldepth.report.selectivity_plots import save_figure

DEPTH_CMAP = "turbo"  # colorize_depth's default
ERROR_CMAP = "magma"


def run_colors(names: list[str]) -> dict[str, tuple]:
    """One colour per run (tab10, cycling), the same in every figure of a report."""
    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def series(log: dict[str, np.ndarray], column: str, x: str = "step") -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the rows where both ``x`` and ``column`` are filled; empty arrays if either column is missing."""
    if column not in log or x not in log:
        return np.zeros(0), np.zeros(0)
    xs, ys = log[x], log[column]
    ok = np.isfinite(xs) & np.isfinite(ys)
    return xs[ok], ys[ok]


def task_loss_series(log: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, task loss, selectivity term) per logged training step.

    ``train/loss`` is the task loss plus the selectivity regulariser's ``train/l_assign`` (negative: it
    rewards selectivity), so the task loss is their difference on the rows where both are logged; a run
    without the regulariser has a zero term. The total alone makes a regularised run look better trained.
    """
    x, total = series(log, "train/loss")
    if "train/l_assign" not in log:
        return x, total, np.zeros_like(total)
    steps, loss, assign = log["step"], log["train/loss"], log["train/l_assign"]
    ok = np.isfinite(steps) & np.isfinite(loss) & np.isfinite(assign)
    return steps[ok], loss[ok] - assign[ok], assign[ok]


def _smooth(y: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, y[0]), y])
    return np.convolve(padded, kernel, mode="valid")


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_training_curves(logs: dict[str, dict[str, np.ndarray]], path: str | os.PathLike,
                         colors: dict[str, tuple] | None = None) -> Path:
    """Four panels, runs overlaid: the task loss per step (raw, faint, and a moving average; the selectivity
    term of regularised runs apart, dashed on a second axis: :func:`task_loss_series`), ``val/rmse`` per epoch, ``val/ds/LAYER`` per epoch and ``train/ds_assigned/LAYER`` per step (one line style per layer).

    Args:
        logs: {run name: columns of :func:`seldepth.training.run_folder.read_metrics_csv`}.
        path: output PNG.
        colors: {run name: colour}; default :func:`run_colors`.

    Panels without data say so. Returns ``path``.
    """
    colors = colors or run_colors(list(logs))
    styles = ["-", "--", ":", "-."]
    fig = Figure(figsize=(11.0, 7.0))
    (ax_loss, ax_rmse), (ax_ds, ax_assigned) = fig.subplots(2, 2)

    drawn, ax_assign, positive = False, None, True
    for name, log in logs.items():
        x, y, assign = task_loss_series(log)
        if len(x):
            ax_loss.plot(x, y, lw=0.6, alpha=0.3, color=colors[name])
            ax_loss.plot(x, _smooth(y, max(1, len(y) // 25)), lw=1.4, color=colors[name], label=name)
            positive &= bool(np.nanmin(y) > 0)
            drawn = True
        if len(x) and np.any(assign != 0):
            ax_assign = ax_assign or ax_loss.twinx()
            ax_assign.plot(x, _smooth(assign, max(1, len(assign) // 25)), ls="--", lw=1.0, color=colors[name],
                           label=f"{name} selectivity term")
    if drawn:
        ax_loss.set(xlabel="training step", ylabel="task loss",
                    title="task loss without the selectivity term (faint: per step; line: moving average)")
        if positive:
            ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=7, loc="upper right")
        if ax_assign is not None:
            ax_assign.set_ylabel("selectivity term (dashed)", fontsize=8)
            ax_assign.tick_params(labelsize=7)
            ax_assign.legend(fontsize=7, loc="center right")
    else:
        _no_data(ax_loss, "no training loss logged (train/loss)")

    drawn = False
    for name, log in logs.items():
        x, y = series(log, "val/rmse", x="epoch")
        if len(x):
            ax_rmse.plot(x, y, "o-", ms=3, lw=1.2, color=colors[name], label=name)
            drawn = True
    if drawn:
        ax_rmse.set(xlabel="epoch", ylabel="RMSE (m)", title="validation RMSE")
        ax_rmse.legend(fontsize=7)
    else:
        _no_data(ax_rmse, "no validation RMSE logged (val/rmse)")

    for ax, prefix, x_col, title, ylabel in (
            (ax_ds, "val/ds/", "epoch", "validation mean depth selectivity (DS) per logged layer", "mean DS"),
            (ax_assigned, "train/ds_assigned/", "step", "training DS towards the assigned bins", "DS per batch")):
        layers = sorted({c[len(prefix):] for log in logs.values() for c in log if c.startswith(prefix)})
        drawn = False
        for name, log in logs.items():
            for li, layer in enumerate(layers):
                x, y = series(log, prefix + layer, x=x_col)
                if len(x):
                    marker = "o" if x_col == "epoch" else None
                    if x_col == "step":
                        y = _smooth(y, max(1, len(y) // 25))
                    ax.plot(x, y, ls=styles[li % len(styles)], marker=marker, ms=3, lw=1.2, color=colors[name],
                            label=f"{name} {layer}")
                    drawn = True
        if drawn:
            ax.set(xlabel="training step" if x_col == "step" else x_col, ylabel=ylabel, title=title)
            ax.legend(fontsize=7)
        else:
            _no_data(ax, f"nothing logged ({prefix}*)")
    for ax in (ax_loss, ax_rmse, ax_ds, ax_assigned):
        ax.title.set_fontsize(9)
        ax.tick_params(labelsize=7)
        ax.xaxis.label.set_fontsize(8)
        ax.yaxis.label.set_fontsize(8)
    fig.tight_layout()
    return save_figure(fig, path)


def depth_limits(depths: list[np.ndarray], valids: list[np.ndarray], percentiles=(1.0, 99.0)) -> tuple[float, float]:
    """One (vmin, vmax) in metres for several depth maps: percentiles of all their valid pixels."""
    values = np.concatenate([np.asarray(d, dtype=np.float64)[np.asarray(v, bool)].ravel() for d, v in zip(depths, valids)])
    values = values[np.isfinite(values) & (values > 0)]
    if not values.size:
        return 0.0, 1.0
    lo, hi = np.percentile(values, percentiles)
    return float(lo), float(max(hi, lo + 1e-3))


def plot_prediction_grid(images: list[np.ndarray], depths: list[np.ndarray], valids: list[np.ndarray],
                         predictions: dict[str, list[np.ndarray]], path: str | os.PathLike,
                         depth_range: tuple[float, float] | None = None, titles: list[str] | None = None) -> Path:
    """A row per image: RGB, ground truth, then each run's prediction and its |error|.

    All depth panels share one colour range (``depth_range``, default :func:`depth_limits` of the
    ground truth) and all error panels another (0 to the 98th percentile of all valid errors);
    a colour bar for each. Errors are shown on valid ground-truth pixels only (others black);
    each prediction's title gives its RMSE over those pixels.

    Args:
        images: (3, H, W) RGB in [0, 1] per sample.
        depths: (H, W) ground truth, metres, per sample.
        valids: (H, W) bool per sample.
        predictions: {run name: [(H, W) depth in metres per sample]}.
        path: output PNG.
        depth_range: (vmin, vmax) metres.
        titles: a label per sample (row).

    Returns ``path``.
    """
    n = len(images)
    if n == 0 or not (len(depths) == len(valids) == n) or any(len(p) != n for p in predictions.values()):
        raise ValueError(f"plot_prediction_grid: expected the same number (> 0) of images, depths, valids and "
                         f"predictions per run, got {n}, {len(depths)}, {len(valids)}, "
                         f"{ {k: len(v) for k, v in predictions.items()} }")
    # leading axes of size 1 only (np.squeeze would also flatten a 1-pixel-high or -wide map)
    depths = [depth_map_2d(np.asarray(d, dtype=np.float64), "depths") for d in depths]
    valids = [depth_map_2d(np.asarray(v, dtype=bool), "valids") & np.isfinite(d) & (d > 0) for d, v in zip(depths, valids)]
    vmin, vmax = depth_range or depth_limits(depths, valids)
    errors = {name: [np.where(v, np.abs(depth_map_2d(np.asarray(p, dtype=np.float64), name) - d), np.nan)
                     for p, d, v in zip(preds, depths, valids)] for name, preds in predictions.items()}
    all_err = np.concatenate([e[np.isfinite(e)].ravel() for errs in errors.values() for e in errs] or [np.zeros(1)])
    emax = float(max(np.percentile(all_err, 98) if all_err.size else 1.0, 1e-3))

    cols = 2 + 2 * len(predictions)
    height = 1.9 * n + 1.2
    fig = Figure(figsize=(2.3 * cols, height))
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        row = axes[i]
        row[0].imshow(np.clip(np.asarray(images[i], dtype=np.float32).transpose(1, 2, 0), 0, 1))
        row[0].set_title(titles[i] if titles else "RGB", fontsize=7)
        row[1].imshow(colorize_depth(np.where(valids[i], depths[i], 0), vmin, vmax, cmap=DEPTH_CMAP))
        row[1].set_title("ground truth", fontsize=7)
        for j, (name, preds) in enumerate(predictions.items()):
            pred = depth_map_2d(np.asarray(preds[i], dtype=np.float64), name)
            err = errors[name][i]
            rmse = float(np.sqrt(np.nanmean(err ** 2))) if np.isfinite(err).any() else float("nan")
            row[2 + j].imshow(colorize_depth(pred, vmin, vmax, cmap=DEPTH_CMAP))
            row[2 + j].set_title(f"{name}\nRMSE {rmse:.3f} m", fontsize=7)
            err_img = colorize_depth(np.where(np.isfinite(err), np.maximum(err, 1e-9), 0), 0.0, emax, cmap=ERROR_CMAP)
            row[2 + len(predictions) + j].imshow(err_img)
            row[2 + len(predictions) + j].set_title(f"{name}\n|error|", fontsize=7)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.45 / height, bottom=0.95 / height, wspace=0.04, hspace=0.35)
    bar_h = 0.13 / height
    cax = fig.add_axes((0.08, 0.48 / height, 0.38, bar_h))
    fig.colorbar(ScalarMappable(Normalize(vmin, vmax), DEPTH_CMAP), cax=cax, orientation="horizontal")
    cax.set_xlabel("depth (m): ground truth and predictions, one range", fontsize=7)
    cax.tick_params(labelsize=6)
    eax = fig.add_axes((0.54, 0.48 / height, 0.38, bar_h))
    fig.colorbar(ScalarMappable(Normalize(0.0, emax), ERROR_CMAP), cax=eax, orientation="horizontal")
    eax.set_xlabel("|prediction - ground truth| (m), valid pixels; black: no ground truth", fontsize=7)
    eax.tick_params(labelsize=6)
    return save_figure(fig, path)


def plot_mean_ds_comparison(mean_ds: dict[str, dict[str, float]], path: str | os.PathLike,
                            regularised: dict[str, list[str]] | None = None,
                            colors: dict[str, tuple] | None = None) -> Path:
    """Grouped bars of each layer's mean DS, one bar per run.

    A run's bar is hatched where that run regularised the layer; the label of a layer that
    any run regularised is marked with ``*``.

    Args:
        mean_ds: {run name: {layer: mean DS}}; layers in first-seen order.
        path: output PNG.
        regularised: {run name: regularised layers}.
        colors: {run name: colour}.

    Returns ``path``.
    """
    regularised = regularised or {}
    colors = colors or run_colors(list(mean_ds))
    layers: list[str] = []
    for values in mean_ds.values():
        layers += [layer for layer in values if layer not in layers]
    marked = {layer for name in mean_ds for layer in regularised.get(name, [])}
    runs = list(mean_ds)
    width = 0.8 / max(len(runs), 1)
    fig = Figure(figsize=(max(6.0, 0.45 * len(layers) * max(1, len(runs) ** 0.5) + 2), 3.8))
    ax = fig.add_subplot()
    x = np.arange(len(layers))
    top = 0.01
    for r, name in enumerate(runs):
        values = np.array([mean_ds[name].get(layer, np.nan) for layer in layers])
        hatches = ["//" if layer in regularised.get(name, []) else "" for layer in layers]
        bars = ax.bar(x - 0.4 + width * (r + 0.5), np.nan_to_num(values), width, color=colors[name], label=name,
                      edgecolor="black", linewidth=0.4)
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
        top = max(top, float(np.nanmax(values, initial=0.0)))
    labels = [f"{layer} *" if layer in marked else layer for layer in layers]
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=8)
    for tick, layer in zip(ax.get_xticklabels(), layers):
        if layer in marked:
            tick.set_color("tab:red")
            tick.set_fontweight("bold")
    ax.set_ylim(0, top * 1.18)
    ax.set_ylabel("mean depth selectivity (DS)")
    ax.set_title("mean DS per layer (dissection); * and hatching: regularised layer", fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    if marked:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//"))
        names.append("regularised in that run")
    ax.legend(handles, names, fontsize=7, loc="upper left", ncol=min(4, len(handles)))
    fig.tight_layout()
    return save_figure(fig, path)
