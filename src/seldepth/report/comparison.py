"""What the report compares between runs: the config keys that differ, and whether a best value is clearly best.

Both are plain functions of the runs' ``config.yaml`` and ``results.json`` (no HTML here;
:mod:`seldepth.report.html` lays them out).

Settings that differ (:func:`differing_settings`): every run's config is flattened to dotted
keys (``selectivity.weight``, ``optim.lr``; a list is one value); a key is listed when its value
is not the same in all runs (absent in some run counts as a difference). Not compared:
``trainer.out_dir`` (each run's own folder, always different), and keys whose values differ only
by that folder: a path inside each run's own folder with the same relative part
(``RUN/labelled.txt`` of active learning's ``data.train_subset``).

Best of a metric column (:func:`clear_best`): the best value is marked only when it beats the
second best by more than their spread:

* where both runs' ``results.json`` hold the per-image values of the metric
  (``results[split]["per_image"][metric]``: a list, one value per test image, ``null`` for an
  image without scored pixels), by more than one standard error of the per-image differences
  (paired over the images when both lists have the same length, i.e. the same test images; else
  the unpaired standard error sqrt(s1^2/n1 + s2^2/n2));
* else (``results.json`` holds only the means, which is what ``seldepth train`` writes: the
  evaluation keeps no per-image values), by more than :data:`RELATIVE_MARGIN` (1 %) of the second
  best's value.

A tie, or a gap within the spread, marks no run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RELATIVE_MARGIN = 0.01  # without per-image values: the best must beat the second best by more than 1 % of its value
ABSENT = object()  # a key that a run's config does not have
ALWAYS_IGNORED = {"trainer.out_dir": "the run's own folder"}

SECTION_WORDS = {"optim": "optimiser", "trainer": "training", "data": "data", "selectivity": "selectivity",
                 "loss": "loss", "teacher": "teacher", "selfsup": "self-supervision", "multiscale": "multi-scale loss",
                 "synergy": "synergy loss", "model_options": "model option"}
SETTING_WORDS = {
    "model": "model", "model_options": "model options", "protocol": "evaluation protocol",
    "data.path": "data set", "data.input_size": "input size (H, W)", "data.batch_size": "batch size",
    "data.train_subset": "training images chosen", "data.limit_train": "training images (limit)",
    "data.test_split": "test split", "selectivity.layers": "regularised layers",
    "selectivity.weight": "selectivity weight \u03bb", "selectivity.bins": "depth bins",
    "selectivity.statistics": "selectivity statistics", "selectivity.warmup_epochs": "selectivity warm-up epochs",
    "optim.lr": "learning rate", "optim.weight_decay": "weight decay", "trainer.epochs": "epochs",
    "trainer.seed": "random seed", "trainer.max_minutes": "time limit (min)", "init_from": "initial weights",
    "init_skip": "parts not initialised", "freeze": "frozen parts"}


def setting_words(key: str) -> str:
    """A config key in words: ``optim.lr`` -> ``learning rate``, ``optim.step_epochs`` -> ``optimiser: step epochs``."""
    if key in SETTING_WORDS:
        return SETTING_WORDS[key]
    head, _, rest = key.partition(".")
    def words(s: str) -> str:
        return s.replace(".", " ").replace("_", " ")

    return f"{SECTION_WORDS.get(head, words(head))}: {words(rest)}" if rest else words(head)


def flatten_config(config: dict, prefix: str = "") -> dict:
    """``{"optim": {"lr": 0.001}}`` -> ``{"optim.lr": 0.001}``; lists, None and empty mappings are values."""
    out = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, path + "."))
        else:
            out[path] = value
    return out


def _own_folder_relative(value, folders: list[str]):
    """``RUN/rest`` when ``value`` is a path string inside one of ``folders`` (the run's own folder), else ``value``."""
    if not isinstance(value, str):
        return value
    for folder in folders:
        folder = folder.rstrip("/\\")
        if folder and (value == folder or value.startswith((folder + "/", folder + "\\"))):
            return "RUN" + value[len(folder):].replace("\\", "/")
    return value


@dataclass
class SettingsDiff:
    """The config keys whose value is not the same in all runs.

    Attributes:
        keys: the differing keys, in the order they first appear in the runs' configs.
        values: ``{key: [value of each run, or ABSENT]}``.
        ignored: ``{key: why}`` for the keys whose values differ but are not compared.
    """

    keys: list[str]
    values: dict[str, list]
    ignored: dict[str, str]


def differing_settings(configs: list[dict], folders: list[str | Path] | None = None) -> SettingsDiff:
    """The keys of ``configs`` (one per run) whose value is not the same in all of them (see the module's note).

    Args:
        configs: each run's ``config.yaml`` as a mapping.
        folders: each run's folder (its ``trainer.out_dir`` is also taken as its folder); a path value
            inside the run's own folder is compared by its part below that folder.
    """
    flat = [flatten_config(c) for c in configs]
    own = []
    for i, cfg in enumerate(flat):
        names = [str(cfg["trainer.out_dir"])] if isinstance(cfg.get("trainer.out_dir"), str) else []
        if folders is not None:
            names += [str(folders[i]), str(Path(folders[i]).resolve())]
        own.append(sorted(set(names), key=len, reverse=True))
    keys = list(dict.fromkeys(k for cfg in flat for k in cfg))
    diff = SettingsDiff([], {}, {})
    for key in keys:
        values = [cfg.get(key, ABSENT) for cfg in flat]
        if all(_same(v, values[0]) for v in values):
            continue
        if key in ALWAYS_IGNORED:
            diff.ignored[key] = ALWAYS_IGNORED[key]
            continue
        relative = [_own_folder_relative(v, names) for v, names in zip(values, own)]
        if all(_same(v, relative[0]) for v in relative):
            diff.ignored[key] = f"{relative[0]}, RUN being each run's own folder"
            continue
        diff.keys.append(key)
        diff.values[key] = values
    return diff


def _same(a, b) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)  # 1 and 1.0 are the same setting
    return type(a) is type(b) and a == b


@dataclass
class Best:
    """The outcome of :func:`clear_best` for one metric column.

    Attributes:
        index: the run marked best, or None (one run, a tie, or a gap within the spread).
        rule: ``"per-image"`` (standard error of the per-image values), ``"margin"`` (relative margin,
            without per-image values) or None (fewer than two values to compare).
        gap: best minus second best, absolute.
        spread: the threshold the gap had to exceed.
    """

    index: int | None
    rule: str | None
    gap: float = math.nan
    spread: float = math.nan


def per_image_values(values) -> np.ndarray | None:
    """A per-image list as a float array (None -> NaN), or None if it is not a list of numbers."""
    if not isinstance(values, (list, tuple)) or not values:
        return None
    try:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None


def standard_error(a: np.ndarray, b: np.ndarray) -> float:
    """The standard error of mean(a) - mean(b): paired when both have one value per same image, else unpaired.

    NaN (an image without scored pixels) is left out; NaN where fewer than two values remain.
    """
    if len(a) == len(b):
        keep = np.isfinite(a) & np.isfinite(b)
        d = a[keep] - b[keep]
        return float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) >= 2 else math.nan
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2:
        return math.nan
    return float(math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)))


def clear_best(values: list, higher_is_better: bool, per_image: list | None = None,
               margin: float = RELATIVE_MARGIN) -> Best:
    """Which run (if any) is clearly best in one metric column.

    Args:
        values: each run's mean value (None or NaN: no value).
        higher_is_better: True for delta1, False for errors.
        per_image: each run's per-image values (lists; None where the run has none).
        margin: the relative margin used without per-image values.

    Returns:
        :class:`Best`: the best run only when its gap to the second best exceeds one standard error
        of the per-image differences (both runs have per-image values) or ``margin`` times the
        second best's value (otherwise).
    """
    scored = [(float(v), i) for i, v in enumerate(values)
              if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))]
    if len(scored) < 2:
        return Best(None, None)
    scored.sort(key=lambda t: -t[0] if higher_is_better else t[0])
    (v1, i1), (v2, i2) = scored[0], scored[1]
    gap = abs(v1 - v2)
    a = per_image_values(per_image[i1]) if per_image else None
    b = per_image_values(per_image[i2]) if per_image else None
    spread = standard_error(a, b) if a is not None and b is not None else math.nan
    if math.isfinite(spread):
        return Best(i1 if gap > spread else None, "per-image", gap, spread)
    spread = margin * abs(v2)
    return Best(i1 if gap > spread else None, "margin", gap, spread)
