"""Write a synthetic data set in the NYU DenseDepth layout (CSV of ``rgb,depth`` pairs and PNGs).

Layout of ``out_dir``::

    train/00000_colors.png     RGB, 8 bit
    train/00000_depth.png      z-depth, uint16 millimetres (round(depth * 1000)), 300..10000
    train/00000_semantics.png  class ids, uint8 (mode L): 0 floor, 1 ceiling, 2 wall, 3 furniture, 4 object
    train/00000.json           {"K", "pose" (camera-to-world), "scene", "frame", "seed", "classes"}
    val/...  test/...
    train.csv  val.csv  test.csv   "train/00000_colors.png,train/00000_depth.png" per line, no header
    dataset.json                   written last: its presence marks a complete data set
    preview.png                    optional contact sheet

Frame ``NNNNN`` is frame ``f`` of scene ``s`` with ``NNNNN = s * T + f`` (T the sequence
length). Scene ``s`` and its camera path come from ``numpy.random.default_rng([seed, s])``, so
a frame's bytes do not depend on how many frames are generated, in which order or process.
Scenes (with all their frames) are assigned to splits by a permutation drawn from the seed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image

from seldepth.atomic import atomic_path
from seldepth.data.synthetic.geometry import CLASSES
from seldepth.defaults import DEFAULT_SCENES, DEFAULT_SIZE
from seldepth.data.synthetic.render import (
    MAX_DEPTH,
    MIN_DEPTH,
    _check_size,
    render_sequence,
)

SPLITS = ("train", "val", "test")
FORMAT_VERSION = 1
_SPLIT_STREAM = 0x5B1175  # extra seed words of the split permutation, apart from the scenes' (seed, s)


def parse_size(text: str, key: str = "size") -> tuple[int, int]:
    """Parse an ``HxW`` size string (height x width, torch's order) into ``(H, W)``.

    The one reader of sizes on the command line (``seldepth synth --size``, ``seldepth bench --size``).

    Args:
        text: ``"HxW"``, e.g. ``"192x256"`` (``X`` and spaces around the numbers are accepted).
        key: the argument's name, for the error message.

    Raises:
        ValueError: naming ``key``, for anything but two positive integers.

    Example:
        >>> parse_size("192x256")
        (192, 256)
    """
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"{key} must be HxW (height x width) with two positive integers, e.g. "
                         f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}; got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _check_args(num, size, seed, sequence_length, splits, workers):
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be an integer >= 1 (number of scenes), got {num!r}")
    if isinstance(size, str):
        size = parse_size(size)
    size = _check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer)) or sequence_length < 1:
        raise ValueError(f"sequence_length must be an integer >= 1, got {sequence_length!r}")
    try:
        fractions = [float(f) for f in splits]
    except (TypeError, ValueError):
        raise ValueError(f"splits must be three fractions (train, val, test), got {splits!r}") from None
    if len(fractions) != 3 or min(fractions) < 0 or sum(fractions) <= 0:
        raise ValueError("splits must be three non-negative fractions (train, val, test) with a positive sum, "
                         f"got {splits!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    return int(num), size, int(seed), int(sequence_length), fractions


def split_of_scenes(num: int, seed: int, splits=(0.8, 0.1, 0.1)) -> list[str]:
    """The split (``train``, ``val``, ``test``) of each of ``num`` scenes, drawn from ``seed``.

    The counts are ``round(num * cumulative fraction)`` differences, so (0.8, 0.1, 0.1) of 10
    scenes is 8, 1, 1.
    """
    fractions = np.asarray(splits, dtype=np.float64)
    bounds = np.rint(np.cumsum(fractions / fractions.sum()) * num).astype(int)
    perm = np.random.default_rng([seed, _SPLIT_STREAM, num]).permutation(num)
    out = [""] * num
    start = 0
    for name, end in zip(SPLITS, bounds):
        for s in perm[start:end]:
            out[int(s)] = name
        start = end
    return out


_LOCKS: dict[str, FileLock] = {}  # one lock object per lock file in this process (reentrant)


def generation_lock(out_dir: str | os.PathLike) -> FileLock:
    """The inter-process lock of generating into ``out_dir``: the file ``OUT_DIR.lock`` beside the folder.

    Two processes that generate the same set (the cached default set, say) take turns: the second waits,
    then finds the set complete. Reentrant within a process (:func:`generate` takes it too).
    """
    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    path = str(out.with_name(out.name + ".lock"))
    lock = _LOCKS.get(path)
    if lock is None:
        lock = _LOCKS[path] = FileLock(path)
    return lock


def _replace_write(path: Path, write) -> None:
    """Write through ``write(tmp_path)`` to a unique temporary name, then move it into place."""
    with atomic_path(path) as tmp:
        write(tmp)


def _save_png(path: Path, array: np.ndarray) -> None:
    _replace_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG", compress_level=1))


def write_frame(directory: Path, name: str, frame: dict, meta: dict) -> None:
    """Write one frame's colour, depth and semantics PNGs and its JSON sidecar into ``directory``."""
    _save_png(directory / f"{name}_colors.png", frame["rgb"])
    depth_mm = np.rint(frame["depth"].astype(np.float64) * 1000.0).astype(np.uint16)
    _save_png(directory / f"{name}_depth.png", depth_mm)
    _save_png(directory / f"{name}_semantics.png", frame["semantics"].astype(np.uint8))
    sidecar = {"K": frame["K"].tolist(), "pose": frame["pose"].tolist(), **meta, "classes": list(CLASSES)}
    text = json.dumps(sidecar)
    _replace_write(directory / f"{name}.json", lambda tmp: tmp.write_text(text))


def _scene_job(args):
    out_dir, scene, split, size, seed, length = args
    frames = render_sequence((seed, scene), size, length)
    names = []
    for f, frame in enumerate(frames):
        index = scene * length + f
        name = f"{index:05d}"
        write_frame(out_dir / split, name, frame, {"scene": scene, "frame": f, "seed": seed, "index": index})
        names.append(name)
    return split, names


def generate(out_dir: str | os.PathLike, num: int = DEFAULT_SCENES, size: tuple[int, int] | str = DEFAULT_SIZE, seed: int = 0,
             sequence_length: int = 1, splits=(0.8, 0.1, 0.1), preview: bool = False, progress: bool = True,
             workers: int | None = 1) -> dict:
    """Render and write a synthetic indoor RGB-D data set in the NYU DenseDepth layout.

    Args:
        out_dir: folder to write into (created if missing).
        num: number of scenes; each gives ``sequence_length`` frames.
        size: (H, W) of the images, or an ``"HxW"`` string such as ``"192x256"`` (:func:`parse_size`).
        seed: data set seed; scene ``s`` is drawn from ``numpy.random.default_rng([seed, s])``.
        sequence_length: frames per scene T; T > 1 renders a smooth camera walk through the scene.
        splits: fractions of the scenes for train, val and test.
        preview: also write ``preview.png``, a contact sheet of a few frames.
        progress: show a tqdm progress bar.
        workers: processes that render in parallel (``None``: one per CPU, at most 8). The output
            is the same for any number of workers.

    Processes generating into the same ``out_dir`` take turns through the lock file ``OUT_DIR.lock`` beside it
    (:func:`generation_lock`).

    Returns:
        The contents of ``dataset.json``.

    Raises:
        ValueError: naming the argument, for ``num < 1``, a size that is not two positive
            integers, ``sequence_length < 1``, a negative seed, bad split fractions or workers.
    """
    num, size, seed, length, fractions = _check_args(num, size, seed, sequence_length, splits, workers)
    out = Path(out_dir)
    with generation_lock(out):  # another process generating into the same folder finishes first
        return _generate(out, num, size, seed, length, fractions, preview, progress, workers)


def _generate(out: Path, num: int, size: tuple[int, int], seed: int, length: int, fractions, preview: bool,
              progress: bool, workers: int | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    marker = out / "dataset.json"
    if marker.exists():
        marker.unlink()  # the set is being rewritten: it is not complete until the end
    for name in SPLITS:
        (out / name).mkdir(exist_ok=True)
    scene_split = split_of_scenes(num, seed, fractions)
    jobs = [(out, s, scene_split[s], size, seed, length) for s in range(num)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    workers = min(workers, num)
    if workers > 1 and multiprocessing.current_process().daemon:
        workers = 1  # daemonic processes (e.g. DataLoader workers) cannot start children

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num * length, desc="synthetic", unit="img")
    listed: dict[str, list[str]] = {name: [] for name in SPLITS}
    try:
        if workers > 1:
            with multiprocessing.Pool(workers) as pool:
                for split, names in pool.imap(_scene_job, jobs, chunksize=max(1, min(16, num // (8 * workers)))):
                    listed[split].extend(names)
                    if bar is not None:
                        bar.update(len(names))
        else:
            for job in jobs:
                split, names = _scene_job(job)
                listed[split].extend(names)
                if bar is not None:
                    bar.update(len(names))
    finally:
        if bar is not None:
            bar.close()

    for name in SPLITS:
        lines = "".join(f"{name}/{n}_colors.png,{name}/{n}_depth.png\n" for n in listed[name])
        _replace_write(out / f"{name}.csv", lambda tmp, text=lines: tmp.write_text(text))
    if preview:
        write_preview(out, out / "preview.png")
    info = {
        "name": "seldepth-synthetic",
        "version": FORMAT_VERSION,
        "size": list(size),
        "seed": seed,
        "num": num,
        "sequence_length": length,
        "num_frames": num * length,
        "splits": {name: len(listed[name]) for name in SPLITS},  # frames (CSV lines) per split
        "scene_splits": {name: scene_split.count(name) for name in SPLITS},
        "split_fractions": fractions,
        "classes": list(CLASSES),
        "depth_unit": "mm",
        "depth_range_m": [MIN_DEPTH, MAX_DEPTH],
        "depth_type": "z-depth (along the optical axis)",
        "pose_convention": "camera-to-world 4x4; OpenCV camera axes (x right, y down, z forward); world z up; metres",
    }
    _replace_write(marker, lambda tmp: tmp.write_text(json.dumps(info, indent=2)))
    return info


_CLASS_COLORS = ((0.55, 0.35, 0.2), (0.9, 0.9, 0.75), (0.6, 0.65, 0.8), (0.2, 0.7, 0.3), (0.95, 0.3, 0.3))


def write_preview(data_dir: str | os.PathLike, path: str | os.PathLike, max_frames: int = 4) -> None:
    """Contact sheet of up to ``max_frames`` frames of a written data set: RGB, depth (0-10 m) and semantics."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    data_dir = Path(data_dir)
    rows = []
    for name in SPLITS:
        csv = data_dir / f"{name}.csv"
        if csv.exists():
            rows += [line.split(",")[0] for line in csv.read_text().splitlines() if line.strip()]
    rows.sort(key=lambda p: Path(p).name)
    if not rows:
        return
    pick = sorted(set(np.linspace(0, len(rows) - 1, min(max_frames, len(rows))).round().astype(int).tolist()))
    fig = Figure(figsize=(10.5, 2.7 * len(pick)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(pick), 3, squeeze=False)
    sem_cmap = ListedColormap(_CLASS_COLORS)
    for r, i in enumerate(pick):
        rgb_rel = rows[i]
        rgb = np.asarray(Image.open(data_dir / rgb_rel).convert("RGB"))
        depth = np.asarray(Image.open(data_dir / rgb_rel.replace("_colors.", "_depth."))).astype(np.float32) / 1000.0
        sem = np.asarray(Image.open(data_dir / rgb_rel.replace("_colors.", "_semantics.")))
        axes[r, 0].imshow(rgb)
        axes[r, 0].set_title(rgb_rel, fontsize=8)
        im = axes[r, 1].imshow(depth, cmap="turbo", vmin=0.0, vmax=MAX_DEPTH)
        axes[r, 1].set_title("depth (m)", fontsize=8)
        fig.colorbar(im, ax=axes[r, 1], fraction=0.046, pad=0.02)
        axes[r, 2].imshow(sem, cmap=sem_cmap, vmin=-0.5, vmax=len(CLASSES) - 0.5, interpolation="nearest")
        axes[r, 2].set_title("semantics", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(_CLASS_COLORS, CLASSES)], loc="outside lower center",
               ncols=len(CLASSES), fontsize=8)
    _replace_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=90))
