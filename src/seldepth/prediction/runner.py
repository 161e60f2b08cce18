"""The ``seldepth predict`` loop: inputs in, images batched by size through the model, files out."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from seldepth.data.errors import DatasetError
from seldepth.data.images import read_rgb
from seldepth.defaults import DEFAULT_BATCH_SIZE, check_number, require
from seldepth.atomic import remove_stale_temporaries
from seldepth.inference import check_some_finite, count_non_finite, predict_depth
from seldepth.models.model_file import load_model
from seldepth.prediction.inputs import InputItem, expand_inputs
from seldepth.prediction.outputs import (
    NpyStackWriter,
    parse_range,
    png_scale_of,
    write_image_outputs,
)
from seldepth.prediction.pointcloud import (
    INTRINSICS_HELP,
    Intrinsics,
    intrinsics_from_metadata,
)
from seldepth.prediction.video import DepthVideoWriter, iter_frames, open_video

VIDEO_RANGE_PERCENTILES = (2.0, 98.0)


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


def predict_paths(model, inputs, out_dir: str | os.PathLike, batch_size: int = DEFAULT_BATCH_SIZE,
                  depth_range=None, ply: bool = False, intrinsics: Intrinsics | None = None, flip: bool = False,
                  video_npy: bool = False, progress: bool = True, png_scale: float | None = None) -> PredictionSummary:
    """Predict depth for image files, folders, list files and videos; write the results under ``out_dir``.

    Per image NAME (the file stem; sub-folders of a folder input are kept): ``NAME_depth.npy``
    (float32 metres at the image's resolution), ``NAME_depth.png`` (uint16 metres x ``png_scale``:
    millimetres for indoor models, x256 for KITTI models; 0 = invalid), ``NAME_color.png`` (colour map), and with ``ply`` ``NAME.ply`` (binary PLY, XYZ + RGB,
    one point per valid pixel). Per video: ``NAME_depth.mp4`` (colour-mapped, same frames and rate,
    one fixed colour range) and with ``video_npy`` ``NAME_depth.npy`` (T, H, W).

    All argument checks (inputs exist, range, intrinsics for ``ply``) happen before any prediction.
    Unreadable images and videos are skipped and listed in the summary with the reason.

    Args:
        model: a depth model (anything :func:`~seldepth.inference.predict_depth` runs) or a model file path.
        inputs: INPUT paths (see :func:`~seldepth.prediction.inputs.expand_inputs`).
        out_dir: output folder.
        batch_size: images (or video frames) per forward pass; images of equal size are batched together.
        depth_range: fixed colour range (min, max) in metres or ``"MIN,MAX"``; default per image, and for
            a video the 2nd-98th percentile of its first batch of frames, then kept.
        ply: also write point clouds; needs ``intrinsics`` or a model whose metadata has ``intrinsics``.
        intrinsics: camera intrinsics for the PLY files.
        flip: horizontal-flip test-time averaging.
        video_npy: also save each video's depth frames as one (T, H, W) float32 ``.npy``.
        progress: show a progress bar (stderr) and report skipped inputs as they happen.
        png_scale: values per metre in the 16-bit PNGs; default the model's (:func:`png_scale_of`: 1000,
            256 for KITTI models). Depth beyond 65535 / png_scale metres is clipped with a
            :class:`~seldepth.prediction.outputs.DepthClippedWarning`.

    Returns:
        A :class:`PredictionSummary`.

    Raises:
        FileNotFoundError: an input or the model file does not exist.
        ValueError: bad ``depth_range`` or ``batch_size``, ``ply`` without intrinsics, no images found.
    """
    depth_range = parse_range(depth_range)
    batch_size = check_number("batch_size", batch_size, 1, integer=True)  # 2.5 refused, never truncated
    out_dir = Path(out_dir)
    items, notes = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs), exclude=out_dir)
    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    png_scale = png_scale_of(model) if png_scale is None else float(check_number("png_scale", png_scale, 0, low_open=True))
    if ply:
        intrinsics = intrinsics or intrinsics_from_metadata(getattr(model, "metadata", None))
        if intrinsics is None:
            raise ValueError("--ply needs camera intrinsics: " + INTRINSICS_HELP)
    else:
        intrinsics = None

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
    try:
        images = [it for it in items if it.kind == "image"]
        if images:
            _predict_images(model, images, out_dir, batch_size, depth_range, intrinsics, flip, progress, summary,
                            png_scale)
        for item in (it for it in items if it.kind == "video"):
            _predict_video(model, item, out_dir, batch_size, depth_range, flip, video_npy, progress, summary)
    finally:
        if isinstance(model, torch.nn.Module):
            model.train(was_training)
    check_some_finite(model, summary.non_finite, summary.values, f"{summary.images} images and {summary.frames} "
                      f"video frames (their outputs in {out_dir} hold no depth)")
    return summary


def _skip(summary: PredictionSummary, path, reason: str, progress: bool) -> None:
    summary.skipped.append((str(path), reason))
    if progress:
        tqdm.write(f"skipped {path}: {reason}", file=sys.stderr)


def _predict_images(model, items: list[InputItem], out_dir: Path, batch_size: int, depth_range, intrinsics,
                    flip: bool, progress: bool, summary: PredictionSummary, png_scale: float = 1000.0) -> None:
    buckets: dict[tuple[int, int], list[tuple[InputItem, torch.Tensor]]] = {}
    with tqdm(total=len(items), unit="img", desc="predict", disable=not progress, file=sys.stderr) as bar:
        def flush(size):
            batch = buckets.pop(size, [])
            if not batch:
                return
            depths = _predict(model, torch.stack([rgb for _, rgb in batch]), flip)
            summary.count(depths)
            for (item, rgb), depth in zip(batch, depths):
                summary.written += write_image_outputs(out_dir, item.name, depth,
                                                       _uint8_rgb(rgb) if intrinsics is not None else None,
                                                       depth_range, intrinsics, png_scale)
                summary.images += 1
            bar.update(len(batch))

        for item in items:
            try:
                rgb = read_rgb(item.path)
            except DatasetError as exc:
                reason = str(exc)
                reason = reason[len(str(item.path)) + 2:] if reason.startswith(f"{item.path}: ") else reason
                if item.source != str(item.path) and "line" in item.source:
                    reason += f" (listed in {item.source})"
                _skip(summary, item.path, reason, progress)
                bar.update(1)
                continue
            size = tuple(rgb.shape[-2:])
            buckets.setdefault(size, []).append((item, rgb))
            if len(buckets[size]) >= batch_size:
                flush(size)
        for size in list(buckets):
            flush(size)


def _video_range(depths: np.ndarray) -> tuple[float, float]:
    valid = depths[np.isfinite(depths) & (depths > 0)]
    if not valid.size:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(valid, VIDEO_RANGE_PERCENTILES))
    return (lo, hi) if hi > lo else (lo, lo + 1e-3)


def _predict_video(model, item: InputItem, out_dir: Path, batch_size: int, depth_range, flip: bool,
                   video_npy: bool, progress: bool, summary: PredictionSummary) -> None:
    av = require("av")  # the video extra
    try:
        container, stream, rate, count = open_video(item.path)
    except ValueError as exc:
        reason = str(exc)
        _skip(summary, item.path, reason[len(str(item.path)) + 2:] if reason.startswith(f"{item.path}: ") else reason, progress)
        return
    base = out_dir / item.name
    writer = npy = None
    error = None
    frames = 0

    def discard(exc: BaseException) -> None:
        if writer is not None:
            writer.close(exc)
        if npy is not None:
            npy.abort()

    try:
        with tqdm(total=count or None, unit="frame", desc=item.name, disable=not progress, file=sys.stderr) as bar:
            def flush(batch):
                nonlocal writer, npy, depth_range
                images = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float().div_(255.0)
                depths = _predict(model, images, flip)
                summary.count(depths)
                if writer is None:
                    height, width = depths.shape[-2:]
                    if depth_range is None:
                        depth_range = _video_range(depths)
                        summary.notes.append(f"{item.path}: colour range {depth_range[0]:.3f}..{depth_range[1]:.3f} m "
                                             f"(2nd-98th percentile of the first {len(depths)} frames), fixed for the whole video")
                    writer = DepthVideoWriter(base.with_name(base.name + "_depth.mp4"), rate, height, width, depth_range)
                    if writer.padded:
                        summary.notes.append(f"{item.path}: {width}x{height} video padded to {writer.out_width}x"
                                             f"{writer.out_height} (one-pixel edge copy): yuv420p needs even sizes")
                    if video_npy:
                        npy = NpyStackWriter(base.with_name(base.name + "_depth.npy"), height, width)
                for depth in depths:
                    writer.write(depth)
                    if npy is not None:
                        npy.append(depth)
                bar.update(len(depths))

            batch = []
            for rgb in iter_frames(container, stream):
                batch.append(rgb)
                frames += 1
                if len(batch) >= batch_size:
                    flush(batch)
                    batch = []
            if batch:
                flush(batch)
    except (av.error.FFmpegError, ValueError) as exc:  # a broken video: skip it, leave no partial files
        error = exc
        discard(exc)
    except BaseException as exc:  # anything else (e.g. KeyboardInterrupt) goes up, leaving no partial files
        discard(exc)
        raise
    else:
        if writer is not None:
            writer.close()
            summary.written.append(writer.path)
            if npy is not None:
                summary.written.append(npy.close())
    finally:
        container.close()
    if error is not None:
        _skip(summary, item.path, f"video could not be decoded ({error})", progress)
    elif writer is None:
        _skip(summary, item.path, "video has no frames", progress)
    else:
        summary.videos += 1
        summary.frames += frames
