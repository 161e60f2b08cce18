"""Video in and out for ``seldepth predict`` (PyAV): decoding RGB frames, writing a colour-mapped depth video."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from seldepth.atomic import atomic_path
from seldepth.prediction.colormap import colorize_depth
from seldepth.defaults import DEFAULT_CMAP, require

PREFERRED_CODECS = ("libx264", "mpeg4")


def video_codec() -> str:
    """The first of libx264, mpeg4 that this PyAV (FFmpeg) build can encode."""
    av = require("av")  # the video extra
    for name in PREFERRED_CODECS:
        if name in av.codec.codecs_available:
            try:
                av.codec.Codec(name, "w")
            except (ValueError, av.error.FFmpegError):  # known to FFmpeg, but no encoder in this build
                pass
            else:
                return name
    raise RuntimeError(f"PyAV has none of the video encoders {', '.join(PREFERRED_CODECS)}")


def open_video(path: str | os.PathLike):
    """Open a video: (container, stream, frame rate, frame count or 0 when unknown).

    Raises:
        ValueError: not a readable video (names the file).
    """
    av = require("av")  # the video extra
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"{path}: not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    return container, stream, Fraction(rate), int(stream.frames or 0)


def iter_frames(container, stream):
    """Decoded frames as (H, W, 3) uint8 RGB arrays."""
    for frame in container.decode(stream):
        yield frame.to_ndarray(format="rgb24")


def even_size(height: int, width: int) -> tuple[int, int]:
    """The size yuv420p can hold: each side rounded up to even."""
    return height + height % 2, width + width % 2


class DepthVideoWriter:
    """Colour-mapped depth frames into an .mp4 (yuv420p, one fixed colour range), written atomically.

    With ``side`` each frame is the video's RGB frame and the colour-mapped depth side by side (twice as wide).
    Odd sides are padded by one pixel (a copy of the last row / column), as yuv420p needs even sizes.

    Example:
        >>> with DepthVideoWriter("out_depth.mp4", Fraction(30), 480, 640, (0.5, 8.0)) as w:
        ...     for depth in frames: w.write(depth)
    """

    def __init__(self, path: str | os.PathLike, rate: Fraction, height: int, width: int,
                 depth_range: tuple[float, float], codec: str | None = None, side: bool = False,
                 cmap: str = DEFAULT_CMAP):
        av = self._av = require("av")  # the video extra
        self.path = Path(path)
        self.height, self.width = height, width
        self.side, self.cmap = side, cmap
        self.out_height, self.out_width = even_size(height, 2 * width if side else width)
        self.vmin, self.vmax = depth_range
        self.codec = codec or video_codec()
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        try:
            self.container = av.open(str(tmp), "w", format="mp4")
            self.stream = self.container.add_stream(self.codec, rate=rate)
            self.stream.width, self.stream.height = self.out_width, self.out_height
            self.stream.pix_fmt = "yuv420p"
            if self.codec == "libx264":
                self.stream.options = {"crf": "18", "preset": "veryfast"}
            else:
                self.stream.bit_rate = max(1_000_000, self.out_width * self.out_height * 8)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.time_base = Fraction(rate.denominator, rate.numerator)
        self.frames = 0

    @property
    def padded(self) -> bool:
        return (self.out_height, self.out_width) != (self.height, 2 * self.width if self.side else self.width)

    def write(self, depth: np.ndarray, image: np.ndarray | None = None) -> None:
        """Append one (H, W) depth frame in metres (with ``side``, beside its (H, W, 3) uint8 RGB ``image``)."""
        rgb = np.asarray(colorize_depth(depth, self.vmin, self.vmax, cmap=self.cmap))
        if rgb.shape[:2] != (self.height, self.width):
            raise ValueError(f"expected a ({self.height}, {self.width}) depth frame, got {rgb.shape[:2]}")
        if self.side:
            if image is None or np.shape(image) != (self.height, self.width, 3):
                raise ValueError(f"a side-by-side video needs each frame's ({self.height}, {self.width}, 3) RGB image, "
                                 f"got {None if image is None else np.shape(image)}")
            rgb = np.concatenate([np.asarray(image, dtype=np.uint8), rgb], axis=1)
        if self.padded:
            rgb = np.pad(rgb, ((0, self.out_height - self.height), (0, self.out_width - self.width), (0, 0)), mode="edge")
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = self.frames
        frame.time_base = self.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self, error: BaseException | None = None) -> None:
        """Flush and rename into place (or, after an error, remove the partial file)."""
        try:
            if error is None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()
            if error is None:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(type(error), error, error.__traceback__)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(exc)
        return False
