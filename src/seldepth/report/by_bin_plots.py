"""Plot of an ablation per depth range (:func:`seldepth.selectivity.ablation_by_bin.ablate_by_bin`).

Left: the G x G heatmap of the RMSE excess (rows: the depth group whose units are ablated,
columns: the ground-truth depth group scored), a diverging colour map centred at 0, empty rows
grey and hatched. Right: the two diagonal-dominance figures of the ablation beside the random
control's mean ± std, with the chance level of the first.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend change); the PNG is
written atomically.

Example:
    >>> save_by_bin(ablate_by_bin(model, dataset, "enc_7"), "runs/ablate")   # by_bin.json, .csv, .png
    >>> plot_by_bin(json.loads(Path("runs/ablate/by_bin.json").read_text()), "by_bin.png")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from seldepth.atomic import atomic_path
from seldepth.selectivity.ablation_by_bin import ByBinAblation


def _array(values) -> np.ndarray:
    """Nested lists with None (JSON's null) as a float array with NaN."""
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


def _value(v) -> float:
    return float("nan") if v is None else float(v)


def plot_by_bin(result: dict, path: str | os.PathLike, metric: str = "rmse") -> Path:
    """The excess heatmap of ``metric`` and the diagonal-dominance summary of an ablation per depth range.

    Args:
        result: the document of ``ByBinAblation.to_dict()`` (the content of ``by_bin.json``).
        path: output image (PNG).
        metric: ``rmse`` or ``abs_rel``.

    Returns:
        ``path``.

    Example:
        >>> plot_by_bin(result.to_dict(), "runs/ablate/by_bin.png", metric="abs_rel")
    """
    excess = _array(result["excess"][metric])
    labels = list(result["group_labels"])
    sizes = list(result["units_per_group"])
    g = len(labels)
    dom = result["dominance"][metric]
    control = dom["control"]
    unit = " m" if metric == "rmse" else ""
    name = {"rmse": "RMSE", "abs_rel": "AbsRel"}.get(metric, metric)

    fig = Figure(figsize=(7.6 + 0.55 * g, 3.0 + 0.45 * g))
    grid = fig.add_gridspec(2, 4, width_ratios=(3.2, 0.12, 0.7, 1.2), hspace=0.75, wspace=0.06)
    ax = fig.add_subplot(grid[:, 0])
    finite = excess[np.isfinite(excess)]
    span = float(np.abs(finite).max()) if finite.size else 0.0
    span = span if span > 0 else 1e-9
    cmap = colormaps["RdBu_r"].with_extremes(bad="0.85")
    image = ax.imshow(np.ma.masked_invalid(excess), cmap=cmap, norm=TwoSlopeNorm(0.0, -span, span), aspect="auto",
                      interpolation="nearest")
    for row in range(g):
        if not np.isfinite(excess[row]).any():
            ax.add_patch(Rectangle((-0.5, row - 0.5), g, 1, facecolor="0.85", edgecolor="0.6", hatch="//", lw=0))
    if g <= 10:
        for row in range(g):
            for col in range(g):
                v = excess[row, col]
                if np.isfinite(v):
                    ax.text(col, row, f"{v:+.3f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(v) > 0.6 * span else "black")
    ax.set_xticks(range(g), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(g), [f"{lab} ({n})" for lab, n in zip(labels, sizes)], fontsize=8)
    ax.set_xlabel("ground-truth depth group scored (m)")
    ax.set_ylabel("depth group of the ablated units, m (units in it)")
    colorbar = fig.colorbar(image, cax=fig.add_subplot(grid[:, 1]))
    colorbar.set_label(f"{name} excess over as many random units" + (" (m)" if unit else ""), fontsize=8)
    colorbar.ax.tick_params(labelsize=7)
    model = Path(str(result.get("info", {}).get("model", "") or "model")).name
    fig.suptitle(f"{model}: ablation per depth range of {result['layer']} ({result['num_units']} units, "
                 f"{result['mode']}; units grouped by {result['grouping']} bin)\n"
                 f"largest excess on or next to the diagonal in {_value(dom['near_diagonal']):.2f} of the rows (chance "
                 f"{_value(dom['chance']):.2f}, random {_value(control['near_diagonal_mean']):.2f} ± "
                 f"{_value(control['near_diagonal_std']):.2f}); diagonal - off-diagonal excess "
                 f"{_value(dom['contrast']):+.4f}{unit} (random {_value(control['contrast_mean']):+.4f} ± "
                 f"{_value(control['contrast_std']):.4f})", fontsize=8)

    panels = (("near_diagonal", "share of rows peaking\nat |g - s| <= 1", dom.get("chance")),
              ("contrast", "diagonal - off-diagonal\nexcess" + (" (m)" if unit else ""), None))
    for i, (key, title, chance) in enumerate(panels):
        small = fig.add_subplot(grid[i, 3])
        mean, std = _value(control[f"{key}_mean"]), _value(control[f"{key}_std"])
        small.bar([0], [_value(dom[key])], color="tab:red", width=0.6)
        small.errorbar([1], [mean], yerr=[0.0 if not np.isfinite(std) else std], fmt="o", color="tab:gray", capsize=4)
        per_seed = [_value(v) for v in control.get(f"{key}_per_seed", [])]
        small.plot([1] * len(per_seed), per_seed, ".", color="0.5", ms=4)
        if chance is not None and np.isfinite(_value(chance)):
            small.axhline(_value(chance), color="black", ls="--", lw=0.8, label="chance")
            small.legend(fontsize=7, loc="best")
        small.axhline(0.0, color="0.6", lw=0.6)
        small.set_xticks([0, 1], ["ablated\ngroups", f"random\n({result['seeds']} seeds)"], fontsize=7)
        small.set_xlim(-0.6, 1.6)
        small.set_title(title, fontsize=8)
        small.tick_params(axis="y", labelsize=7)
    fig.subplots_adjust(left=0.16, right=0.98, bottom=0.2, top=0.84)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def save_by_bin(result: ByBinAblation, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``by_bin.json`` and ``by_bin.csv`` (:meth:`ByBinAblation.save`) and the heatmap ``by_bin.png`` into ``out_dir``.

    Returns:
        {"json": path, "csv": path, "png": path}.
    """
    paths = result.save(out_dir)
    paths["png"] = plot_by_bin(result.to_dict(), Path(out_dir) / "by_bin.png")
    return paths
