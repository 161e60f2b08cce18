"""Plots of a dissection (:class:`~seldepth.selectivity.dissect.DissectionResult`).

- :func:`plot_mean_ds`: per-layer mean DS bars.
- :func:`plot_unit_responses`: a grid of unit response curves of one layer (R against bin
  centre, as in the figures of You et al., ICCV 2021), units ordered by DS.
- :func:`plot_ds_histograms`: the distribution of DS in each layer.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seldepth.selectivity.dissect import DissectionResult, LayerSelectivity


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Render ``fig`` on matplotlib's Agg canvas and write it as a PNG at ``path`` (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def _grid_spacing(fig: Figure, rows: int) -> None:
    # fixed spacing: tight_layout on dozens of axes costs more than the drawing
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.6 / height, top=1 - 0.62 / height, wspace=0.35,
                        hspace=0.55 if rows > 1 else 0.2)


def plot_mean_ds(result: DissectionResult, path: str | os.PathLike) -> Path:
    """Bar chart of the mean DS of each layer, with the mean over layers as a line. Returns ``path``."""
    names = list(result.layers)
    values = [result.layers[n].mean_ds for n in names]
    fig = Figure(figsize=(max(6.0, 0.5 * len(names) + 2), 3.6))
    ax = fig.add_subplot()
    ax.bar(range(len(names)), values, color="tab:blue")
    ax.axhline(result.mean_ds, color="tab:red", lw=1, ls="--", label=f"mean of layers {result.mean_ds:.3f}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean depth selectivity (DS)")
    ax.set_ylim(0, max([*values, 0.01]) * 1.15)
    model = Path(str(result.info.get("model", "model"))).name
    ax.set_title(f"{model}: bins {result.bins.spec()}, {result.num_images} images", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_unit_responses(layer: LayerSelectivity, path: str | os.PathLike, max_units: int = 32, columns: int = 8) -> Path:
    """Grid of response curves R (mean activation) against depth-bin centre, one panel per unit.

    Units are ordered by DS (highest first); at most ``max_units`` are drawn. Empty bins are
    left out of the curve; the preferred bin is marked. Returns ``path``.
    """
    order = np.argsort(-layer.ds.numpy(), kind="stable")[:max_units]
    n = len(order)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    centres = layer.centres.numpy()
    nonempty = layer.counts.numpy() > 0
    resp = layer.responses.numpy()
    fig = Figure(figsize=(1.9 * cols, 1.55 * rows + 0.5))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, k in zip(axes.flat, order):
        ax.plot(centres[nonempty], resp[k, nonempty], lw=1, color="tab:blue")
        pb = int(layer.preferred_bin[k])
        ax.plot([centres[pb]], [resp[k, pb]], "o", ms=3, color="tab:red")
        ax.set_title(f"unit {k}  DS {float(layer.ds[k]):.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("depth (m)", fontsize=7)
    fig.suptitle(f"{layer.name}: response R vs depth bin, {n} of {layer.num_units} units by DS "
                 f"(N_b = {layer.num_bins}, mean DS {layer.mean_ds:.3f})", fontsize=9)
    _grid_spacing(fig, rows)
    return save_figure(fig, path)


def plot_ds_histograms(result: DissectionResult, path: str | os.PathLike, columns: int = 4) -> Path:
    """One histogram of the units' DS per layer (DS in [0, 1]). Returns ``path``."""
    names = list(result.layers)
    cols = min(columns, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(2.6 * cols, 1.9 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    bins = np.linspace(0, 1, 21)
    for ax, name in zip(axes.flat, names):
        layer = result.layers[name]
        ax.hist(np.clip(layer.ds.numpy(), 0, 1), bins=bins, color="tab:green")
        ax.axvline(layer.mean_ds, color="tab:red", lw=1)
        ax.set_title(f"{name} (K={layer.num_units}, mean {layer.mean_ds:.3f})", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle("distribution of depth selectivity (DS) per layer", fontsize=9)
    _grid_spacing(fig, rows)
    return save_figure(fig, path)


def save_selectivity_plots(result: DissectionResult, out_dir: str | os.PathLike, max_units: int = 32) -> list[Path]:
    """Write ``mean_ds.png``, ``ds_histograms.png`` and ``responses_<layer>.png`` per layer into ``out_dir``."""
    out = Path(out_dir)
    paths = [plot_mean_ds(result, out / "mean_ds.png"), plot_ds_histograms(result, out / "ds_histograms.png")]
    for name, layer in result.layers.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        paths.append(plot_unit_responses(layer, out / f"responses_{safe}.png", max_units=max_units))
    return paths
