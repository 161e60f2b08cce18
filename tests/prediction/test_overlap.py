"""The pipelined predict: ordered, bounded stages; the same files as the sequential path; outputs, colour maps."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model
from seldepth.prediction import parse_outputs, predict_paths
from seldepth.prediction.colormap import colorize_depth, colormap_lut
from seldepth.prediction.overlap import OrderedStage, StageTimes, prefetched


@pytest.fixture(scope="module")
def model():
    m = create_model("meter_xxs").eval()
    m.preprocessing = Preprocessing(input_size=(32, 48))
    return m


def _image(path: Path, height: int, width: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


# --- the stages ----------------------------------------------------------------------------------------------

def test_results_come_back_in_submission_order_although_later_jobs_finish_first():
    finished = []

    def job(i):
        time.sleep(0.02 * (5 - i))  # the first job is the slowest
        finished.append(i)
        return i * 10

    times = StageTimes()
    with OrderedStage("w", workers=3, depth=10, times=times) as stage:
        got = []
        for i in range(5):
            got += stage.submit(job, i)
        got += stage.drain()
    assert got == [0, 10, 20, 30, 40]
    assert finished != sorted(finished)  # they did finish out of order
    assert times.jobs["w"] == 5 and times.seconds["w"] >= 0.02 * (5 + 4 + 3 + 2 + 1) * 0.9


def test_the_queue_is_bounded_by_depth():
    running, most = [0], [0]
    lock = threading.Lock()
    release = threading.Event()

    def job(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(1)
        with lock:
            running[0] -= 1
        return i

    with OrderedStage("w", workers=8, depth=3) as stage:
        returned = []
        threading.Timer(0.2, release.set).start()
        for i in range(10):
            returned.append(stage.submit(job, i))
            assert len(stage._pending) <= 3
        rest = stage.drain()
    assert most[0] <= 4  # never more than depth + the one just submitted were waiting or running
    assert [x for r in returned for x in r] + rest == list(range(10))


def test_inline_stage_runs_each_job_at_submit_on_the_calling_thread():
    seen = []
    with OrderedStage("r", workers=0, depth=2) as stage:
        out = list(prefetched(lambda i: seen.append((i, threading.current_thread().name)) or i, range(4), stage))
    assert out == [0, 1, 2, 3]
    assert {name for _, name in seen} == {threading.current_thread().name}


@pytest.mark.parametrize("workers", [0, 2])
def test_a_job_error_is_raised_in_its_turn_and_later_jobs_are_cancelled(workers):
    done = []

    def job(i):
        if i == 1:
            raise OSError("disk full")
        time.sleep(0.01)
        done.append(i)
        return i

    stage = OrderedStage("w", workers=workers, depth=1)
    with pytest.raises(OSError, match="disk full"), stage:
        results = []
        for i in range(50):
            results += stage.submit(job, i)
    assert results == [0]
    assert len(done) < 50


# --- pipelined and sequential write the same files --------------------------------------------------------------

def test_pipelined_and_sequential_write_identical_files_in_input_order(model, tmp_path):
    src = tmp_path / "in"
    for i, (h, w) in enumerate([(40, 60), (30, 50), (40, 60), (40, 60), (30, 50), (40, 60), (40, 60)]):
        _image(src / f"img{i}.png", h, w, i)
    (src / "broken.png").write_bytes(b"not a png")
    runs = {}
    for name, sequential in (("seq", True), ("pipe", False)):
        runs[name] = predict_paths(model, [src], tmp_path / name, batch_size=2, sequential=sequential, progress=False,
                                   writers=3)
    seq, pipe = runs["seq"], runs["pipe"]
    assert [p.relative_to(tmp_path / "seq") for p in seq.written] == [p.relative_to(tmp_path / "pipe") for p in pipe.written]
    # input order (the folder sorted), each image's outputs in the order npy, png16, color
    assert [p.name for p in pipe.written[:3]] == ["img0_depth.npy", "img0_depth.png", "img0_color.png"]
    assert [p.name for p in pipe.written][3::3] == [f"img{i}_depth.npy" for i in range(1, 7)]
    for a, b in zip(seq.written, pipe.written):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert seq.skipped == pipe.skipped and len(pipe.skipped) == 1 and pipe.images == seq.images == 7
    assert set(pipe.timings) >= {"read", "infer", "write", "total"} and pipe.timings["write"] > 0
    assert not [p for p in (tmp_path / "pipe").iterdir() if p.name.startswith(".")]  # no temporaries left


def test_an_interrupt_in_the_pipeline_leaves_whole_files_only(model, tmp_path, monkeypatch):
    src = tmp_path / "in"
    for i in range(12):
        _image(src / f"img{i:02d}.png", 40, 60, i)
    from seldepth.prediction import runner

    calls = [0]
    real = runner._predict

    def interrupted(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_predict", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(model, [src], tmp_path / "out", batch_size=2, progress=False)
    files = sorted((tmp_path / "out").iterdir())
    assert not [p for p in files if p.name.startswith(".")]
    for p in files:  # every file written is whole
        if p.suffix == ".npy":
            assert np.load(p).shape == (40, 60)
        else:
            Image.open(p).load()
    # a write job that started finishes its image (three files); those not started are cancelled
    stems = {p.name.rsplit("_", 1)[0] for p in files}
    assert len(files) == 3 * len(stems) and stems <= {f"img{i:02d}" for i in range(4)}


# --- outputs, colour maps ---------------------------------------------------------------------------------------

def test_outputs_choose_the_files_and_side_is_the_image_beside_the_colour_map(model, tmp_path):
    src = _image(tmp_path / "in" / "room.png", 40, 60, 3)
    summary = predict_paths(model, [src], tmp_path / "npy", outputs="npy", progress=False)
    assert [p.name for p in summary.written] == ["room_depth.npy"]
    summary = predict_paths(model, [src], tmp_path / "side", outputs=["side", "color"], progress=False)
    assert [p.name for p in summary.written] == ["room_side.png", "room_color.png"]
    side = np.asarray(Image.open(tmp_path / "side" / "room_side.png"))
    assert side.shape == (40, 120, 3)
    assert np.array_equal(side[:, :60], np.asarray(Image.open(src)))
    assert np.array_equal(side[:, 60:], np.asarray(Image.open(tmp_path / "side" / "room_color.png")))


def test_bad_outputs_and_colour_maps_are_refused_before_any_file(model, tmp_path):
    src = _image(tmp_path / "in" / "a.png", 40, 60, 3)
    with pytest.raises(ValueError, match=r"outputs: unknown output 'jpg'; choose from npy,png16,color,side,ply"):
        predict_paths(model, [src], tmp_path / "o1", outputs="npy,jpg", progress=False)
    with pytest.raises(ValueError, match=r"cmap 'turbulent' is not a matplotlib colour map"):
        predict_paths(model, [src], tmp_path / "o2", cmap="turbulent", progress=False)
    with pytest.raises(ValueError, match=r"png_compression must be"):
        predict_paths(model, [src], tmp_path / "o3", png_compression=10, progress=False)
    with pytest.raises(ValueError, match=r"give one of them"):
        predict_paths(model, [src], tmp_path / "o4", cmap="viridis", grayscale=True, progress=False)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))
    assert parse_outputs(" npy , color,npy") == ("npy", "color")


def test_grayscale_pictures_are_dark_near_and_bright_far(model, tmp_path):
    src = _image(tmp_path / "in" / "a.png", 40, 60, 5)
    predict_paths(model, [src], tmp_path / "g", grayscale=True, outputs="npy,color", progress=False)
    gray = np.asarray(Image.open(tmp_path / "g" / "a_color.png")).astype(int)
    depth = np.load(tmp_path / "g" / "a_depth.npy")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    near, far = np.unravel_index(depth.argmin(), depth.shape), np.unravel_index(depth.argmax(), depth.shape)
    assert gray[near][0] == 0 and gray[far][0] == 255  # beyond the 2nd / 98th percentiles: the ends


@pytest.mark.parametrize("cmap", ["turbo", "viridis", "gray", "magma_r", "Spectral"])
def test_the_colour_table_gives_what_matplotlib_gives(cmap):
    d = np.random.default_rng(0).uniform(0.5, 10, (37, 41))
    d[0, 0], d[1, 1], d[2, 2], d[3, 3] = np.nan, 0.0, 9.0, 1.0  # invalid, invalid, the top and bottom ends
    scaled = np.clip((d - 1.0) / 8.0, 0, 1)
    valid = np.isfinite(d) & (d > 0)
    expected = (colormaps[cmap](np.where(valid, scaled, 0))[..., :3] * 255).astype(np.uint8)
    expected[~valid] = 0
    assert np.array_equal(np.asarray(colorize_depth(d, 1.0, 9.0, cmap=cmap)), expected)
    assert colormap_lut(cmap).shape == (colormaps[cmap].N, 3)


def test_a_side_by_side_video_keeps_frames_and_rate(model, tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(7):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for name, sequential in (("seq", True), ("pipe", False)):
        summary = predict_paths(model, [path], tmp_path / name, outputs="side,color,npy", batch_size=3,
                                sequential=sequential, progress=False)
        assert sorted(p.name for p in summary.written) == ["clip_depth.mp4", "clip_depth.npy", "clip_side.mp4"]
        assert summary.frames == 7
        with av.open(str(tmp_path / name / "clip_side.mp4")) as c:
            s = c.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
            assert Fraction(s.average_rate) == 12
        assert len(frames) == 7 and frames[0].shape == (48, 128, 3)
    assert np.array_equal(np.load(tmp_path / "seq" / "clip_depth.npy"), np.load(tmp_path / "pipe" / "clip_depth.npy"))


def test_images_of_many_sizes_are_not_all_held_before_the_first_batch(model, tmp_path, monkeypatch):
    from seldepth.prediction import runner

    src = tmp_path / "in"
    for i in range(10):
        _image(src / f"img{i}.png", 30 + i, 40 + i, i)  # ten sizes: no bucket ever fills
    log = []
    real_read, real_predict = runner.read_rgb, runner._predict
    monkeypatch.setattr(runner, "read_rgb", lambda path: log.append("read") or real_read(path))
    monkeypatch.setattr(runner, "_predict", lambda m, images, flip: log.append(len(images)) or real_predict(m, images, flip))
    summary = predict_paths(model, [src], tmp_path / "out", batch_size=2, sequential=True, progress=False)
    assert summary.images == 10
    first = next(i for i, x in enumerate(log) if x != "read")
    assert log[:first] == ["read"] * 5  # at most 2 x batch_size images wait: the fifth makes the oldest go
    assert sum(x for x in log if x != "read") == 10
