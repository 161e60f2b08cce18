"""Synthetic indoor RGB-D data: procedural rooms rendered by a vectorised ray caster.

Each frame has an RGB image, metric z-depth, a semantic class map (``CLASSES``), the
intrinsics ``K`` (NYU's, scaled) and the camera-to-world pose; sequences walk a camera
smoothly through one scene. :func:`generate` writes a data set in the NYU DenseDepth layout.

Example::

    from seldepth.data.synthetic import generate, render_frame
    frame = render_frame((0, 3), (192, 256))   # frame 3 of generate(..., seed=0)
    info = generate("synthetic", num=100, size=(192, 256), seed=0, preview=True)
"""

from seldepth.data.synthetic.camera import camera_pose, intrinsics
from seldepth.data.synthetic.geometry import CLASSES, Scene
from seldepth.data.synthetic.render import (
    MAX_DEPTH,
    MIN_DEPTH,
    render,
    render_frame,
    render_sequence,
)
from seldepth.data.synthetic.scene import sample_camera, sample_scene, sample_trajectory
from seldepth.data.synthetic.writer import (
    generate,
    parse_size,
    split_of_scenes,
    write_preview,
)

__all__ = [
    "CLASSES",
    "MAX_DEPTH",
    "MIN_DEPTH",
    "Scene",
    "camera_pose",
    "generate",
    "intrinsics",
    "parse_size",
    "render",
    "render_frame",
    "render_sequence",
    "sample_camera",
    "sample_scene",
    "sample_trajectory",
    "split_of_scenes",
    "write_preview",
]
