"""Scoring depth: the evaluation protocols (crops, caps, ranges), the metrics, and evaluating a model on a data set.

``protocol.py`` says which pixels count and how (Eigen / Garg crops, depth caps, median scaling);
``metrics.py`` accumulates the standard metrics across batches and processes (the one implementation
used by training's validation and by ``seldepth eval``); ``evaluate.py`` runs a model over a data set.
"""

from seldepth.evaluation.evaluate import evaluate, format_table
from seldepth.evaluation.metrics import METRIC_NAMES, DepthMetrics, SemanticIoU
from seldepth.evaluation.protocol import PRESETS, Protocol, get_protocol, protocol_for_data

__all__ = ["METRIC_NAMES", "PRESETS", "DepthMetrics", "Protocol", "SemanticIoU", "evaluate", "format_table", "get_protocol",
           "protocol_for_data"]
