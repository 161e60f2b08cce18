"""Evaluation protocols: depth range, crop and capped ranges, printed with every result.

Presets (as in the evaluation code of BTS, AdaBins, ZoeDepth and monodepth2):
    ``nyu``    1e-3 < gt < 10 m, Eigen crop (rows 45:471, cols 41:601 of 480x640)
    ``kitti``  1e-3 < gt < 80 m, Garg crop
    ``kitti_eigen``  1e-3 < gt < 80 m, Eigen crop
    ``synthetic``  1e-3 < gt < 10 m, no crop (rendered images have no border)
Crops are stored as fractions of the image, so they apply to any resolution and give the
exact published pixel ranges at the data sets' native sizes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch

from seldepth.data.spec import ResolvedSpec, parse_spec

# Crops as (top, bottom, left, right) fractions of (H, W).
CROPS: dict[str, tuple[float, float, float, float]] = {
    "eigen_nyu": (45 / 480, 471 / 480, 41 / 640, 601 / 640),
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen_kitti": (0.3324324, 0.91351351, 0.03594771, 0.96405229),
}


def crop_bounds(crop: str, height: int, width: int) -> tuple[int, int, int, int]:
    """Pixel bounds (top, bottom, left, right) of a named crop on an image of the given size."""
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; available: {', '.join(CROPS)}")
    t, b, l, r = CROPS[crop]
    if crop == "eigen_nyu":  # published as exact pixel indices at 480x640
        return round(t * height), round(b * height), round(l * width), round(r * width)
    return int(t * height), int(b * height), int(l * width), int(r * width)


def crop_mask(crop: str | None, height: int, width: int, device=None) -> torch.Tensor:
    """(H, W) bool mask, True inside the crop (everywhere when ``crop`` is None)."""
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    if crop is None:
        mask[:] = True
        return mask
    t, b, l, r = crop_bounds(crop, height, width)
    mask[t:b, l:r] = True
    return mask


@dataclass(frozen=True)
class Protocol:
    """How predictions are compared with ground truth.

    Attributes:
        name: preset name, or ``custom``.
        min_depth, max_depth: valid ground truth is ``min_depth < gt < max_depth``;
            predictions are clamped to this range (inf -> max, NaN -> min).
        crop: name of a crop in ``CROPS`` or None.
        caps: extra depth caps (m): metrics again on pixels with gt <= cap, predictions
            clamped to the cap (the robustness-to-depth-range figures of Jiao et al., ECCV 2018).
        flip: average the prediction with that of the horizontally flipped image.
        median_scaling: multiply each image's prediction by median(gt) / median(pred) over its
            scored pixels first (depth known only up to scale: self-supervised models); the
            ratios' mean and spread (std / mean) are reported with the metrics.
    """

    name: str = "nyu"
    min_depth: float = 1e-3
    max_depth: float = 10.0
    crop: str | None = "eigen_nyu"
    caps: tuple[float, ...] = field(default_factory=tuple)
    flip: bool = False
    median_scaling: bool = False

    def __post_init__(self):
        if not (self.min_depth >= 0 and self.max_depth > self.min_depth):
            raise ValueError(f"protocol depth range must satisfy 0 <= min < max, got {self.min_depth}..{self.max_depth}")
        if self.crop is not None and self.crop not in CROPS:
            raise ValueError(f"unknown crop {self.crop!r}; available: {', '.join(CROPS)}")
        for cap in self.caps:
            if not (math.isfinite(cap) and self.min_depth < cap):
                raise ValueError(f"depth cap {cap} must be a finite number above min_depth {self.min_depth}")

    def describe(self) -> str:
        """One line for the head of a results table."""
        crop = self.crop or "none"
        caps = ", caps " + "/".join(f"{c:g}" for c in self.caps) + " m" if self.caps else ""
        scaling = ", median-scaled per image" if self.median_scaling else ""
        return (f"protocol {self.name}: {self.min_depth:g} < gt < {self.max_depth:g} m, crop {crop}{scaling}, "
                f"predictions clamped to range, flip {'on' if self.flip else 'off'}{caps}, per image then averaged")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["caps"] = list(self.caps)
        return d


PRESETS = {
    "nyu": Protocol("nyu", 1e-3, 10.0, "eigen_nyu"),
    "kitti": Protocol("kitti", 1e-3, 80.0, "garg"),
    "kitti_eigen": Protocol("kitti_eigen", 1e-3, 80.0, "eigen_kitti"),
    "synthetic": Protocol("synthetic", 1e-3, 10.0, None),
    "none": Protocol("none", 1e-3, 1e6, None),
}


def get_protocol(name: str, flip: bool = False, caps: tuple[float, ...] = (), median_scaling: bool = False) -> Protocol:
    """A preset protocol with ``flip``, ``caps`` and ``median_scaling`` set."""
    if name not in PRESETS:
        raise ValueError(f"unknown protocol {name!r}; available: {', '.join(PRESETS)}")
    return replace(PRESETS[name], flip=flip, caps=tuple(float(c) for c in caps), median_scaling=median_scaling)


# The protocol each data spec kind is scored under by default (``kitti``: KITTI's Garg crop, 80 m).
KIND_PROTOCOLS = {"nyu": "nyu", "kitti": "kitti", "synthetic": "synthetic"}


def _model_protocol(model) -> tuple[str, str] | None:
    """(protocol, reason) from a model's metadata: the data set an imported official model was trained on
    (``provenance.dataset``), else the protocol a seldepth training run validated it with
    (``provenance.config.protocol``); None when it records neither."""
    provenance = (getattr(model, "metadata", None) or {}).get("provenance") or {}
    dataset = provenance.get("dataset")
    if dataset in KIND_PROTOCOLS:
        return KIND_PROTOCOLS[dataset], f"the model was trained on {dataset} (its metadata's provenance.dataset)"
    trained = (provenance.get("config") or {}).get("protocol") if isinstance(provenance.get("config"), dict) else None
    if trained in PRESETS:
        return trained, f"the model was validated under protocol {trained} in training (its metadata's provenance.config.protocol)"
    return None


def protocol_for_data(spec: str | ResolvedSpec, model=None) -> tuple[str, str]:
    """The preset protocol that a data spec is scored under when none is given, and why.

    ``nyu:`` -> ``nyu`` (Eigen crop, 10 m), ``kitti:`` -> ``kitti`` (Garg crop, 80 m), ``synthetic:`` ->
    ``synthetic`` (no crop, 10 m). A ``folder:`` spec says nothing about the scene, so the model's metadata
    decides: the data set of an imported official model (``provenance.dataset``), else the protocol of its
    training run (``provenance.config.protocol``).

    Args:
        spec: a data spec string (``KIND:PATH[?options]``) or a :class:`~seldepth.data.spec.ResolvedSpec`.
        model: the model to be scored (anything with a ``metadata`` dict), consulted for ``folder:`` specs.

    Returns:
        (protocol name in :data:`PRESETS`, a short reason to print), e.g.
        ``("kitti", "data spec kind kitti: KITTI's Garg crop, 1e-3 < gt < 80 m")``.

    Raises:
        ValueError: a ``folder:`` spec with a model that records neither (asks for ``protocol``).
    """
    parsed = spec.parsed if isinstance(spec, ResolvedSpec) else parse_spec(spec)
    text = spec.text if isinstance(spec, ResolvedSpec) else str(spec)
    if parsed.kind in KIND_PROTOCOLS:
        name = KIND_PROTOCOLS[parsed.kind]
        p = PRESETS[name]
        crop = f"{p.crop} crop" if p.crop else "no crop"
        return name, f"data spec kind {parsed.kind}: {crop}, {p.min_depth:g} < gt < {p.max_depth:g} m"
    from_model = _model_protocol(model) if model is not None else None
    if from_model is not None:
        return from_model[0], f"data spec kind {parsed.kind} names no protocol; {from_model[1]}"
    raise ValueError(f"data spec {text} does not say which protocol applies"
                     + ("" if model is None else " and the model's metadata records no data set")
                     + "; give protocol: nyu, kitti, synthetic or none")
