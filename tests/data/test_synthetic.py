"""Synthetic RGB-D generator: determinism, on-disk layout, and the geometry of the renderer."""

from __future__ import annotations

import inspect
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seldepth.data.synthetic import CLASSES, generate, parse_size, render_frame
from seldepth.data.synthetic.camera import camera_pose, intrinsics
from seldepth.data.synthetic.geometry import Box, Light
from seldepth.data.synthetic.render import render, render_sequence
from seldepth.data.synthetic.scene import sample_scene

SMALL = (48, 64)  # (H, W)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _frame_file(root: Path, name: str) -> Path:
    hits = [root / split / name for split in ("train", "val", "test") if (root / split / name).exists()]
    assert len(hits) == 1, f"{name} should be in exactly one split, found {hits}"
    return hits[0]


# ----------------------------------------------------------------------------- determinism

def test_same_seed_same_bytes_any_workers_and_different_seed_differs(tmp_path):
    a = generate(tmp_path / "a", 4, size=SMALL, seed=3, progress=False)
    generate(tmp_path / "b", 4, size=SMALL, seed=3, progress=False, workers=2)
    generate(tmp_path / "c", 4, size=SMALL, seed=4, progress=False)
    fa, fb, fc = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a["num"] == 4 and len([k for k in fa if k.endswith("_colors.png")]) == 4
    assert fa == fb  # every PNG, sidecar, CSV and dataset.json, byte for byte
    colors_a = sorted(v for k, v in fa.items() if k.endswith("_colors.png"))
    colors_c = sorted(v for k, v in fc.items() if k.endswith("_colors.png"))
    assert not set(colors_a) & set(colors_c)


def test_a_frame_does_not_depend_on_how_many_are_generated(tmp_path):
    generate(tmp_path / "two", 2, size=SMALL, seed=9, progress=False)
    generate(tmp_path / "five", 5, size=SMALL, seed=9, progress=False)
    for kind in ("_colors.png", "_depth.png", "_semantics.png"):
        assert _frame_file(tmp_path / "two", "00001" + kind).read_bytes() == \
            _frame_file(tmp_path / "five", "00001" + kind).read_bytes()


def test_written_frame_equals_render_frame_depth_to_1mm(tmp_path):
    seed = 5
    generate(tmp_path, 3, size=SMALL, seed=seed, progress=False)
    for i in range(3):
        frame = render_frame((seed, i), SMALL)
        depth_png = np.asarray(Image.open(_frame_file(tmp_path, f"{i:05d}_depth.png")))
        assert depth_png.dtype == np.uint16
        assert np.abs(depth_png.astype(np.float64) / 1000.0 - frame["depth"]).max() <= 0.0005 + 1e-6
        rgb = np.asarray(Image.open(_frame_file(tmp_path, f"{i:05d}_colors.png")))
        sem = Image.open(_frame_file(tmp_path, f"{i:05d}_semantics.png"))
        assert sem.mode == "L"
        np.testing.assert_array_equal(rgb, frame["rgb"])
        np.testing.assert_array_equal(np.asarray(sem), frame["semantics"])
        meta = json.loads(_frame_file(tmp_path, f"{i:05d}.json").read_text())
        np.testing.assert_allclose(meta["K"], frame["K"])
        np.testing.assert_allclose(meta["pose"], frame["pose"])
        assert (meta["scene"], meta["frame"], meta["seed"], meta["classes"]) == (i, 0, seed, list(CLASSES))


# ----------------------------------------------------------------------------- renderer geometry

def test_frame_contents_and_ranges():
    frame = render_frame(0, SMALL)
    assert frame["rgb"].shape == (*SMALL, 3) and frame["rgb"].dtype == np.uint8
    assert frame["depth"].shape == SMALL and frame["depth"].dtype == np.float32
    assert frame["semantics"].shape == SMALL and frame["semantics"].dtype == np.uint8
    assert 0.3 <= frame["depth"].min() and frame["depth"].max() <= 10.0
    assert frame["semantics"].max() < len(CLASSES)
    K = intrinsics(SMALL)
    np.testing.assert_allclose(K, frame["K"])
    np.testing.assert_allclose(K[[0, 1, 0, 1], [0, 1, 2, 2]],
                               [518.8579 * 64 / 640, 519.4696 * 48 / 480, 325.5824 * 64 / 640, 253.7362 * 48 / 480])
    R = frame["pose"][:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)
    z = frame["pose"][2, 3]
    assert 1.0 <= z <= 1.8


def test_scenes_have_furniture_objects_and_textures():
    seen = set()
    for i in range(12):
        frame = render_frame((1, i), SMALL)
        seen |= set(np.unique(frame["semantics"]).tolist())
        scene = frame["scene"]
        W, D, H = scene.size
        assert 3 <= W <= 8 and 3 <= D <= 10 and 2.4 <= H <= 3.2
        for p in scene.primitives:  # everything inside the room, nothing reaching the lights
            lo, hi = p.bounds()
            assert lo.min() >= -1e-6 and hi[0] <= W + 1e-6 and hi[1] <= D + 1e-6
            assert hi[2] < min(light.position[2] for light in scene.lights)
        # Textured, shaded images: not a handful of flat colours.
        assert len(np.unique(frame["rgb"].reshape(-1, 3), axis=0)) > 200
    assert seen == set(range(len(CLASSES)))


def _empty_room(size=(6.0, 8.0, 2.8)):
    return sample_scene(np.random.default_rng(0), num_objects=0, room_size=size, decorations=False)


@pytest.mark.parametrize("yaw, expected", [(0.0, 2.6), (math.pi / 2, 3.3), (math.pi, 2.4), (-math.pi / 2, 2.7)])
def test_wall_facing_camera_has_constant_z_depth(yaw, expected):
    """Facing a wall square-on, every wall pixel has z-depth = the distance (the ray length would grow to the edges)."""
    scene = _empty_room((5.0, 6.0, 2.8))
    frame = render(scene, camera_pose((2.4, 2.7, 1.4), yaw, 0.0), size=SMALL)
    wall = frame["semantics"] == 2
    assert wall.mean() > 0.75
    np.testing.assert_allclose(frame["depth"][wall], expected, atol=2e-4)


def test_level_camera_sees_floor_exactly_below_the_horizon():
    scene = _empty_room((8.0, 10.0, 2.8))
    h_cam = 1.2
    frame = render_frame(0, SMALL, scene=scene, position=(4.0, 5.0), height=h_cam, yaw=0.4, pitch=0.0)
    K, sem, depth = frame["K"], frame["semantics"], frame["depth"]
    rows = np.arange(SMALL[0])[:, None].repeat(SMALL[1], 1)
    horizon = K[1, 2]
    floor = sem == 0
    assert floor[-1].all()  # the bottom row of a level camera in the middle of the room is floor
    assert not floor[rows <= horizon].any()  # nothing at or above the horizon is floor
    assert not (sem[rows > horizon] == 1).any()  # and the ceiling is never below it
    # The floor's z-depth is height * fy / (row - cy) for a level camera.
    expected = h_cam * K[1, 1] / (rows[floor] - horizon)
    np.testing.assert_allclose(depth[floor], np.clip(expected, 0.3, 10.0), rtol=1e-4)


def test_cast_shadows_darken_the_floor_behind_a_box():
    scene = _empty_room((5.0, 6.0, 2.8))
    scene.lights = [Light((4.3, 3.0, 2.6), (1.0, 1.0, 1.0), 6.0)]  # behind the box: its shadow faces us
    box = Box((3.5, 3.0, 0.4), (0.3, 0.3, 0.4), label=3)
    scene.primitives.append(box)
    pose = camera_pose((0.8, 3.0, 1.6), 0.0, math.radians(-20.0))
    lit = render(scene, pose, size=SMALL)
    box.casts_shadow = False
    unshadowed = render(scene, pose, size=SMALL)
    diff = lit["rgb"].astype(int).sum(-1) - unshadowed["rgb"].astype(int).sum(-1)
    assert (diff <= 0).all()
    darker = diff < -10
    assert darker.mean() > 0.01
    assert (lit["semantics"][darker] != 3).all()  # the shadow falls on the room, not on the box
    np.testing.assert_array_equal(lit["depth"], unshadowed["depth"])


# ----------------------------------------------------------------------------- sequences

def _reprojection_error(f0, f1):
    K = f0["K"]
    h, w = f0["depth"].shape
    v, u = np.mgrid[0:h, 0:w]
    d = f0["depth"].astype(np.float64)
    pts = np.stack([(u - K[0, 2]) / K[0, 0] * d, (v - K[1, 2]) / K[1, 1] * d, d], -1).reshape(-1, 3)
    rel = np.linalg.inv(f1["pose"]) @ f0["pose"]
    q = pts @ rel[:3, :3].T + rel[:3, 3]
    z = q[:, 2]
    uu, vv = K[0, 0] * q[:, 0] / z + K[0, 2], K[1, 1] * q[:, 1] / z + K[1, 2]
    ok = (z > 0.3) & (d.ravel() < 9.99) & (uu > -0.5) & (uu < w - 0.5) & (vv > -0.5) & (vv < h - 0.5)
    d1 = f1["depth"][np.rint(vv[ok]).astype(int), np.rint(uu[ok]).astype(int)]
    return np.abs(z[ok] - d1) / d1, ok.mean()


def test_sequence_is_smooth_and_depth_reprojects_with_pose():
    frames = render_sequence((2, 0), (72, 96), 5)
    assert len(frames) == 5 and all(f["scene"] is frames[0]["scene"] for f in frames)
    steps = []
    for f0, f1 in zip(frames, frames[1:]):
        rel = np.linalg.inv(f1["pose"]) @ f0["pose"]
        angle = math.degrees(math.acos(np.clip((np.trace(rel[:3, :3]) - 1) / 2, -1, 1)))
        steps.append(np.linalg.norm(rel[:3, 3]))
        assert angle < 3.0
        err, coverage = _reprojection_error(f0, f1)
        assert coverage > 0.7
        assert np.median(err) < 0.02 and (err > 0.1).mean() < 0.05
    assert 0.0 < min(steps) and max(steps) < 0.15
    assert np.ptp(steps) < 0.02  # steady walk
    # The check has teeth: with the camera of frame 1 put 30 cm further forward, depth no longer agrees.
    bad_pose = frames[1]["pose"].copy()
    bad_pose[:3, 3] += 0.3 * bad_pose[:3, 2]
    err, _ = _reprojection_error(frames[0], {**frames[1], "pose": bad_pose})
    assert np.median(err) > 0.04


def test_sequences_on_disk_keep_scenes_in_one_split(tmp_path):
    info = generate(tmp_path, 5, size=(24, 32), seed=1, sequence_length=3, progress=False)
    assert info["sequence_length"] == 3 and sum(info["splits"].values()) == 15
    for scene in range(5):
        splits = {_frame_file(tmp_path, f"{scene * 3 + f:05d}.json").parent.name for f in range(3)}
        assert len(splits) == 1
        metas = [json.loads(_frame_file(tmp_path, f"{scene * 3 + f:05d}.json").read_text()) for f in range(3)]
        assert [(m["scene"], m["frame"]) for m in metas] == [(scene, 0), (scene, 1), (scene, 2)]
        frames = render_sequence((1, scene), (24, 32), 3)
        for m, fr in zip(metas, frames):
            np.testing.assert_allclose(m["pose"], fr["pose"])


# ----------------------------------------------------------------------------- layout and arguments

def test_csv_and_dataset_json_follow_the_dense_depth_layout(tmp_path):
    info = generate(tmp_path, 10, size=(24, 32), seed=0, progress=False, preview=True)
    assert info == json.loads((tmp_path / "dataset.json").read_text())
    assert {k: info[k] for k in ("name", "version", "size", "seed", "num", "sequence_length", "classes",
                                 "depth_unit", "depth_range_m")} == {
        "name": "seldepth-synthetic", "version": 1, "size": [24, 32], "seed": 0, "num": 10, "sequence_length": 1,
        "classes": ["floor", "ceiling", "wall", "furniture", "object"], "depth_unit": "mm", "depth_range_m": [0.3, 10]}
    assert info["splits"] == {"train": 8, "val": 1, "test": 1}
    names = []
    for split in ("train", "val", "test"):
        lines = (tmp_path / f"{split}.csv").read_text().splitlines()
        assert len(lines) == info["splits"][split]
        for line in lines:
            m = re.fullmatch(rf"{split}/(\d{{5}})_colors\.png,{split}/(\d{{5}})_depth\.png", line)
            assert m and m.group(1) == m.group(2), line
            names.append(m.group(1))
            rgb, depth = (Image.open(tmp_path / p) for p in line.split(","))
            assert rgb.mode == "RGB" and rgb.size == (32, 24)
            assert depth.mode.startswith("I") and depth.size == (32, 24)
            mm = np.asarray(depth)
            assert mm.min() >= 300 and mm.max() <= 10000
            assert (tmp_path / split / f"{m.group(1)}.json").exists()
    assert sorted(names) == [f"{i:05d}" for i in range(10)]
    assert Image.open(tmp_path / "preview.png").size[0] > 300
    assert not list(tmp_path.rglob("*.partial"))


def test_nyu_reader_reads_the_synthetic_set(tmp_path):
    nyu = pytest.importorskip("seldepth.data.nyu_densedepth")
    generate(tmp_path, 3, size=(24, 32), seed=2, splits=(0, 0, 1), progress=False)
    ds = nyu.NYUDenseDepth(tmp_path, split="test")
    assert len(ds) == 3
    sample = ds[0]
    frame = render_frame((2, int(Path(sample["meta"]["rgb"]).name[:5])), (24, 32))
    np.testing.assert_allclose(sample["depth"][0].numpy(), frame["depth"], atol=0.0005 + 1e-6)
    np.testing.assert_allclose(sample["K"].numpy(), frame["K"], rtol=1e-6)
    np.testing.assert_array_equal(sample["semantics"].numpy(), frame["semantics"])


def test_an_interrupted_run_leaves_no_complete_marker(tmp_path, monkeypatch):
    import seldepth.data.synthetic.writer as writer

    generate(tmp_path, 2, size=(24, 32), seed=0, progress=False)
    assert (tmp_path / "dataset.json").exists()
    real = writer.render_sequence

    def failing(seed, *args, **kwargs):
        if seed[1] == 1:
            raise KeyboardInterrupt
        return real(seed, *args, **kwargs)

    monkeypatch.setattr(writer, "render_sequence", failing)
    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, 2, size=(24, 32), seed=0, progress=False)
    assert not (tmp_path / "dataset.json").exists()


@pytest.mark.parametrize("kwargs, name", [
    ({"num": 0}, "num"), ({"num": -3}, "num"), ({"num": 2.5}, "num"),
    ({"size": (0, 32)}, "size"), ({"size": (24, -1)}, "size"), ({"size": "32by24"}, "size"),
    ({"sequence_length": 0}, "sequence_length"), ({"seed": -1}, "seed"),
    ({"splits": (0.5, 0.5)}, "splits"), ({"splits": (1, -0.1, 0.1)}, "splits"), ({"workers": 0}, "workers"),
])
def test_bad_arguments_raise_naming_the_argument(tmp_path, kwargs, name):
    args = {"out_dir": tmp_path / "x", "num": 1, "size": (24, 32), "progress": False, **kwargs}
    with pytest.raises(ValueError, match=name):
        generate(**args)
    assert not (tmp_path / "x" / "dataset.json").exists()


def test_parse_size_is_height_by_width():
    assert parse_size("192x256") == (192, 256)
    assert parse_size("480X640") == (480, 640)
    assert parse_size(" 30 x 40 ") == (30, 40)
    for bad in ("256", "256x", "x192", "0x10", "10x0", "a x b", "1x2x3"):
        with pytest.raises(ValueError, match="size must be HxW"):
            parse_size(bad)
    with pytest.raises(ValueError, match="--size must be HxW"):
        parse_size("192by256", key="--size")
    frame = render_frame(0, parse_size("30x40"))
    assert frame["rgb"].shape == (30, 40, 3)
    assert inspect.signature(generate).parameters["size"].default == (192, 256)  # (H, W), as parse_size gives
    with pytest.raises(ValueError, match="sequence_length"):
        render_sequence(0, (30, 40), 0)
