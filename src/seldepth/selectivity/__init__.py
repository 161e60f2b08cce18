"""Neuron depth selectivity (You et al., ICCV 2021; see docs/references.md): depth bins, per-bin responses, dissection.

- :mod:`~seldepth.selectivity.bins`: bin schemes (``sid``, ``linear``, ``log``, ``quantile``) and
  the map from depth to bin indices.
- :mod:`~seldepth.selectivity.responses`: per-unit per-bin sums of upsampled activations via the
  adjoint of bilinear upsampling; the one implementation shared by dissection and the regulariser.
- :mod:`~seldepth.selectivity.dissect`: hooks, streamed float64 accumulation, R, DS, results.
- :mod:`~seldepth.selectivity.tuning`: beside DS, each unit's tuning width and kind (tuned, ramp, flat).
- :mod:`~seldepth.selectivity.regularizer`: the assign loss (L_assign) for training.
- :mod:`~seldepth.selectivity.ablation`: top-k / random-k / bottom-k unit ablation.
- :mod:`~seldepth.selectivity.ablation_by_bin`: ablation per depth range (each depth group's units
  against as many random units, scored per ground-truth depth range).
"""

from seldepth.selectivity.ablation import DEFAULT_FRACTIONS, AblationResult, ablate
from seldepth.selectivity.ablation_by_bin import (
    ByBinAblation,
    UnitAssignment,
    ablate_by_bin,
    coarse_groups,
    diagonal_dominance,
    read_assignment,
)
from seldepth.selectivity.bins import (
    DEFAULT_BINS,
    DEFAULT_DEPTH_RANGE,
    BinScheme,
    EdgeRefinement,
    depth_to_bins,
    parse_bins,
    sid_edges,
)
from seldepth.selectivity.dissect import (
    DissectionResult,
    Dissector,
    EmptyBinWarning,
    LayerSelectivity,
    dissect,
    format_table,
    resolve_layers,
)
from seldepth.selectivity.regularizer import (
    SelectivityConfig,
    SelectivityRegularizer,
    assigned_bins,
    assigned_selectivity,
)
from seldepth.selectivity.tuning import TUNING_KINDS, Tuning, tuning_of
from seldepth.selectivity.responses import (
    BinnedResponses,
    Selectivity,
    bin_counts,
    binned_responses,
    mean_responses,
    project_bins,
    selectivity_index,
)

__all__ = [
    "DEFAULT_BINS", "DEFAULT_DEPTH_RANGE", "DEFAULT_FRACTIONS",
    "BinScheme", "BinnedResponses", "DissectionResult", "Dissector", "EdgeRefinement", "EmptyBinWarning",
    "LayerSelectivity", "Selectivity", "bin_counts", "binned_responses", "depth_to_bins", "dissect", "format_table",
    "mean_responses", "parse_bins", "project_bins", "resolve_layers", "selectivity_index", "sid_edges",
    "TUNING_KINDS", "Tuning", "tuning_of",
    "SelectivityConfig", "SelectivityRegularizer", "assigned_bins", "assigned_selectivity", "AblationResult", "ablate",
    "ByBinAblation", "UnitAssignment", "ablate_by_bin", "coarse_groups", "diagonal_dominance", "read_assignment",
]
