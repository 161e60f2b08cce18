"""Depth for image files, folders, file lists and videos, written to a folder (``seldepth predict``).

Example:
    >>> from seldepth.prediction import predict_paths
    >>> summary = predict_paths("meter_xxs_nyu.safetensors", ["photos/"], "depth/", ply=False)
    >>> print(summary.format())
"""

from seldepth.prediction.inputs import (
    IMAGE_SUFFIXES,
    LIST_SUFFIXES,
    VIDEO_SUFFIXES,
    InputItem,
    expand_inputs,
)
from seldepth.prediction.outputs import (
    DepthClippedWarning,
    depth_to_png16,
    parse_outputs,
    parse_range,
    png_scale_of,
    write_image_outputs,
)
from seldepth.prediction.pointcloud import (
    Intrinsics,
    resolve_intrinsics,
    unproject,
    write_ply,
)
from seldepth.prediction.runner import PredictionSummary, check_predict_args, predict_paths
from seldepth.prediction.video import video_codec

__all__ = [
    "DepthClippedWarning", "IMAGE_SUFFIXES", "LIST_SUFFIXES", "VIDEO_SUFFIXES", "InputItem", "Intrinsics",
    "PredictionSummary", "check_predict_args", "depth_to_png16", "expand_inputs", "parse_outputs", "parse_range", "png_scale_of", "predict_paths",
    "resolve_intrinsics", "unproject",
    "video_codec", "write_image_outputs", "write_ply",
]
