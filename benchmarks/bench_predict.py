"""End-to-end ``seldepth predict`` on a folder of VGA photos: the pipelined path against the sequential one.

Writes --images VGA JPEGs (quality 95) made from the NYU test sample (each of its 640x480 colour images,
mirrored on every other pass), imports the official NYU METER-xxs (or takes --model), exports it to ONNX
and runs it under ONNX Runtime with --threads intra-op threads. Then, in one process and alternating:
:func:`seldepth.prediction.predict_paths` with ``sequential=True`` (read, predict, write one step after
another on one thread) and with the default overlap (a reader thread, writer threads, inference on the
main thread), with the default outputs (npy, png16, color) and with ``npy`` only; with the default outputs
also the sequential path as seldepth 0.2.0 ran it, at its PNG zlib level 6 (``png_compression=6``; the
pixels are the same). Prints images/s of each, the ratios pipelined / sequential (target >= 2x against
0.2.0's behaviour with the default outputs; the overlap alone at equal settings beside it), the
milliseconds per image in each stage (summed over the threads that ran it: under overlap a stage's
threads share the cores, so its sum grows) and the model alone: the ONNX graph on a preprocessed batch,
and ``predict_depth`` (preprocessing, the graph and upsampling to 640x480).

    python benchmarks/bench_predict.py [--images 200] [--threads 2] [--repeats 2] [--model M.safetensors]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from PIL import Image

import seldepth
from seldepth.defaults import DEFAULT_BATCH_SIZE
from seldepth.deploy.cpu import describe_cpu
from seldepth.deploy.onnx_export import export_onnx
from seldepth.inference import model_input, predict_depth
from seldepth.models.model_file import read_model_file
from seldepth.models.onnx_model import OnnxDepthModel
from seldepth.prediction import predict_paths

from official_model import SHARED, model_path_or_official

STAGES = ("read", "infer", "write")


def make_photos(folder: Path, count: int) -> list[Path]:
    """``count`` 640x480 JPEGs from the NYU test sample's colour images (mirrored on every other pass)."""
    sources = sorted((SHARED / "data" / "nyu_test_sample" / "nyu2_test").glob("*_colors.png"))
    if not sources:
        raise SystemExit(f"no NYU test images under {SHARED / 'data' / 'nyu_test_sample'} (set SELDEPTH_SHARED)")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = Image.open(sources[i % len(sources)]).convert("RGB")
        if (i // len(sources)) % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        path = folder / f"photo_{i:04d}.jpg"
        image.save(path, quality=95)
        paths.append(path)
    return paths


def run(model, folder: Path, out: Path, sequential: bool, outputs: str | None, png_compression: int | None = None) -> dict:
    start = time.perf_counter()
    options = {} if png_compression is None else {"png_compression": png_compression}
    summary = predict_paths(model, [folder], out, sequential=sequential, outputs=outputs, progress=False, **options)
    wall = time.perf_counter() - start
    return {"wall": wall, "images": summary.images, "timings": summary.timings, "files": len(summary.written)}


def model_only(model, photos: list[Path], batch_size: int, repeats: int = 30) -> tuple[float, float]:
    """Images/s of the ONNX graph on a preprocessed batch, and of predict_depth (with pre- and post-processing)."""
    images = torch.stack([torch.from_numpy(np.asarray(Image.open(p), dtype=np.float32) / 255).permute(2, 0, 1)
                          for p in photos[:batch_size]])
    x = model_input(model, images)
    rates = []
    for call in (lambda: model(x), lambda: predict_depth(model, images)):
        call()
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        rates.append(repeats * batch_size / (time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file (default: import the official NYU METER-xxs)")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads and torch threads")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each path (alternating); the fastest is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = make_photos(tmp / "photos", args.images)
        model_path = model_path_or_official(args.model, tmp)
        torch_model = read_model_file(model_path)
        info = export_onnx(torch_model, tmp / "model.onnx", check_images=None, source=model_path)
        model = OnnxDepthModel(tmp / "model.onnx", threads=args.threads)
        graph_rate, predict_depth_rate = model_only(model, photos, DEFAULT_BATCH_SIZE)

        print(f"seldepth {seldepth.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
        print(f"CPU: {describe_cpu()}")
        print(f"{model.name} ({model_path}) under ONNX Runtime, input {'x'.join(map(str, info['input_size']))}, "
              f"{args.threads} intra-op threads; {args.images} JPEG photos 640x480, batch {DEFAULT_BATCH_SIZE}")
        print(f"model only: {graph_rate:7.1f} images/s (ONNX graph on a preprocessed batch), "
              f"{predict_depth_rate:7.1f} images/s (predict_depth: preprocessing, graph, upsampling to 640x480)")

        run(model, tmp / "photos", tmp / "warmup", sequential=False, outputs=None)  # caches, thread pools, ORT
        for outputs in (None, "npy"):
            paths = {"sequential": (True, None), "pipelined": (False, None)}
            if outputs is None:
                paths = {"sequential, 0.2.0 (PNG level 6)": (True, 6), **paths}
            best: dict[str, dict] = {}
            for repeat in range(args.repeats):
                for name, (sequential, level) in paths.items():
                    result = run(model, tmp / "photos", tmp / f"out_{len(best)}_{repeat}_{outputs}", sequential, outputs,
                                 level)
                    if name not in best or result["wall"] < best[name]["wall"]:
                        best[name] = result
            label = outputs or "npy,png16,color (default)"
            print(f"\noutputs {label}: fastest of {args.repeats} runs each")
            for name, result in best.items():
                t = result["timings"]
                stages = ", ".join(f"{s} {1000 * t.get(s, 0.0) / result['images']:.1f}" for s in STAGES)
                print(f"  {name:32s} {result['images'] / result['wall']:6.1f} images/s ({result['wall']:.2f} s, "
                      f"{result['files']} files); ms per image: {stages}")
            if outputs is None:
                ratio = best["sequential, 0.2.0 (PNG level 6)"]["wall"] / best["pipelined"]["wall"]
                print(f"  pipelined / sequential as in 0.2.0: {ratio:.2f}x (target >= 2x)")
            ratio = best["sequential"]["wall"] / best["pipelined"]["wall"]
            print(f"  pipelined / sequential, equal settings (the overlap alone): {ratio:.2f}x")


if __name__ == "__main__":
    main()
