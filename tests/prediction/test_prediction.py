"""seldepth predict: inputs (files, folders, lists, videos), outputs (.npy, 16-bit PNG, colour map, PLY, .mp4), errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from seldepth.cli import main
from seldepth.models.model_file import save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model
from seldepth.prediction import (
    DepthClippedWarning,
    Intrinsics,
    depth_to_png16,
    expand_inputs,
    predict_paths,
    write_image_outputs,
    write_ply,
)
from seldepth.prediction.pointcloud import write_depth_ply


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A random-weight METER-xxs model file that runs at 64x96 (fast)."""
    model = create_model("meter_xxs").eval()
    path = tmp_path_factory.mktemp("model") / "meter_xxs_random.safetensors"
    return save_model_file(model, path, Preprocessing(input_size=(64, 96)))


def _image(path: Path, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _broken_image(path: Path) -> Path:
    _image(path, seed=9)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def read_ply(path: Path) -> np.ndarray:
    """Parse a binary little-endian or ASCII PLY's vertices (x, y, z, red, green, blue) into a structured array."""
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    assert header[0] == "ply"
    count = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    types = {"float": "<f4", "double": "<f8", "uchar": "u1"}
    fields = [(line.split()[2], types[line.split()[1]]) for line in header if line.startswith("property")]
    if "format ascii 1.0" in header:
        table = np.loadtxt(raw[end:].decode().splitlines(), ndmin=2)
        out = np.empty(count, dtype=fields)
        for i, (name, _) in enumerate(fields):
            out[name] = table[:, i]
        return out
    assert "format binary_little_endian 1.0" in header
    return np.frombuffer(raw[end:], dtype=fields, count=count)


def _fit_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit normal (sign: pointing to +Z) and RMS residual of the least-squares plane through ``points``."""
    centred = points - points.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    normal = vt[-1] * np.sign(vt[-1][2])
    return normal, float(s[-1] / np.sqrt(len(points)))


def test_folder_with_subfolder_and_broken_image(model_file, tmp_path, capsys, one_thread):
    src = tmp_path / "in"
    good = [_image(src / "a.png"), _image(src / "b.jpg", 48, 80, seed=1), _image(src / "sub" / "a.png", seed=2),
            _image(src / "sub" / "deeper" / "c.png", 48, 80, seed=3), _image(src / "d.png", seed=4)]
    broken = _broken_image(src / "sub" / "broken.png")
    out = tmp_path / "out"
    rc = main(["predict", str(src), "--model", str(model_file), "--out", str(out), "--batch-size", "2"])
    assert rc == 0
    printed = capsys.readouterr()
    assert str(broken) in printed.out and "skipped 1 unreadable inputs" in printed.out
    for path in good:
        name = path.relative_to(src).with_suffix("").as_posix()
        depth = np.load(out / f"{name}_depth.npy")
        assert depth.dtype == np.float32 and depth.shape == np.asarray(Image.open(path)).shape[:2]
        png = np.asarray(Image.open(out / f"{name}_depth.png"))
        assert png.dtype == np.uint16 and png.shape == depth.shape
        color = Image.open(out / f"{name}_color.png")
        assert color.mode == "RGB" and color.size == (depth.shape[1], depth.shape[0])
    assert not list(out.rglob("broken*")) and not list(out.rglob(".*"))  # no outputs, no temporary files
    # The equal stems a.png and sub/a.png did not collide.
    assert not np.array_equal(np.load(out / "a_depth.npy"), np.load(out / "sub" / "a_depth.npy"))


def test_npy_and_png_agree_to_a_millimetre(model_file, tmp_path, one_thread):
    _image(tmp_path / "in" / "x.png")
    summary = predict_paths(model_file, [tmp_path / "in" / "x.png"], tmp_path / "out", progress=False)
    assert summary.images == 1 and not summary.skipped and len(summary.written) == 3
    depth = np.load(tmp_path / "out" / "x_depth.npy")
    png = np.asarray(Image.open(tmp_path / "out" / "x_depth.png")).astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    assert valid.any()
    assert np.abs(png[valid] / 1000.0 - depth[valid]).max() <= 0.0005 + 1e-6
    assert (png[~valid] == 0).all()

    # Invalid pixels (NaN, inf, 0, negative) are 0 in the PNG; far ones clip at 65535; the .npy keeps them.
    d = np.full((4, 6), 2.0, np.float32)
    d[0, 0], d[0, 1], d[0, 2], d[0, 3], d[0, 4], d[0, 5] = np.nan, np.inf, 0.0, -1.0, 70.0, 1.2344
    with pytest.warns(DepthClippedWarning, match=r"d_depth\.png: 1 of 24 pixels are deeper than 65\.535 m"):
        write_image_outputs(tmp_path / "synthetic", "d", d)
    png = np.asarray(Image.open(tmp_path / "synthetic" / "d_depth.png"))
    assert png[0].tolist() == [0, 0, 0, 0, 65535, 1234]
    assert (png[1:] == 2000).all()
    np.testing.assert_array_equal(np.load(tmp_path / "synthetic" / "d_depth.npy"), d)
    with pytest.warns(DepthClippedWarning, match="1 of 24 pixels"):
        np.testing.assert_array_equal(depth_to_png16(d), png)


def test_ply_of_a_tilted_plane_is_that_plane(tmp_path):
    height, width = 48, 64
    fx, fy, cx, cy = 70.0, 55.0, 30.5, 20.0  # fx != fy and an off-centre principal point: swaps would show
    normal = np.array([0.3, -0.5, 1.0])
    normal /= np.linalg.norm(normal)
    distance = 2.0  # plane n . X = d
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], -1)
    depth = distance / (rays @ normal)  # Z along each ray
    assert (depth > 0).all()
    depth[5, 7] = np.nan  # an invalid pixel gives no point
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)

    path = write_depth_ply(tmp_path / "plane.ply", depth, rgb, Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy))
    vertices = read_ply(path)
    assert len(vertices) == height * width - 1
    points = np.stack([vertices["x"], vertices["y"], vertices["z"]], 1).astype(np.float64)
    fitted, residual = _fit_plane(points)
    assert residual < 1e-4
    np.testing.assert_allclose(fitted, normal, atol=1e-4)
    np.testing.assert_allclose(points @ normal, distance, atol=1e-4)
    # Colours are the pixels' own, in row-major order (pixel (5, 7) left out).
    keep = np.ones((height, width), bool)
    keep[5, 7] = False
    np.testing.assert_array_equal(np.stack([vertices["red"], vertices["green"], vertices["blue"]], 1), rgb[keep])

    # A wrong unprojection (fx/fy swapped, or u/v swapped) does not give back the plane.
    for wrong in (Intrinsics(fx=fy, fy=fx, cx=cx, cy=cy), Intrinsics(fx=fx, fy=fy, cx=cy, cy=cx)):
        bad = read_ply(write_depth_ply(tmp_path / "bad.ply", depth, rgb, wrong))
        bad_normal, _ = _fit_plane(np.stack([bad["x"], bad["y"], bad["z"]], 1).astype(np.float64))
        assert np.abs(bad_normal - normal).max() > 0.02


def test_ply_from_the_cli_with_a_field_of_view(model_file, tmp_path, one_thread):
    _image(tmp_path / "room.png")
    rc = main(["predict", str(tmp_path / "room.png"), "--model", str(model_file), "--out", str(tmp_path / "out"),
               "--ply", "--fov", "60"])
    assert rc == 0
    depth = np.load(tmp_path / "out" / "room_depth.npy")
    vertices = read_ply(tmp_path / "out" / "room.ply")
    assert len(vertices) == int((np.isfinite(depth) & (depth > 0)).sum())
    np.testing.assert_allclose(np.sort(vertices["z"]), np.sort(depth[depth > 0]), rtol=1e-6)
    fx, fy, cx, cy = Intrinsics(fov=60).at(64, 96)
    assert fx == fy == pytest.approx(48 / np.tan(np.radians(30))) and (cx, cy) == (47.5, 31.5)


def _write_video(path: Path, frames: int, height: int, width: int, rate: int = 10) -> None:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _read_video(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], Fraction(stream.average_rate)


@pytest.mark.parametrize("size", [(64, 96), (62, 94)])
def test_video_keeps_frame_count_rate_and_size(model_file, tmp_path, size, one_thread):
    height, width = size
    _write_video(tmp_path / "clip.avi", 12, height, width)
    summary = predict_paths(model_file, [tmp_path / "clip.avi"], tmp_path / "out", batch_size=5, video_npy=True,
                            progress=False)
    assert summary.videos == 1 and summary.frames == 12 and not summary.skipped
    frames, rate = _read_video(tmp_path / "out" / "clip_depth.mp4")
    assert len(frames) == 12 and rate == 10
    assert frames[0].shape == (height, width, 3)
    assert np.load(tmp_path / "out" / "clip_depth.npy").shape == (12, height, width)
    assert any("colour range" in note for note in summary.notes)  # one range, from the first batch, for all frames


def test_odd_sized_video_is_padded_by_one_pixel(tmp_path, one_thread):
    from seldepth.prediction.video import DepthVideoWriter

    with DepthVideoWriter(tmp_path / "odd_depth.mp4", Fraction(25), 63, 95, (0.5, 4.0)) as writer:
        for i in range(7):
            writer.write(np.full((63, 95), 1.0 + 0.2 * i, np.float32))
    assert writer.padded
    frames, rate = _read_video(tmp_path / "odd_depth.mp4")
    assert len(frames) == 7 and rate == 25 and frames[0].shape == (64, 96, 3)


def test_list_file_and_fixed_colour_range(model_file, tmp_path, one_thread):
    _image(tmp_path / "imgs" / "one.png")
    _image(tmp_path / "imgs" / "two.png", 48, 80, seed=1)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "files.txt").write_text(f"# images\n../imgs/one.png\n\n{tmp_path / 'imgs' / 'two.png'}\n"
                                                  "../imgs/missing.png\n")
    items, _ = expand_inputs([tmp_path / "lists" / "files.txt"])
    assert [it.name for it in items] == ["one", "two", "missing"]
    summary = predict_paths(model_file, [tmp_path / "lists" / "files.txt"], tmp_path / "out", depth_range="0.5,10",
                            progress=False)
    assert summary.images == 2 and len(summary.skipped) == 1 and "missing.png" in summary.skipped[0][0]
    assert (tmp_path / "out" / "one_color.png").is_file() and (tmp_path / "out" / "two_color.png").is_file()

    # With a fixed range equal depths get equal colours across images; per-image ranges would differ.
    a = np.linspace(1, 3, 24, dtype=np.float32).reshape(4, 6)
    b = np.linspace(2, 8, 24, dtype=np.float32).reshape(4, 6)
    b[0, 0] = a[2, 3]
    write_image_outputs(tmp_path / "fixed", "a", a, depth_range=(0.5, 10))
    write_image_outputs(tmp_path / "fixed", "b", b, depth_range=(0.5, 10))
    ca, cb = (np.asarray(Image.open(tmp_path / "fixed" / f"{n}_color.png")) for n in "ab")
    np.testing.assert_array_equal(ca[2, 3], cb[0, 0])
    write_image_outputs(tmp_path / "own", "a", a)
    write_image_outputs(tmp_path / "own", "b", b)
    ca, cb = (np.asarray(Image.open(tmp_path / "own" / f"{n}_color.png")) for n in "ab")
    assert not np.array_equal(ca[2, 3], cb[0, 0])


def test_ply_without_intrinsics_fails_before_writing(model_file, tmp_path, capsys):
    _image(tmp_path / "x.png")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "x.png"), "--model", str(model_file), "--out", str(out), "--ply"]) == 2
    err = capsys.readouterr().err
    assert "--fx" in err and "--fov" in err and "intrinsics" in err
    assert not out.exists()


def test_bad_arguments_are_named(model_file, tmp_path, capsys):
    _image(tmp_path / "x.png")
    missing = tmp_path / "nowhere.png"
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "x.png"), str(missing), "--model", str(model_file), "--out", str(out)]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "x.png"), "--model", str(model_file), "--out", str(out), "--range", "5,1"]) == 2
    assert "--range" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "x.png"), "--model", str(tmp_path / "none.safetensors"), "--out", str(out)]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert not out.exists()


def test_write_ply_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        write_ply(tmp_path / "x.ply", np.zeros((4, 2)))


def test_broken_video_is_skipped_and_errors_leave_no_partial_files(model_file, tmp_path, one_thread):
    from seldepth.prediction.video import DepthVideoWriter

    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    _image(tmp_path / "ok.png")
    summary = predict_paths(model_file, [tmp_path / "junk.mp4", tmp_path / "ok.png"], tmp_path / "out", progress=False)
    assert summary.images == 1 and [p for p, _ in summary.skipped] == [str(tmp_path / "junk.mp4")]
    assert "not a readable video" in summary.skipped[0][1]

    with (pytest.raises(RuntimeError, match="killed"),
          DepthVideoWriter(tmp_path / "half" / "v_depth.mp4", Fraction(10), 64, 96, (0.5, 4.0)) as writer):
        writer.write(np.ones((64, 96), np.float32))
        raise RuntimeError("killed")
    assert list((tmp_path / "half").iterdir()) == []


def test_png_scale_from_the_cli_writes_that_many_values_per_metre(model_file, tmp_path, one_thread):
    from PIL import Image

    _image(tmp_path / "room.png")
    for scale in (1000, 256):
        out = tmp_path / f"out{scale}"
        assert main(["predict", str(tmp_path / "room.png"), "--model", str(model_file), "--out", str(out),
                     "--png-scale", str(scale)]) == 0
        depth = np.load(out / "room_depth.npy")
        png = np.asarray(Image.open(out / "room_depth.png")).astype(np.float64)
        expected = np.clip(np.where(depth > 0, np.round(depth * scale), 0), 0, 65535)  # 0: no depth
        assert (depth > 0).any()
        np.testing.assert_allclose(png, expected, atol=1)
    assert main(["predict", str(tmp_path / "room.png"), "--model", str(model_file), "--out", str(tmp_path / "bad"),
                 "--png-scale", "0"]) == 2
