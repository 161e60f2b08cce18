"""Dissection: how selective each unit of a depth network is to a range of depths (You et al., ICCV 2021).

Forward hooks on the probed modules turn each batch's activations into per-unit, per-bin
sums (:func:`~seldepth.selectivity.responses.binned_responses`) that are accumulated in
float64; memory is O(layers x K x N_b) whatever the size of the data set. At the end (after
an ``all_reduce`` of sums and counts when ``torch.distributed`` is initialised):

    R[k, d]  = sum of up(A_k) over the valid pixels of bin d / their number    (K, N_b)
    DS[k]    = (|R^max| - |R^-max|) / (|R^max| + |R^-max|)

Conventions (the same everywhere in seldepth):
    * R averages SIGNED activations; DS is computed on |R|: |R^max| is the largest |R| over
      the non-empty bins (its bin is the unit's preferred bin) and |R^-max| the mean of |R|
      over the OTHER NON-EMPTY bins. (This reproduces the reference figures of the official
      NYU METER-xxs on nyu_test_sample; taking |.| of the mean of signed R instead gives higher DS for layers with
      signed outputs, e.g. enc_7 0.550 instead of 0.421.)
    * Empty bins (no valid pixel in the data) are left out, reported per layer, and raise
      one :class:`EmptyBinWarning`; they never give NaN.
    * A layer of K units uses N_b = min(requested, K) bins (at least 2) of the scheme.
    * Valid pixels: the data set's ``valid`` and ``min_depth < gt < max_depth``; depth outside
      the bins' range is left out too (never put in bin 0).
    * The model sees its preprocessed input; activations are upsampled (bilinear,
      ``align_corners=False``) to the ground truth's own resolution.

Example:
    >>> model = load_model("meter_xxs_nyu.safetensors")
    >>> result = dissect(model, open_dataset("nyu:nyu_test_sample"), bins="sid:64")
    >>> print(format_table(result))
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from seldepth.atomic import atomic_path, write_text_atomic
from seldepth.data.collate import collate_samples
from seldepth.data.skipping import first_sample, is_skipped, no_readable_sample, sample_batches
from seldepth.defaults import DEFAULT_BATCH_SIZE, DEFAULT_NUM_WORKERS, check_number
from seldepth.inference import model_preprocessing
from seldepth.selectivity.bins import DEFAULT_BINS, DEFAULT_DEPTH_RANGE, BinScheme, EdgeRefinement, bin_centres, parse_bins
from seldepth.selectivity.tuning import TUNING_KINDS, Tuning, tuning_of
from seldepth.selectivity.responses import (
    project_slots,
    binned_responses,
    mean_responses,
    selectivity_index,
)

CONVENTIONS = ("R = mean of the signed, bilinearly upsampled activation over the valid pixels of a bin; "
               "DS = (|R|max - mean|R|others) / (|R|max + mean|R|others) with |R|max the largest |R| over non-empty bins "
               "and mean|R|others the mean of |R| over the other non-empty bins; empty bins left out; "
               "N_b = min(requested, K)")


class EmptyBinWarning(UserWarning):
    """Some depth bins had no valid pixel in the data: they are left out of the selectivity index."""


def resolve_layers(model: nn.Module, layers: list[str] | tuple[str, ...] | str | None = None) -> dict[str, str]:
    """Map layer names to module paths of ``model.named_modules()``.

    Args:
        model: any module; a model with ``selectivity_layers`` (short name -> path) also accepts its short names.
        layers: short names or module paths (a comma-separated string is split); default the
            model's ``selectivity_layers`` (all of them).

    Returns:
        {name: module path} in the order given.

    Raises:
        ValueError: naming the unknown layers and listing the available names.
    """
    short = dict(getattr(model, "selectivity_layers", None) or {})
    modules = dict(model.named_modules())
    if layers is None:
        if not short:
            raise ValueError(f"layers: {type(model).__name__} declares no selectivity_layers; name the layers to probe "
                             f"(module paths such as {', '.join(list(n for n in modules if n)[:5])})")
        layers = list(short)
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    if not layers:
        raise ValueError("layers: expected at least one layer name")
    out: dict[str, str] = {}
    unknown = []
    for name in layers:
        path = short.get(name, name)
        if not path or path not in modules:
            unknown.append(name)
        else:
            out[name] = path
    if unknown:
        paths = [n for n in modules if n]
        if short:
            avail = f"{', '.join(short)} (or any of the {len(paths)} named_modules() paths, e.g. {', '.join(paths[:4])})"
        else:
            avail = ", ".join(paths)
        model_name = getattr(model, "name", "") or type(model).__name__
        raise ValueError(f"layers: no layer {', '.join(map(repr, unknown))} in {model_name}; "
                         f"available: {avail}")
    return out


@dataclass
class LayerSelectivity:
    """Selectivity of one layer's units.

    Attributes:
        name: layer name (short name or module path).
        module: module path in ``named_modules()``.
        edges: (N_b + 1,) float64 bin edges, metres.
        sums: (K, N_b) float64 summed upsampled activation per unit and bin.
        counts: (N_b,) float64 valid pixels per bin.
        responses: (K, N_b) float64 R = sums / counts (0 in empty bins; see ``counts``).
        ds: (K,) float64 selectivity index.
        preferred_bin: (K,) int64 bin of largest |R|.
        ds_defined: (K,) bool, False where fewer than two bins are non-empty (DS set to 0).
    """

    name: str
    module: str
    edges: torch.Tensor
    sums: torch.Tensor
    counts: torch.Tensor
    responses: torch.Tensor
    ds: torch.Tensor
    preferred_bin: torch.Tensor
    ds_defined: torch.Tensor

    @classmethod
    def from_arrays(cls, name: str, info: dict, arrays) -> "LayerSelectivity":
        """One layer from the arrays of a saved ``selectivity.npz`` and its entry in ``selectivity.json``."""
        a = {k: torch.from_numpy(np.array(arrays[f"{name}/{k}"]))
             for k in ("R", "sums", "counts", "ds", "preferred_bin", "edges") if f"{name}/{k}" in arrays}
        responses = a["R"].double()
        defined = torch.ones(responses.shape[0], dtype=torch.bool)
        defined[[int(i) for i in info.get("ds_undefined_units", [])]] = False
        counts = a.get("counts", torch.tensor(info.get("counts", [1] * responses.shape[1]), dtype=torch.float64)).double()
        return cls(name, info.get("module", name), a["edges"].double(), a.get("sums", responses * counts).double(),
                   counts, responses, a["ds"].double(), a.get("preferred_bin", responses.abs().argmax(1)).long(), defined)

    @property
    def num_units(self) -> int:
        return int(self.sums.shape[0])

    @property
    def num_bins(self) -> int:
        return int(self.sums.shape[1])

    @property
    def mean_ds(self) -> float:
        """Mean DS over the layer's units."""
        return float(self.ds.mean())

    @property
    def coverage(self) -> float:
        """Fraction of the layer's bins with at least one valid pixel."""
        return float((self.counts > 0).double().mean())

    @property
    def empty_bins(self) -> list[int]:
        return [int(i) for i in torch.nonzero(self.counts == 0).flatten()]

    @property
    def centres(self) -> torch.Tensor:
        """(N_b,) bin midpoints, metres."""
        return bin_centres(self.edges)

    @property
    def tuning(self) -> Tuning:
        """Each unit's tuning width, peak position and kind (tuned, ramp, flat): :func:`~seldepth.selectivity.tuning.tuning_of`."""
        if "_tuning" not in self.__dict__:
            self.__dict__["_tuning"] = tuning_of(self.responses, self.counts, self.edges, self.ds)
        return self.__dict__["_tuning"]

    def to_dict(self) -> dict:
        return {"module": self.module, "num_units": self.num_units, "num_bins": self.num_bins,
                "mean_ds": self.mean_ds, "coverage": self.coverage, "empty_bins": self.empty_bins,
                "tuning": self.tuning.to_dict(),
                "edges": self.edges.tolist(), "counts": [int(c) for c in self.counts.tolist()],
                "ds": self.ds.tolist(), "preferred_bin": self.preferred_bin.tolist(),
                "ds_undefined_units": [int(i) for i in torch.nonzero(~self.ds_defined).flatten()]}


@dataclass
class DissectionResult:
    """Per-layer selectivity of a model over a data set.

    Attributes:
        layers: {layer name: :class:`LayerSelectivity`} in probing order.
        bins: the bin scheme (its ``num_bins`` is the requested N).
        depth_range: (min, max) valid ground truth, metres (exclusive).
        num_images: images seen (over all processes).
        info: free-form provenance (model, data, ...), saved with the results.
    """

    layers: dict[str, LayerSelectivity]
    bins: BinScheme
    depth_range: tuple[float, float]
    num_images: int
    info: dict = field(default_factory=dict)

    @property
    def mean_ds(self) -> float:
        """Mean over layers of the per-layer mean DS."""
        return float(np.mean([layer.mean_ds for layer in self.layers.values()])) if self.layers else 0.0

    def to_dict(self) -> dict:
        return {"info": self.info, "bins": self.bins.to_dict(), "depth_range": list(self.depth_range),
                "num_images": self.num_images, "mean_ds": self.mean_ds, "conventions": CONVENTIONS,
                "layers": {name: layer.to_dict() for name, layer in self.layers.items()}}

    def save(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write ``selectivity.json`` and ``selectivity.npz`` into ``out_dir``.

        The NPZ holds, per layer L: ``L/R`` (K, N_b), ``L/sums`` (K, N_b), ``L/counts`` (N_b,),
        ``L/ds`` (K,), ``L/preferred_bin`` (K,), ``L/edges`` (N_b + 1,).

        Returns:
            {"json": path, "npz": path}.
        """
        out = Path(out_dir)
        json_path = write_text_atomic(out / "selectivity.json", json.dumps(self.to_dict(), indent=1))
        arrays = {}
        for name, layer in self.layers.items():
            arrays.update({f"{name}/R": layer.responses.numpy(), f"{name}/sums": layer.sums.numpy(),
                           f"{name}/counts": layer.counts.numpy(), f"{name}/ds": layer.ds.numpy(),
                           f"{name}/preferred_bin": layer.preferred_bin.numpy(), f"{name}/edges": layer.edges.numpy()})
        npz_path = out / "selectivity.npz"
        with atomic_path(npz_path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return {"json": json_path, "npz": npz_path}


    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "DissectionResult":
        """Read back what :meth:`save` wrote into ``out_dir`` (``selectivity.json`` and ``selectivity.npz``).

        A layer missing from the NPZ is left out. A quantile scheme comes back without its fitted
        sample: the saved edges hold what it gave.

        Raises:
            ValueError: naming the file, when either is missing or not readable.
        """
        out = Path(out_dir)
        json_path, npz_path = out / "selectivity.json", out / "selectivity.npz"
        try:
            doc = json.loads(json_path.read_text())
            bins = doc["bins"]
            scheme = BinScheme(kind=bins["kind"], num_bins=int(bins["num_bins"]), params=dict(bins["params"]))
            infos = doc.get("layers") or {}
            depth_range = tuple(float(v) for v in doc["depth_range"])
            num_images = int(doc.get("num_images", 0))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{json_path}: not a dissection written by seldepth dissect ({exc})") from None
        layers = {}
        try:
            with np.load(npz_path) as arrays:
                for name, info in infos.items():
                    if f"{name}/R" in arrays:
                        layers[name] = LayerSelectivity.from_arrays(name, info, arrays)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # missing, truncated, empty
            raise ValueError(f"{npz_path}: not readable ({exc})") from None
        return cls(layers, scheme, depth_range, num_images, doc.get("info") or {})


def format_table(result: DissectionResult) -> str:
    """A plain-text per-layer table: layer, K, N_b, mean DS, coverage, units tuned / ramp / flat; then the means."""
    lo, hi = result.depth_range
    lines = [f"bins {result.bins.spec()} (N_b = min(N, K)), valid {lo:g} < gt < {hi:g} m, images: {result.num_images}",
             f"{'layer':<12} {'K':>5} {'N_b':>4} {'mean DS':>8} {'coverage':>9} {'tuned':>6} {'ramp':>5} {'flat':>5}"]
    totals = dict.fromkeys(TUNING_KINDS, 0)
    for name, layer in result.layers.items():
        counts = layer.tuning.counts()
        totals = {kind: totals[kind] + counts[kind] for kind in TUNING_KINDS}
        lines.append(f"{name:<12} {layer.num_units:>5} {layer.num_bins:>4} {layer.mean_ds:>8.4f} {layer.coverage:>9.3f} "
                     f"{counts['tuned']:>6} {counts['ramp']:>5} {counts['flat']:>5}")
    units = max(1, sum(totals.values()))
    lines.append(f"{'mean':<12} {'':>5} {'':>4} {result.mean_ds:>8.4f} {'':>9} "
                 + " ".join(f"{100 * totals[kind] / units:>{w - 1}.0f}%" for kind, w in zip(TUNING_KINDS, (6, 5, 5))))
    return "\n".join(lines)


class Dissector:
    """Streams batches through a model and accumulates per-unit per-bin responses of probed layers.

    Args:
        model: any ``nn.Module`` mapping an input batch to anything; probed modules must output
            (B, K, h, w) tensors.
        layers: names for :func:`resolve_layers` (default the model's ``selectivity_layers``).
        bins: a spec string (``sid:64``) or a :class:`BinScheme` (a quantile scheme must be fitted).
        depth_range: (min, max): ground truth counts as valid when ``min < gt < max`` (metres).
        dtype: dtype of the per-batch projection and matmul (float64 default; float32 is faster,
            rounding ~1e-7 relative). Accumulation is always float64.

    Example:
        >>> d = Dissector(model, bins="sid:64")
        >>> for batch in loader:
        ...     d.update(preprocess(batch["image"]), batch["depth"], batch["valid"])
        >>> result = d.compute()
    """

    def __init__(self, model: nn.Module, layers=None, bins: str | BinScheme = DEFAULT_BINS,
                 depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE, dtype: torch.dtype = torch.float64):
        self.model = model
        self.layers = resolve_layers(model, layers)
        self.scheme = parse_bins(bins)
        if not self.scheme.is_fitted:
            raise ValueError("bins: a quantile scheme must be fitted before dissection (BinScheme.fit or dissect())")
        self.depth_range = check_depth_range(depth_range)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype
        self._modules = dict(model.named_modules())
        self._edges: dict[int, torch.Tensor] = {}
        self._refinement: EdgeRefinement | None = None
        self._grid_bins: dict[tuple[int, int], list[int]] = {}
        self._grid_refs: dict[tuple[int, int], tuple] = {}
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated statistics."""
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, torch.Tensor] = {}
        self.num_images = 0

    def edges(self, num_bins: int) -> torch.Tensor:
        """(N_b + 1,) float64 edges of the scheme for ``num_bins`` bins (cached)."""
        if num_bins not in self._edges:
            self._edges[num_bins] = self.scheme.edges(num_bins)
            self._refinement = None
        return self._edges[num_bins]

    def _projection(self, state: dict, n_b: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected bin masks (B, N_b, h, w) and counts (N_b,) of this batch, shared by the layers that need them.

        One bin search per batch over the refinement of all the layers' edge sets; per activation
        grid one projection of the slots of the refinement of the N_b used on that grid, then a
        sum over slots per N_b. The first batch discovers which N_b each grid needs.
        """
        key = (n_b, *size)
        if key in state["proj"]:
            return state["proj"][key], state["counts"][n_b]
        self.edges(n_b)
        grid_bins = self._grid_bins.setdefault(size, [])
        if n_b not in grid_bins:
            grid_bins.append(n_b)
            self._grid_refs.pop(size, None)
        if self._refinement is None:
            self._refinement = EdgeRefinement(list(self._edges.values()))
            self._grid_refs.clear()
        ref = self._refinement
        if state.get("refinement") is not ref:
            state["refinement"] = ref
            state["slots"] = ref.slots(state["depth"], state["valid"])
            state["slot_counts"] = torch.bincount(state["slots"].view(-1), minlength=ref.num_slots).double()
        if size not in self._grid_refs:
            grid_ref = EdgeRefinement([self._edges[k] for k in grid_bins])
            tables = {k: grid_ref.bin_map(self._edges[k], invalid=k).to(state["slots"].device) for k in grid_bins}
            self._grid_refs[size] = (grid_ref, ref.slot_map(grid_ref.union).to(state["slots"].device), tables)
        grid_ref, to_grid, tables = self._grid_refs[size]
        slots = state["slots"]
        grid_slots = to_grid.index_select(0, slots.view(-1)).view(slots.shape)
        grid = project_slots(grid_slots, grid_ref.num_slots, size, self.dtype, overwrite=True)
        for k in grid_bins:
            proj = torch.zeros(grid.shape[0], k + 1, *size, dtype=grid.dtype, device=grid.device)
            state["proj"][(k, *size)] = proj.index_add_(1, tables[k], grid)[:, :k]
            if k not in state["counts"]:
                table = ref.bin_map(self._edges[k], invalid=k).to(slots.device)
                counts = torch.zeros(k + 1, dtype=torch.float64, device=slots.device)
                state["counts"][k] = counts.index_add_(0, table, state["slot_counts"])[:k]
        return state["proj"][key], state["counts"][n_b]

    def _hook(self, name: str, state: dict):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                what = f"shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else type(output).__name__
                raise ValueError(f"layers: {name!r} ({self.layers[name]}) outputs {what}; probed layers must output "
                                 "(B, K, h, w) tensors")
            act = output.detach()
            B, K, h, w = act.shape
            if B != state["depth"].shape[0]:
                raise ValueError(f"layers: {name!r} has batch size {B} but the depth batch has {state['depth'].shape[0]}")
            n_b = self.scheme.bins_for(K)
            proj, counts = self._projection(state, n_b, (h, w))
            out = binned_responses(act.to(self.dtype), None, n_b, projected=proj, counts=counts)
            if name in self.sums and self.sums[name].shape != out.sums.shape:
                raise ValueError(f"layers: {name!r} had {self.sums[name].shape[0]} units, now {K}")
            if name not in self.sums:
                self.sums[name] = torch.zeros(K, n_b, dtype=torch.float64, device=act.device)
                self.counts[name] = torch.zeros(n_b, dtype=torch.float64, device=act.device)
            self.sums[name] += out.sums.double()
            self.counts[name] += out.counts.double()

        return hook

    @torch.no_grad()
    def update(self, inputs: torch.Tensor, depth: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Run the model on one batch and accumulate.

        Args:
            inputs: the model's input batch (already preprocessed), e.g. (B, 3, 192, 256).
            depth: (B, 1, H, W) ground truth, metres, at its own resolution.
            valid: optional (B, 1, H, W) bool; combined with the depth range.
        """
        param = next(iter([*self.model.parameters(), *self.model.buffers()]), None)
        if param is not None and param.is_floating_point():
            inputs = inputs.to(device=param.device, dtype=param.dtype)
        with self.observing(depth, valid):
            self.model(inputs)

    @contextlib.contextmanager
    def observing(self, depth: torch.Tensor, valid: torch.Tensor | None = None):
        """Accumulate the probed layers' responses of the ONE forward pass of a batch run inside the block.

        For a caller that runs the model itself (e.g. a validation step that also scores the
        prediction), so that dissection needs no second pass. The batch is counted when the
        block ends without an error.

        Args:
            depth: (B, 1, H, W) ground truth, metres, at its own resolution.
            valid: optional (B, 1, H, W) bool; combined with the depth range.

        Example:
            >>> with dissector.observing(depth, valid):
            ...     pred = predict_depth(model, images, size=depth.shape[-2:])
        """
        if depth.ndim != 4 or depth.shape[1] != 1:
            raise ValueError(f"depth: expected (B, 1, H, W) metres, got shape {tuple(depth.shape)}")
        param = next(iter([*self.model.parameters(), *self.model.buffers()]), None)
        device = param.device if param is not None else depth.device
        depth = depth.to(device)
        lo, hi = self.depth_range
        mask = (depth > lo) & (depth < hi)
        if valid is not None:
            if valid.shape != depth.shape:
                raise ValueError(f"valid: expected shape {tuple(depth.shape)} like depth, got {tuple(valid.shape)}")
            mask &= valid.to(device).bool()
        state = {"depth": depth[:, 0], "valid": mask[:, 0], "proj": {}, "counts": {}}
        handles = [self._modules[path].register_forward_hook(self._hook(name, state)) for name, path in self.layers.items()]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
        self.num_images += int(depth.shape[0])

    @torch.no_grad()
    def probe(self, inputs: torch.Tensor) -> None:
        """Learn the layers' widths from one forward pass without accumulating (for a process with no data)."""
        widths: dict[str, int] = {}

        def hook_for(name):
            def hook(module, args, output):
                if isinstance(output, torch.Tensor) and output.ndim == 4:
                    widths[name] = output.shape[1]
            return hook

        param = next(iter([*self.model.parameters(), *self.model.buffers()]), None)
        if param is not None and param.is_floating_point():
            inputs = inputs.to(device=param.device, dtype=param.dtype)
        handles = [self._modules[path].register_forward_hook(hook_for(name)) for name, path in self.layers.items()]
        try:
            self.model(inputs)
        finally:
            for handle in handles:
                handle.remove()
        for name, k in widths.items():
            if name not in self.sums:
                n_b = self.scheme.bins_for(k)
                self.sums[name] = torch.zeros(k, n_b, dtype=torch.float64, device=inputs.device)
                self.counts[name] = torch.zeros(n_b, dtype=torch.float64, device=inputs.device)

    def compute(self, info: dict | None = None, reduce: bool = True) -> DissectionResult:
        """R, DS and preferred bins from the accumulated sums.

        Args:
            info: provenance stored in the result.
            reduce: under ``torch.distributed``, all-reduce sums, counts and image counts across
                processes first (every process must call ``compute``); False keeps this process's data.

        Warns (:class:`EmptyBinWarning`) when some bins have no valid pixel.
        """
        missing = [n for n in self.layers if n not in self.sums]
        if missing:
            raise ValueError(f"no data accumulated for layers {', '.join(missing)} (did they run in the forward pass?)")
        sums = {n: self.sums[n].clone() for n in self.layers}
        counts = {n: self.counts[n].clone() for n in self.layers}
        num_images = self.num_images
        if reduce and dist.is_available() and dist.is_initialized():
            flat = torch.cat([t.flatten() for n in self.layers for t in (sums[n], counts[n])]
                             + [torch.tensor([float(num_images)], dtype=torch.float64, device=sums[next(iter(sums))].device)])
            dist.all_reduce(flat)
            offset = 0
            for n in self.layers:
                for t in (sums[n], counts[n]):
                    t.copy_(flat[offset:offset + t.numel()].view_as(t))
                    offset += t.numel()
            num_images = int(round(float(flat[-1])))
        layers = {}
        for name, path in self.layers.items():
            s, c = sums[name].cpu(), counts[name].cpu()
            r = mean_responses(s, c)
            sel = selectivity_index(r, c > 0)
            layers[name] = LayerSelectivity(name, path, self.edges(s.shape[1]).clone(), s, c, r, sel.ds,
                                            sel.preferred_bin, sel.defined)
        result = DissectionResult(layers, self.scheme, self.depth_range, num_images, dict(info or {}))
        _warn_empty(result)
        return result


def check_depth_range(depth_range) -> tuple[float, float]:
    """``depth_range`` as (min, max) floats in metres, after checking 0 <= min < max (the error names ``depth_range``)."""
    try:
        lo, hi = (float(v) for v in depth_range)
    except (TypeError, ValueError):
        raise ValueError(f"depth_range: expected (min, max) in metres, got {depth_range!r}") from None
    if not (0 <= lo < hi < float("inf")):  # also NaN
        raise ValueError(f"depth_range: expected finite 0 <= min < max, got {depth_range!r}")
    return lo, hi


def _warn_empty(result: DissectionResult) -> None:
    empty = {name: layer.empty_bins for name, layer in result.layers.items() if layer.empty_bins}
    if empty:
        parts = [f"{name} (N_b={result.layers[name].num_bins}): {bins}" for name, bins in empty.items()]
        warnings.warn("depth bins without any valid pixel, left out of the non-max mean of DS: " + "; ".join(parts),
                      EmptyBinWarning, stacklevel=3)
    undefined = {name: int((~layer.ds_defined).sum()) for name, layer in result.layers.items() if not layer.ds_defined.all()}
    if undefined:
        warnings.warn("DS undefined (fewer than two non-empty bins), set to 0 for units of: "
                      + ", ".join(f"{n} ({k} units)" for n, k in undefined.items()), EmptyBinWarning, stacklevel=3)


def fit_bins(scheme: BinScheme, dataset: Dataset, depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE,
             samples_per_image: int = 20_000, seed: int = 0) -> BinScheme:
    """Fit a quantile scheme on the valid ground truth of ``dataset`` (other schemes are returned as is).

    Takes up to ``samples_per_image`` seeded random valid pixels of every image.
    """
    if scheme.is_fitted:
        return scheme
    g = torch.Generator().manual_seed(seed)
    values = []
    lo, hi = depth_range
    read = 0
    for i in range(len(dataset)):
        s = dataset[i]
        if is_skipped(s):  # an unreadable sample under on_error="skip"
            continue
        read += 1
        d = s["depth"].flatten()
        ok = (d > lo) & (d < hi)
        if "valid" in s:
            ok &= s["valid"].flatten().bool()
        d = d[ok]
        if d.numel() > samples_per_image:
            d = d[torch.randperm(d.numel(), generator=g)[:samples_per_image]]
        values.append(d.double())
    if len(dataset) and not read:
        raise no_readable_sample(dataset)
    return scheme.fit(torch.cat(values) if values else torch.zeros(0, dtype=torch.float64))


def dissect(model: nn.Module, dataset: Dataset, layers=None, bins: str | BinScheme = DEFAULT_BINS,
            depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE, batch_size: int = DEFAULT_BATCH_SIZE,
            num_workers: int = DEFAULT_NUM_WORKERS,
            progress: bool = True, dtype: torch.dtype = torch.float64, shard: bool = True,
            preprocess=None) -> DissectionResult:
    """Depth selectivity of a model's units over a data set of sample dicts.

    Args:
        model: a depth model (eval mode is set for the pass and restored after).
        dataset: sample dicts as the data sets of :mod:`seldepth.data` give them: ``image``
            (3, H, W) in [0, 1], ``depth`` (1, H, W) metres, ``valid`` (1, H, W) bool, ``meta``;
            loaded in batches by the loader of :func:`seldepth.evaluation.evaluate`.
        layers: layer names or module paths (default the model's ``selectivity_layers``).
        bins: bin spec (``sid:64``, ``linear:32``, ``quantile:64``, ...) or :class:`BinScheme`;
            a quantile scheme is fitted on ``dataset`` first.
        depth_range: valid ground truth ``min < gt < max``, metres (NYU default).
        batch_size, num_workers: of the data loader.
        progress: show a progress bar.
        dtype: see :class:`Dissector`.
        shard: under ``torch.distributed``, each process takes every world_size-th image
            (no padding, no duplicates); sums and counts are all-reduced before DS.
        preprocess: image batch -> model input; default ``model_preprocessing(model)``.

    Returns:
        :class:`DissectionResult`.
    """
    depth_range = check_depth_range(depth_range)
    check_number("batch_size", batch_size, 1, integer=True)
    check_number("num_workers", num_workers, 0, integer=True)
    resolve_layers(model, layers)  # fail on unknown names before reading data
    scheme = fit_bins(parse_bins(bins), dataset, depth_range)
    dissector = Dissector(model, layers, scheme, depth_range, dtype)
    preprocess = preprocess or model_preprocessing(model)
    data = dataset
    if shard and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        data = Subset(dataset, list(range(dist.get_rank(), len(dataset), dist.get_world_size())))
    loader = DataLoader(data, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples)
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(sample_batches(loader), total=len(loader), desc="dissect", unit="batch", disable=not progress):
            dissector.update(preprocess(batch["image"]), batch["depth"], batch["valid"])
        if dissector.num_images == 0 and len(dataset):  # no valid pixel, or no readable sample (DatasetError)
            dissector.probe(preprocess(first_sample(dataset)["image"][None]))
    finally:
        model.train(was_training)
    return dissector.compute()
