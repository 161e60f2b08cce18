"""Plot of a unit ablation (:func:`seldepth.selectivity.ablation.ablate`): RMSE against the fraction ablated.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

STYLE = {"top": ("tab:red", "top-k (most selective)"), "random": ("tab:gray", "random-k"),
         "bottom": ("tab:blue", "bottom-k (least selective)")}


def plot_ablation(result: dict, path: str | os.PathLike) -> Path:
    """RMSE against the fraction of units ablated: top-k, random-k (mean, ± std band over seeds) and bottom-k.

    Args:
        result: the document of ``AblationResult.to_dict()`` (the content of ``ablation.json``).
        path: output image (PNG).

    Returns:
        ``path``.
    """
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for curve in ("top", "random", "bottom"):
        rows = result["curves"][curve]
        x = np.array([r["fraction"] for r in rows], dtype=float)
        y = np.array([r["rmse"] for r in rows], dtype=float)
        colour, label = STYLE[curve]
        if curve == "random":
            std = np.array([r.get("rmse_std", 0.0) for r in rows], dtype=float)
            ax.fill_between(x, y - std, y + std, color=colour, alpha=0.25, lw=0)
            label = f"{label} (mean ± std, {result['seeds']} seeds)"
        ax.plot(x, y, "o-", color=colour, lw=1.5, ms=4, label=label)
    base = result["baseline"]["rmse"]
    ax.axhline(base, color="black", lw=1, ls="--", label=f"baseline {base:.4f}")
    ax.plot([0.0], [base], "k*", ms=9)
    ax.set_xlabel("fraction of units ablated")
    ax.set_ylabel(f"RMSE (m), protocol {result['protocol']}")
    model = Path(str(result.get("info", {}).get("model", "") or "model")).name
    mode = {"zero": "outputs set to zero", "mean": "outputs set to their mean"}.get(result["mode"], f"mode {result['mode']}")
    ax.set_title(f"{model}: ablation of {result['layer']} ({result['num_units']} units, {mode})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path
