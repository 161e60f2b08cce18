"""Active learning (uncertainty sampling, cf. Beluch et al., CVPR 2018): rank unlabelled images by the predicted depth's uncertainty and choose which to label.

Methods:

* ``mc-dropout``: Monte-Carlo dropout. Channel dropout (``p``) is applied to the outputs of the
  model's decoder layers (its selectivity layers named ``dec_*``; for a model without them, its
  last three) and the image is predicted ``passes`` times; no retraining, so it works on any
  trained model.
* ``ensemble``: several model files (e.g. the same recipe with other seeds) predict the image.
* ``random``: a seeded random order, the baseline.

An image's uncertainty is the mean over its pixels of the predictions' standard deviation
divided by their mean (relative, so far pixels do not dominate). The ``budget`` most uncertain
images are chosen; the chosen list is a text file of ``index<TAB>path`` lines (the index into
the pool's split, which ``data.train_subset`` of a training config reads) and ``scores.csv``
ranks the whole pool.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from seldepth.atomic import write_text_atomic
from seldepth.data.collate import collate_samples
from seldepth.data.subsets import reader_and_indices
from seldepth.defaults import DEFAULT_MC_DROPOUT, DEFAULT_MC_PASSES
from seldepth.inference import predict_depth

METHODS = ("mc-dropout", "ensemble", "random")


def dropout_layers(model: torch.nn.Module) -> list[str]:
    """The module paths that MC dropout perturbs by default: the decoder's selectivity layers, else the last three."""
    layers = dict(getattr(model, "selectivity_layers", {}) or {})
    if not layers:
        raise ValueError(f"{getattr(model, 'name', type(model).__name__)} names no layers for MC dropout")
    decoder = [path for name, path in layers.items() if name.startswith("dec_")]
    return decoder or list(layers.values())[-3:]


def _whole(value, name: str, what: str) -> int:
    """``value`` as an int >= 1; ValueError naming ``name`` otherwise (bools and fractions refused)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value != int(value) or value < 1):
        raise ValueError(f"{name}: must be a whole number >= 1 ({what}), got {value!r}")
    return int(value)


def check_selection_args(passes=DEFAULT_MC_PASSES, p: float = DEFAULT_MC_DROPOUT, budget=None,
                         batch_size=1) -> None:
    """Check the arguments of an uncertainty selection before any model runs or data is read.

    Raises:
        ValueError: naming the argument: ``passes`` < 1, ``p`` outside [0, 1), ``budget`` < 1 (None: not
            checked), ``batch_size`` < 1.
    """
    _whole(passes, "passes", "dropout passes per image")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"p: the dropout probability must be in [0, 1), got {p!r}")
    if budget is not None:
        _whole(budget, "budget", "images to choose")
    _whole(batch_size, "batch_size", "images per forward pass")


@contextlib.contextmanager
def mc_dropout(model: torch.nn.Module, p: float, layers: list[str] | None = None):
    """Within the block, the outputs of ``layers`` (module paths) go through channel dropout with probability ``p``
    (0: none, every pass alike)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"p: the dropout probability must be in [0, 1), got {p!r}")
    modules = dict(model.named_modules())
    names = layers or dropout_layers(model)
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"unknown layers {', '.join(unknown)} for MC dropout")
    handles = [modules[n].register_forward_hook(lambda m, i, out: F.dropout2d(out, p, training=True)) for n in names]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def relative_spread(predictions: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(T, B, 1, H, W) predictions -> (B,) mean over pixels of std / mean across the T predictions.

    Example:
        >>> relative_spread(torch.tensor([1.0, 3.0]).view(2, 1, 1, 1, 1))
        tensor([0.5000])
    """
    mean = predictions.mean(0)
    std = predictions.std(0, unbiased=False)
    ratio = std / mean.abs().clamp_min(1e-6)
    if valid is None:
        return ratio.flatten(1).mean(1)
    valid = valid.float()
    return (ratio * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)


@torch.no_grad()
def uncertainty_scores(models: list[torch.nn.Module], pool: Dataset, method: str, passes: int = DEFAULT_MC_PASSES,
                       p: float = DEFAULT_MC_DROPOUT,
                       seed: int = 0, batch_size: int = 8, progress: bool = True) -> torch.Tensor:
    """(N,) uncertainty of every pool image (higher: label it first).

    Args:
        models: one model (``mc-dropout``, ``random``) or several (``ensemble``), in eval mode.
        pool: the unlabelled images (samples' ``image``; depth is not read).
        method: one of :data:`METHODS`.
        passes: dropout passes per image (``mc-dropout``), at least 1.
        p: dropout probability (``mc-dropout``), in [0, 1).
        seed: seeds the dropout masks and the ``random`` order.

    Raises:
        ValueError: naming the argument: an unknown ``method``, ``passes`` < 1, ``p`` outside [0, 1),
            ``batch_size`` < 1, the wrong number of models.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_selection_args(passes, p, batch_size=batch_size)
    if method == "ensemble" and len(models) < 2:
        raise ValueError(f"ensemble needs at least 2 models, got {len(models)}")
    if method != "ensemble" and len(models) != 1:
        raise ValueError(f"{method} takes one model, got {len(models)}")
    generator = torch.Generator().manual_seed(seed)
    if method == "random":
        return torch.rand(len(pool), generator=generator)
    torch.manual_seed(seed)
    for m in models:
        m.eval()
    loader = DataLoader(pool, batch_size=batch_size, collate_fn=collate_samples)
    scores = []
    for batch in tqdm(loader, desc=f"uncertainty ({method})", unit="batch", disable=not progress):
        images = batch["image"]
        if method == "mc-dropout":
            with mc_dropout(models[0], p):
                preds = torch.stack([predict_depth(models[0], images) for _ in range(passes)])
        else:
            preds = torch.stack([predict_depth(m, images) for m in models])
        scores.append(relative_spread(preds))
    return torch.cat(scores)


def write_selection(scores: torch.Tensor, pool: Dataset, budget: int, out: str | os.PathLike,
                    exclude: set[int] = frozenset()) -> list[int]:
    """Choose the ``budget`` highest-scoring pool indices not in ``exclude``; write ``out`` and ``scores.csv`` beside it.

    Returns:
        The chosen indices, most uncertain first.
    """
    budget = _whole(budget, "budget", "images to choose")
    order = [int(i) for i in torch.argsort(scores, descending=True, stable=True) if int(i) not in exclude]
    if budget > len(order):
        raise ValueError(f"budget {budget} is more than the {len(order)} images left in the pool")
    chosen = order[:budget]
    paths = _paths(pool)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "".join(f"{i}\t{paths[i]}\n" for i in chosen))
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["rank", "index", "path", "uncertainty", "chosen"])
    chosen_set = set(chosen)
    for rank, i in enumerate(order):
        writer.writerow([rank, i, paths[i], f"{float(scores[i]):.6g}", int(i in chosen_set)])
    write_text_atomic(out.with_name("scores.csv"), table.getvalue())
    return chosen


def _paths(pool: Dataset) -> list[str]:
    """The image path of each pool sample, from the reader's list when it has one (no image decoded)."""
    base, indices = reader_and_indices(pool)
    if hasattr(base, "pairs"):
        return [str(base.pairs[i][0]) for i in indices]
    if hasattr(base, "items"):
        return [str(base.items[i].rgb) for i in indices]
    return [str(pool[i]["meta"].get("rgb", i)) for i in range(len(pool))]
