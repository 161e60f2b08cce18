"""The summary of an experiment: one row per finished run, as CSV, Markdown tables and ``experiment.json``."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from seldepth.atomic import write_text_atomic
from seldepth.experiments.spec import ExperimentSpec
from seldepth.training.run_folder import RunFolder


def _row(name: str, run_dir: Path) -> dict:
    """One finished run's line of the summary (``rmse_change_pct`` is filled in by :func:`gather`)."""
    run = RunFolder(run_dir, name)
    cfg, results, dissection, done = run.config, run.results, run.dissection(), run.done()
    sel = cfg.get("selectivity", {})
    m = results["test"]["metrics"]
    bins = sel.get("bins")
    row = {"run": name, "layers": "+".join(sel.get("layers") or []) or "-",
           "lambda": sel.get("weight") if sel.get("layers") else None,
           "bins": (" ".join(f"{k}={v}" for k, v in bins.items()) if isinstance(bins, dict) else bins)
           if sel.get("layers") else None,
           "assignment": sel.get("assignment", "fixed") if sel.get("layers") else None,
           "seed": cfg.get("trainer", {}).get("seed"),
           "statistics": sel.get("statistics") if sel.get("layers") else None,
           "rmse": m["rmse"], "abs_rel": m["abs_rel"], "delta1": m["delta1"],
           "rmse_change_pct": None,
           "mean_ds": dissection["mean_ds"], "train_seconds": results.get("train_seconds"),
           "run_seconds": round(sum(v for k, v in done.items() if k.endswith("_seconds")), 1)}
    row.update({f"ds_{k}": v["mean_ds"] for k, v in dissection["layers"].items()})
    row.update(tuned_units(dissection))
    if "semantics" in results["test"]:
        row["miou"] = results["test"]["semantics"]["miou"]
    c = run.test_extra()
    if c is not None:
        for cap in c["protocol"]["caps"]:
            for metric in ("rmse", "abs_rel", "delta1"):
                row[f"{metric}@{cap:g}m"] = c["metrics"][f"{metric}@{cap:g}m"]
        if c["protocol"].get("median_scaling"):
            row.update({f"{k}_scaled": c["metrics"][k] for k in ("rmse", "abs_rel", "delta1")})
            row["scale_ratio_spread"] = c["metrics"]["scale_ratio_spread"]
    pose = results.get("pose") or {}
    if "translation_deg" in pose:
        row["pose_translation_deg"], row["pose_rotation_deg"] = pose["translation_deg"], pose["rotation_deg"]
    return row


def tuned_units(dissection: dict) -> dict:
    """The tuned units of a dissection (``selectivity.json``): their share of all units and their DS.

    ``tuned_share``: tuned units / all units over every layer; ``mean_ds_tuned``: the mean over the layers
    that have tuned units of each layer's mean DS over its tuned units (as ``mean_ds`` is over all units);
    ``tuned_<layer>``: each layer's number of tuned units. Empty when the dissection has no tuning.
    """
    layers = dissection["layers"]
    if not layers or any("tuning" not in v for v in layers.values()):
        return {}
    out, per_layer, tuned, total = {}, [], 0, 0
    for name, layer in layers.items():
        kinds = layer["tuning"]["kind"]
        ds = [d for d, kind in zip(layer["ds"], kinds) if kind == "tuned" and not math.isnan(d)]
        out[f"tuned_{name}"] = sum(kind == "tuned" for kind in kinds)
        tuned += out[f"tuned_{name}"]
        total += len(kinds)
        if ds:
            per_layer.append(sum(ds) / len(ds))
    out["tuned_share"] = tuned / total if total else None
    out["mean_ds_tuned"] = sum(per_layer) / len(per_layer) if per_layer else None
    return out


def same_seed_changes(rows: list[dict]) -> None:
    """Add each regularised run's changes against the unregularised run of the same ``trainer.seed``.

    ``baseline`` (that run's name), ``mean_ds_change`` (mean DS over all dissected layers),
    ``rmse_change_vs_baseline_pct``, ``layers_more_selective`` / ``layers_dissected``, ``tuned_share_change``
    and ``mean_ds_tuned_change``; runs without such a baseline are left as they are.
    """
    baselines = {}
    for r in rows:
        if r["layers"] == "-" and r["seed"] not in baselines:
            baselines[r["seed"]] = r
    for r in rows:
        base = baselines.get(r["seed"])
        if base is None or r is base:
            continue
        layers = [k for k in r if k.startswith("ds_") and k in base]
        r.update({"baseline": base["run"], "mean_ds_change": r["mean_ds"] - base["mean_ds"],
                  "rmse_change_vs_baseline_pct": 100 * (r["rmse"] / base["rmse"] - 1),
                  "layers_more_selective": sum(r[k] > base[k] for k in layers), "layers_dissected": len(layers)})
        for key in ("tuned_share", "mean_ds_tuned"):
            if r.get(key) is not None and base.get(key) is not None:
                r[f"{key}_change"] = r[key] - base[key]


def format_network(rows: list[dict]) -> str:
    """The Markdown table of the whole network against the same-seed baseline (:func:`same_seed_changes`)."""
    head = ["run", "seed", "baseline", "mean DS, all layers (change)", "RMSE vs baseline", "layers more selective",
            "tuned units (change)", "mean DS of tuned units (change)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "baseline" not in r:
            continue
        tuned = (f"{100 * r['tuned_share']:.0f}% ({100 * r['tuned_share_change']:+.0f} pts)"
                 if r.get("tuned_share_change") is not None else "-")
        tuned_ds = (f"{r['mean_ds_tuned']:.3f} ({r['mean_ds_tuned_change']:+.3f})"
                    if r.get("mean_ds_tuned_change") is not None else "-")
        lines.append("| " + " | ".join([
            r["run"], str(r["seed"]), r["baseline"], f"{r['mean_ds']:.3f} ({r['mean_ds_change']:+.3f})",
            f"{r['rmse_change_vs_baseline_pct']:+.1f}%", f"{r['layers_more_selective']} / {r['layers_dissected']}",
            tuned, tuned_ds]) + " |")
    return "\n".join(lines) + "\n"


def write_rows_csv(path: Path, rows: list[dict]) -> Path:
    """``rows`` as a CSV file, one column per key in the order they first appear (a missing value: empty)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, text.getvalue())


def gather(spec: ExperimentSpec, folders: dict[str, Path], out: Path, wall_seconds: float, jobs: int, quick: bool) -> dict:
    """Write ``summary.csv``, ``summary.md`` and ``experiment.json`` from the finished runs."""
    finished = {n: d for n, d in folders.items() if RunFolder(d).is_done}
    baseline = next(iter(finished), None)  # the first finished run is the reference of the changes
    rows = [_row(n, d) for n, d in finished.items()]
    for row in rows:
        row["rmse_change_pct"] = 100 * (row["rmse"] / rows[0]["rmse"] - 1)
        row["setting"] = spec.settings.get(row["run"], "")
    same_seed_changes(rows)
    if rows:
        write_rows_csv(out / "summary.csv", rows)
    regularised = list(dict.fromkeys(l for cfg in spec.runs.values() for l in (cfg.get("selectivity", {}).get("layers") or [])))
    md = format_summary(rows, regularised, baseline)
    if any("baseline" in r for r in rows):
        md += "\nThe whole network against the unregularised run of the same seed:\n\n" + format_network(rows)
    if spec.caps and rows:
        md += "\n" + format_caps(rows, spec.caps)
    if spec.median_scaling and rows:
        md += "\n" + format_scaled(rows)
    by_bin = by_bin_rows(finished)
    if by_bin:
        md += "\nAblation per depth range (ablate_by_bin/):\n\n" + format_by_bin(by_bin)
    write_text_atomic(out / "summary.md", md)
    summary = {"runs": rows, "baseline": baseline, "wall_seconds": round(wall_seconds, 1), "jobs": jobs, "quick": quick,
               "ablation": _ablation_summary(finished), "ablation_by_bin": by_bin}
    write_text_atomic(out / "experiment.json", json.dumps(summary, indent=2))
    return summary


def by_bin_row(run: str, doc: dict) -> dict:
    """One ablation per depth range (``by_bin.json``) as a summary row: its diagonal dominance for RMSE and AbsRel
    against the random control (mean and std over seeds)."""
    row = {"run": run, "layer": doc["layer"], "grouping": doc["grouping"], "units": doc.get("units", "all"),
           "grouped_units": int(sum(doc["units_per_group"])), "num_units": doc["num_units"],
           "rows": doc["dominance"]["rmse"]["rows"]}
    for metric in ("rmse", "abs_rel"):
        d = doc["dominance"][metric]
        row.update({f"{metric}_near_diagonal": d["near_diagonal"], f"{metric}_chance": d["chance"],
                    f"{metric}_near_diagonal_random_mean": d["control"]["near_diagonal_mean"],
                    f"{metric}_near_diagonal_random_std": d["control"]["near_diagonal_std"],
                    f"{metric}_contrast": d["contrast"], f"{metric}_contrast_random_std": d["control"]["contrast_std"]})
    return row


def by_bin_rows(finished: dict[str, Path]) -> list[dict]:
    """The rows of :func:`by_bin_row` of every finished run's ``ablate_by_bin/*/by_bin.json``."""
    rows = []
    for name, run_dir in finished.items():
        for path in sorted(Path(run_dir).glob("ablate_by_bin/*/by_bin.json")):
            rows.append(by_bin_row(name, json.loads(path.read_text())))
    return rows


def format_by_bin(rows: list[dict]) -> str:
    """The Markdown table of :func:`by_bin_rows`: per ablation, the share of groups whose largest RMSE / AbsRel
    excess is on or next to the diagonal (chance; the random control's mean ± std) and the mean diagonal minus
    off-diagonal excess (the random control's std; its mean is 0 by construction)."""
    head = ["run", "layer", "grouped by", "units grouped", "groups", "RMSE: rows peaking near the diagonal (chance; random)",
            "RMSE: diagonal - off-diagonal excess, m (random std)", "AbsRel: rows near the diagonal (chance; random)",
            "AbsRel: diagonal - off-diagonal (random std)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["run"], r["layer"], r["grouping"], f"{r['grouped_units']} / {r['num_units']}"
                 + (" tuned" if r["units"] == "tuned" else ""), str(r["rows"])]
        for metric, fmt in (("rmse", "+.3f"), ("abs_rel", "+.4f")):
            cells.append(f"{_fmt(r[f'{metric}_near_diagonal'], '.2f')} ({_fmt(r[f'{metric}_chance'], '.2f')}; "
                         f"{_fmt(r[f'{metric}_near_diagonal_random_mean'], '.2f')} ± "
                         f"{_fmt(r[f'{metric}_near_diagonal_random_std'], '.2f')})")
            cells.append(f"{_fmt(r[f'{metric}_contrast'], fmt)} ({_fmt(r[f'{metric}_contrast_random_std'], fmt[1:])})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _ablation_summary(finished: dict[str, Path]) -> dict:
    out = {}
    for name, run_dir in finished.items():
        a = RunFolder(run_dir).ablation()
        if a is not None:
            out[name] = {"layer": a["layer"], "fractions": a["fractions"],
                         "top_minus_random_rmse": a["top_minus_random_rmse"]}
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_summary(rows: list[dict], regularised: list[str], baseline: str | None) -> str:
    """The Markdown table: metrics, RMSE change against the first run, mean DS of the regularised layers and overall.

    The setting columns are the selectivity regulariser's (regularised layers, lambda, bins) when
    some run is regularised, else one ``setting`` column with each run's overrides of the base.
    """
    ds_cols = [f"ds_{l}" for l in regularised]
    setting_head = ["regularised", "lambda", "bins"] if regularised else ["setting"]
    semantic = any(r.get("miou") is not None for r in rows)
    head = ["run", *setting_head, "RMSE (m)", "AbsRel", "delta1", *(["mIoU"] if semantic else []), "RMSE vs " + (baseline or "first"),
            *[f"DS {l}" for l in regularised], "mean DS (all layers)", "train (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    base = next((r for r in rows if r["run"] == baseline), None)
    for r in rows:
        ds = []
        for c in ds_cols:
            v = r.get(c)
            delta = "" if base is None or r is base or v is None else f" ({v - base.get(c, 0):+.3f})"
            ds.append(_fmt(v, ".3f") + delta)
        overall = _fmt(r["mean_ds"], ".3f") + ("" if base is None or r is base else f" ({r['mean_ds'] - base['mean_ds']:+.3f})")
        setting = ([r["layers"], _fmt(r["lambda"], "g"), r["bins"] or "-"] if regularised
                   else [r.get("setting") or "(base)"])
        miou = [_fmt(r.get("miou"), ".4f")] if semantic else []
        lines.append("| " + " | ".join([
            r["run"], *setting, f"{r['rmse']:.4f}", f"{r['abs_rel']:.4f}",
            f"{r['delta1']:.4f}", *miou, _fmt(r["rmse_change_pct"], "+.1f") + "%", *ds, overall,
            _fmt(r["train_seconds"], ".0f")]) + " |")
    return "\n".join(lines) + "\n"


def format_scaled(rows: list[dict]) -> str:
    """The Markdown table of the median-scaled test metrics, the ratios' spread and the pose errors."""
    head = ["run", "RMSE (scaled)", "AbsRel (scaled)", "delta1 (scaled)", "scale spread (std/mean)",
            "pose translation dir. (deg)", "pose rotation (deg)", "train (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_fmt(r.get(k), f) for k, f in (("rmse_scaled", ".4f"), ("abs_rel_scaled", ".4f"), ("delta1_scaled", ".4f"),
                                                 ("scale_ratio_spread", ".4f"), ("pose_translation_deg", ".2f"),
                                                 ("pose_rotation_deg", ".3f"), ("train_seconds", ".0f"))]
        lines.append("| " + " | ".join([r["run"], *cells]) + " |")
    return "\n".join(lines) + "\n"


def format_caps(rows: list[dict], caps: tuple[float, ...]) -> str:
    """The Markdown table of the test metrics on pixels with gt <= each cap (RMSE, AbsRel, delta1 per cap)."""
    head = ["run"] + [f"{m} <= {c:g} m" for c in caps for m in ("RMSE", "AbsRel", "delta1")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_fmt(r.get(f"{m}@{c:g}m"), ".4f") for c in caps for m in ("rmse", "abs_rel", "delta1")]
        lines.append("| " + " | ".join([r["run"], *cells]) + " |")
    return "\n".join(lines) + "\n"
