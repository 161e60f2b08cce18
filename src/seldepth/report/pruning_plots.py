"""Curves of a pruning experiment: test RMSE against FLOPs and against ONNX Runtime latency, one line per criterion.

Each source model (an unpruned run) is a panel; its pruned and fine-tuned models are the points, at their FLOPs
fraction (or latency ratio) and their RMSE change against the source. Drawn with matplotlib's Agg canvas directly
(no pyplot, no global backend change).
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

CRITERION_STYLE = {"ds": ("tab:blue", "o", "ds (least selective first)"),
                   "ds-inverse": ("tab:red", "s", "ds-inverse (most selective first)"),
                   "l1": ("tab:green", "^", "l1 (smallest filter norm first)"),
                   "random": ("tab:gray", "D", "random")}
AXES = {"flops": ("achieved_flops_fraction", "FLOPs kept (fraction of the unpruned model's)"),
        "latency": ("latency_ratio", "ONNX Runtime FP32 p50 latency / unpruned")}


def plot_pruning(rows: list[dict], path: str | os.PathLike, x: str = "flops", budget_pct: float = 2.0) -> Path:
    """Test RMSE change (%) against the FLOPs fraction (``x="flops"``) or the latency ratio (``x="latency"``).

    Args:
        rows: the rows of ``pruning.json`` (one per pruned model: ``source``, ``criterion``, ``rmse_change_pct``
            and the x column; rows without a value on the x axis are left out).
        path: output image (PNG).
        x: ``flops`` or ``latency``.
        budget_pct: a dashed line at this RMSE change (the accuracy budget).

    Returns:
        ``path``.

    Raises:
        ValueError: naming ``x``.
    """
    if x not in AXES:
        raise ValueError(f"x must be one of {', '.join(AXES)}, got {x!r}")
    key, label = AXES[x]
    sources = list(dict.fromkeys(r["source"] for r in rows))
    fig = Figure(figsize=(4.2 * max(1, len(sources)), 3.8))
    axes = [fig.add_subplot(1, max(1, len(sources)), i + 1) for i in range(max(1, len(sources)))]
    for ax, source in zip(axes, sources, strict=False):
        for criterion, (colour, marker, name) in CRITERION_STYLE.items():
            points = [(r[key], r["rmse_change_pct"]) for r in rows
                      if r["source"] == source and r["criterion"] == criterion and r.get(key) is not None]
            if points:
                points = sorted([*points, (1.0, 0.0)])  # the unpruned model: x = 1, no change
                ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, color=colour, lw=1.3, ms=5,
                        label=name)
        ax.axhline(budget_pct, color="k", ls="--", lw=0.8)
        ax.axvline(1.0, color="k", ls=":", lw=0.6)
        ax.set_title(source, fontsize=9)
        ax.set_xlabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test RMSE change vs unpruned (%)", fontsize=8)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    FigureCanvasAgg(fig).print_png(str(path))
    return path
