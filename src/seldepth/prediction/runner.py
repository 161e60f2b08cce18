"""The ``seldepth predict`` loop: inputs in, images batched by size through the model, files out."""

from __future__ import annotations

import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from seldepth.data.errors import DatasetError
from seldepth.data.images import read_rgb
from seldepth.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CMAP,
    DEFAULT_PNG_COMPRESSION,
    DEFAULT_PREDICT_OUT,
    check_number,
    require,
)
from seldepth.atomic import remove_stale_temporaries
from seldepth.inference import check_some_finite, count_non_finite, predict_depth
from seldepth.models.loading import load_model
from seldepth.prediction.colormap import colormap_lut
from seldepth.prediction.inputs import InputItem, expand_inputs
from seldepth.prediction.outputs import (
    NpyStackWriter,
    parse_outputs,
    parse_range,
    png_scale_of,
    write_image_outputs,
)
from seldepth.prediction.overlap import OrderedStage, StageTimes, prefetched
from seldepth.prediction.pointcloud import (
    INTRINSICS_HELP,
    Intrinsics,
    intrinsics_from_metadata,
)
from seldepth.prediction.video import DepthVideoWriter, iter_frames, open_video

VIDEO_RANGE_PERCENTILES = (2.0, 98.0)
VIDEO_OUTPUTS = ("color", "side", "npy")  # what can be written per video
MAX_WRITERS = 4  # writer threads by default: the CPU count, at most this


@dataclass
class PredictionSummary:
    """What a :func:`predict_paths` run did.

    Attributes:
        written: the files written, in order.
        skipped: (input path, reason) of each input that could not be read.
        notes: things the user should know (renamed outputs, padded videos, video colour ranges).
        images, videos, frames: how many images, videos and video frames were predicted.
        non_finite: predicted depth values that were NaN or infinite (written as invalid: 0 in the PNG).
        values: predicted depth values in all.
        removed: temporary files of an earlier, killed run removed from the output folder.
        timings: seconds spent per stage (``read``, ``infer``, ``write``: summed over the threads that ran it)
            and in all (``total``, wall time); a stage longer than ``total`` ran on several threads at once.
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    images: int = 0
    videos: int = 0
    frames: int = 0
    non_finite: int = 0
    values: int = 0
    removed: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def timings_add(self, times: StageTimes) -> None:
        """Add the seconds of a run's stages to :attr:`timings`."""
        for stage, seconds in times.seconds.items():
            self.timings[stage] = self.timings.get(stage, 0.0) + seconds

    def count(self, depths: np.ndarray) -> None:
        """Add predicted depth maps to the counts of values and non-finite values."""
        self.non_finite += count_non_finite(depths)
        self.values += int(np.size(depths))

    def format(self, out_dir: str | os.PathLike | None = None, shown: int = 20) -> str:
        """A few lines for the terminal: counts, notes, and each skipped input with its reason."""
        lines = [f"predicted {self.images} images" + (f" and {self.videos} videos ({self.frames} frames)" if self.videos else "")
                 + f"; wrote {len(self.written)} files" + (f" in {out_dir}" if out_dir is not None else "")]
        lines += [f"note: {n}" for n in self.notes]
        if self.non_finite:
            lines.append(f"warning: {self.non_finite} of {self.values} predicted depth values are NaN or infinite "
                         f"(written as invalid depth)")
        if self.removed:
            lines.append(f"removed {len(self.removed)} temporary files left by an interrupted run")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable inputs:")
            lines += [f"  {path}: {reason}" for path, reason in self.skipped[:shown]]
            if len(self.skipped) > shown:
                lines.append(f"  ... and {len(self.skipped) - shown} more")
        return "\n".join(lines)


def _uint8_rgb(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0, 1] -> (H, W, 3) uint8."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _predict(model, images: torch.Tensor, flip: bool) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W) float32 metres at the input resolution."""
    depth = predict_depth(model, images, flip=flip, size=tuple(images.shape[-2:]))
    return depth[:, 0].float().cpu().numpy()


@dataclass(frozen=True)
class _Settings:
    """What every image and video of one run is written with."""

    out_dir: Path
    batch_size: int
    depth_range: tuple[float, float] | None
    intrinsics: Intrinsics | None
    flip: bool
    progress: bool
    png_scale: float
    image_outputs: tuple[str, ...]
    video_outputs: tuple[str, ...]
    cmap: str
    png_compression: int
    workers: int  # writer threads; 0: the sequential path

    def stage(self, name: str, workers: int, depth: int, times: StageTimes) -> OrderedStage:
        return OrderedStage(name, workers if self.workers else 0, depth, times)


def _video_outputs(outputs, image_outputs: tuple[str, ...], video_npy: bool) -> tuple[str, ...]:
    """Per video: ``color`` (NAME_depth.mp4), ``side`` (NAME_side.mp4), ``npy`` ((T, H, W) NAME_depth.npy)."""
    chosen = ("color",) if outputs is None else tuple(o for o in image_outputs if o in VIDEO_OUTPUTS)
    return (*chosen, "npy") if video_npy and "npy" not in chosen else chosen


def check_predict_args(outputs=None, cmap: str = DEFAULT_CMAP, grayscale: bool = False,
                       png_compression: int = DEFAULT_PNG_COMPRESSION, ply: bool = False) -> tuple[tuple[str, ...], str]:
    """Check the output options of :func:`predict_paths` before any work: (the outputs per image, the colour map).

    Raises:
        ValueError: naming the argument: an unknown output or colour map, ``cmap`` with ``grayscale``, a
            ``png_compression`` outside 0..9.
    """
    check_number("png_compression", png_compression, 0, 9, integer=True)
    image_outputs = parse_outputs(outputs)
    if ply and "ply" not in image_outputs:
        image_outputs = (*image_outputs, "ply")
    if grayscale and cmap != DEFAULT_CMAP:
        raise ValueError(f"cmap {cmap!r} and grayscale: give one of them (grayscale is the colour map 'gray')")
    cmap = "gray" if grayscale else cmap
    colormap_lut(cmap)  # an unknown name is refused here
    return image_outputs, cmap


def predict_paths(model, inputs, out_dir: str | os.PathLike = DEFAULT_PREDICT_OUT, batch_size: int = DEFAULT_BATCH_SIZE,
                  depth_range=None, ply: bool = False, intrinsics: Intrinsics | None = None, flip: bool = False,
                  video_npy: bool = False, progress: bool = True, png_scale: float | None = None, outputs=None,
                  cmap: str = DEFAULT_CMAP, grayscale: bool = False, png_compression: int = DEFAULT_PNG_COMPRESSION,
                  sequential: bool = False, writers: int | None = None) -> PredictionSummary:
    """Predict depth for image files, folders, list files and videos; write the results under ``out_dir``.

    Per image NAME (the file stem; sub-folders of a folder input are kept), as ``outputs`` chooses:
    ``NAME_depth.npy`` (``npy``: float32 metres at the image's resolution), ``NAME_depth.png`` (``png16``:
    uint16 metres x ``png_scale``: millimetres for indoor models, x256 for KITTI models; 0 = invalid),
    ``NAME_color.png`` (``color``: the colour-mapped depth), ``NAME_side.png`` (``side``: the image and the
    colour-mapped depth side by side) and ``NAME.ply`` (``ply``: binary PLY, XYZ + RGB, one point per valid
    pixel). Per video: ``NAME_depth.mp4`` (``color``: colour-mapped, same frames and rate, one fixed colour
    range), ``NAME_side.mp4`` (``side``) and ``NAME_depth.npy`` (``npy`` or ``video_npy``: (T, H, W)).

    Reading and decoding, inference, and colour-mapping, encoding and writing overlap (a reader thread,
    ``writers`` writer threads, inference on the calling thread; bounded queues); every output is written
    atomically and the summary lists them in input order. ``sequential`` does one step after another on the
    calling thread instead (the same work; for comparison and debugging).

    All argument checks (inputs exist, range, outputs, colour map, intrinsics for ``ply``) happen before any
    prediction. Unreadable images and videos are skipped and listed in the summary with the reason.

    Args:
        model: a depth model (anything :func:`~seldepth.inference.predict_depth` runs), a model file path or a
            pretrained model name.
        inputs: INPUT paths (see :func:`~seldepth.prediction.inputs.expand_inputs`).
        out_dir: output folder (default ``depth``).
        batch_size: images (or video frames) per forward pass; images of equal size are batched together.
        depth_range: fixed colour range (min, max) in metres or ``"MIN,MAX"``; default per image, and for
            a video the 2nd-98th percentile of its first batch of frames, then kept.
        ply: also write point clouds (adds ``ply`` to ``outputs``); needs ``intrinsics`` or a model whose
            metadata has ``intrinsics``.
        intrinsics: camera intrinsics for the PLY files.
        flip: horizontal-flip test-time averaging.
        video_npy: also save each video's depth frames as one (T, H, W) float32 ``.npy``.
        progress: show a progress bar (stderr) and report skipped inputs as they happen.
        png_scale: values per metre in the 16-bit PNGs; default the model's (:func:`png_scale_of`: 1000,
            256 for KITTI models). Depth beyond 65535 / png_scale metres is clipped with a
            :class:`~seldepth.prediction.outputs.DepthClippedWarning`.
        outputs: what to write, ``"npy,png16,color"`` or a list (:func:`~seldepth.prediction.outputs.parse_outputs`);
            default ``npy``, ``png16``, ``color`` per image and ``color`` per video.
        cmap: matplotlib colour map of the pictures; near is its low end (turbo: blue), far its high end (red).
        grayscale: grayscale pictures (near black, far white) instead of ``cmap``.
        png_compression: zlib level of the PNGs, 0 (none) .. 9 (smallest, slowest).
        sequential: no overlap: read, predict and write one step after another on the calling thread.
        writers: writer threads (default: the CPU count, at most 4); ignored with ``sequential``.

    Returns:
        A :class:`PredictionSummary` (with the seconds spent per stage in ``timings``).

    Raises:
        FileNotFoundError: an input or the model file does not exist.
        ValueError: naming the argument: bad ``depth_range``, ``batch_size``, ``outputs``, ``cmap``,
            ``png_compression`` or ``writers``, ``ply`` without intrinsics, no images found.
    """
    depth_range = parse_range(depth_range)
    batch_size = check_number("batch_size", batch_size, 1, integer=True)  # 2.5 refused, never truncated
    writers = check_number("writers", writers, 1, integer=True, optional=True)
    image_outputs, cmap = check_predict_args(outputs, cmap, grayscale, png_compression, ply)
    video_outputs = _video_outputs(outputs, image_outputs, video_npy)
    out_dir = Path(out_dir)
    items, notes = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs), exclude=out_dir)
    if any(it.kind == "video" for it in items) and not video_outputs:
        raise ValueError(f"outputs {','.join(image_outputs)}: nothing of it is written for a video; add color, side or npy")
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    png_scale = png_scale_of(model) if png_scale is None else float(check_number("png_scale", png_scale, 0, low_open=True))
    if "ply" in image_outputs:
        intrinsics = intrinsics or intrinsics_from_metadata(getattr(model, "metadata", None))
        if intrinsics is None:
            raise ValueError("--ply needs camera intrinsics: " + INTRINSICS_HELP)
    else:
        intrinsics = None
    settings = _Settings(out_dir, batch_size, depth_range, intrinsics, flip, progress, png_scale, image_outputs,
                         video_outputs, cmap, png_compression,
                         0 if sequential else (writers or min(MAX_WRITERS, os.cpu_count() or 1)))

    summary = PredictionSummary(notes=notes)
    out_dir.mkdir(parents=True, exist_ok=True)
    # an earlier run killed mid-write (SIGKILL) left hidden temporaries: remove them; every output of every
    # image is written again below, so its incomplete set of outputs is completed
    folders = {out_dir, *((out_dir / it.name).parent for it in items)}
    for folder in sorted(folders):
        summary.removed += remove_stale_temporaries(folder, (".tmp", ".raw"))
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    start = time.perf_counter()
    try:
        images = [it for it in items if it.kind == "image"]
        if images:
            _predict_images(model, images, settings, summary)
        for item in (it for it in items if it.kind == "video"):
            _predict_video(model, item, settings, summary)
    finally:
        if isinstance(model, torch.nn.Module):
            model.train(was_training)
        summary.timings["total"] = time.perf_counter() - start
    check_some_finite(model, summary.non_finite, summary.values, f"{summary.images} images and {summary.frames} "
                      f"video frames (their outputs in {out_dir} hold no depth)")
    return summary


def _skip(summary: PredictionSummary, path, reason: str, progress: bool) -> None:
    summary.skipped.append((str(path), reason))
    if progress:
        tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)


def _read_image(item: InputItem) -> tuple[InputItem, torch.Tensor | None, str | None]:
    """(item, (3, H, W) RGB in [0, 1], None), or (item, None, why it cannot be read)."""
    try:
        return item, read_rgb(item.path), None
    except DatasetError as exc:
        reason = str(exc)
        reason = reason[len(str(item.path)) + 2:] if reason.startswith(f"{item.path}: ") else reason
        if item.source != str(item.path) and "line" in item.source:
            reason += f" (listed in {item.source})"
        return item, None, reason


def _predict_images(model, items: list[InputItem], settings: _Settings, summary: PredictionSummary) -> None:
    times = StageTimes()
    written: dict[int, list[Path]] = {}  # input position -> its files, listed in input order at the end
    position = {id(item): i for i, item in enumerate(items)}
    needs_rgb = "side" in settings.image_outputs or "ply" in settings.image_outputs
    buckets: dict[tuple[int, int], list[tuple[InputItem, torch.Tensor]]] = {}
    depth = 2 * settings.batch_size  # images read ahead, and images waiting to be written
    reader = settings.stage("read", 1, depth, times)
    writer = settings.stage("write", settings.workers, depth + settings.workers, times)

    def write(item: InputItem, depth_map: np.ndarray, rgb: torch.Tensor | None) -> tuple[InputItem, list[Path]]:
        return item, write_image_outputs(settings.out_dir, item.name, depth_map,
                                         _uint8_rgb(rgb) if rgb is not None else None, settings.depth_range,
                                         settings.intrinsics, settings.png_scale, settings.image_outputs,
                                         settings.cmap, settings.png_compression)

    with reader, writer, tqdm(total=len(items), unit="img", desc="predict", disable=not settings.progress,
                              file=sys.stderr) as bar:
        def collect(done: list) -> None:
            for item, paths in done:
                written[position[id(item)]] = paths
                summary.images += 1
                bar.update(1)

        def flush(size) -> None:
            batch = buckets.pop(size, [])
            if not batch:
                return
            with times.timed("infer"):
                depths = _predict(model, torch.stack([rgb for _, rgb in batch]), settings.flip)
            summary.count(depths)
            for (item, rgb), depth_map in zip(batch, depths):
                collect(writer.submit(write, item, depth_map, rgb if needs_rgb else None))

        for item, rgb, reason in prefetched(_read_image, items, reader):
            if rgb is None:
                _skip(summary, item.path, reason, settings.progress)
                bar.update(1)
                continue
            size = tuple(rgb.shape[-2:])
            buckets.setdefault(size, []).append((item, rgb))
            if len(buckets[size]) >= settings.batch_size:
                flush(size)
            elif sum(map(len, buckets.values())) > depth:  # many sizes: memory stays bounded, the oldest go first
                flush(next(iter(buckets)))
        for size in list(buckets):
            flush(size)
        collect(writer.drain())
    summary.written += [path for i in sorted(written) for path in written[i]]
    summary.timings_add(times)


def _video_range(depths: np.ndarray) -> tuple[float, float]:
    valid = depths[np.isfinite(depths) & (depths > 0)]
    if not valid.size:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(valid, VIDEO_RANGE_PERCENTILES))
    return (lo, hi) if hi > lo else (lo, lo + 1e-3)


class _VideoOutputs:
    """The files of one video (colour-mapped .mp4, side-by-side .mp4, (T, H, W) .npy), made on its first frames."""

    def __init__(self, base: Path, rate, height: int, width: int, depth_range, outputs: tuple[str, ...], cmap: str):
        self.writers: list[DepthVideoWriter] = []
        self.npy = None
        try:
            for what in ("color", "side"):
                if what in outputs:
                    suffix = "_depth.mp4" if what == "color" else "_side.mp4"
                    self.writers.append(DepthVideoWriter(base.with_name(base.name + suffix), rate, height, width,
                                                         depth_range, side=what == "side", cmap=cmap))
            if "npy" in outputs:
                self.npy = NpyStackWriter(base.with_name(base.name + "_depth.npy"), height, width)
        except BaseException as exc:
            self.discard(exc)
            raise

    @property
    def padded(self) -> DepthVideoWriter | None:
        return next((w for w in self.writers if w.padded), None)

    def write(self, depths: np.ndarray, frames: np.ndarray | None) -> None:
        for i, depth in enumerate(depths):
            for writer in self.writers:
                writer.write(depth, frames[i] if writer.side else None)
            if self.npy is not None:
                self.npy.append(depth)

    def close(self) -> list[Path]:
        paths = []
        for writer in self.writers:
            writer.close()
            paths.append(writer.path)
        if self.npy is not None:
            paths.append(self.npy.close())
        return paths

    def discard(self, exc: BaseException) -> None:
        for writer in self.writers:
            writer.close(exc)
        if self.npy is not None:
            self.npy.abort()


def _predict_video(model, item: InputItem, settings: _Settings, summary: PredictionSummary) -> None:
    av = require("av")  # the video extra
    try:
        container, stream, rate, count = open_video(item.path)
    except ValueError as exc:
        reason = str(exc)
        _skip(summary, item.path, reason[len(str(item.path)) + 2:] if reason.startswith(f"{item.path}: ") else reason,
              settings.progress)
        return
    base = settings.out_dir / item.name
    outputs: _VideoOutputs | None = None
    error = None
    frames = 0
    times = StageTimes()
    decoded = iter_frames(container, stream)
    needs_rgb = "side" in settings.video_outputs

    def read_batch() -> np.ndarray | None:  # one thread reads: frames stay in order
        batch = list(itertools.islice(decoded, settings.batch_size))
        return np.stack(batch) if batch else None

    try:
        # the reader runs ahead by two batches; one writer thread colour-maps and encodes the frames in order
        with settings.stage("read", 1, 2, times) as reader, settings.stage("write", 1, 2, times) as writer, \
                tqdm(total=count or None, unit="frame", desc=item.name, disable=not settings.progress,
                     file=sys.stderr) as bar:
            def collect(done: list) -> None:
                for n in done:
                    bar.update(n)

            def batches():
                while True:
                    for batch in reader.submit(read_batch):
                        if batch is None:
                            return
                        yield batch

            def write(depths: np.ndarray, rgb: np.ndarray | None) -> int:
                outputs.write(depths, rgb)
                return len(depths)

            for batch in batches():
                frames += len(batch)
                with times.timed("infer"):
                    depths = _predict(model, torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0),
                                      settings.flip)
                summary.count(depths)
                if outputs is None:
                    height, width = depths.shape[-2:]
                    depth_range = settings.depth_range
                    if depth_range is None:
                        depth_range = _video_range(depths)
                        summary.notes.append(f"{item.path}: colour range {depth_range[0]:.3f}..{depth_range[1]:.3f} m "
                                             f"(2nd-98th percentile of the first {len(depths)} frames), fixed for the "
                                             f"whole video")
                    outputs = _VideoOutputs(base, rate, height, width, depth_range, settings.video_outputs,
                                            settings.cmap)
                    padded = outputs.padded
                    if padded is not None:
                        summary.notes.append(f"{item.path}: {width}x{height} video padded to {padded.out_width}x"
                                             f"{padded.out_height} (one-pixel edge copy): yuv420p needs even sizes")
                collect(writer.submit(write, depths, batch if needs_rgb else None))
            collect(writer.drain())
    except (av.error.FFmpegError, ValueError) as exc:  # a broken video: skip it, leave no partial files
        error = exc
        if outputs is not None:
            outputs.discard(exc)
    except BaseException as exc:  # anything else (e.g. KeyboardInterrupt) goes up, leaving no partial files
        if outputs is not None:
            outputs.discard(exc)
        raise
    else:
        if outputs is not None:
            summary.written += outputs.close()
    finally:
        container.close()
        summary.timings_add(times)
    if error is not None:
        _skip(summary, item.path, f"video could not be decoded ({error})", settings.progress)
    elif outputs is None:
        _skip(summary, item.path, "video has no frames", settings.progress)
    else:
        summary.videos += 1
        summary.frames += frames
