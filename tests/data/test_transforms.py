import itertools

import pytest
import torch

from seldepth.data.transforms import (
    AugmentConfig,
    TrainTransform,
    crop,
    hflip,
    masked_downsample,
    resize,
)


def _sample(h=12, w=16):
    torch.manual_seed(0)
    depth = torch.rand(1, h, w) * 5 + 0.5
    return {
        "image": torch.rand(3, h, w),
        "depth": depth,
        "valid": depth > 1.0,
        "semantics": torch.randint(0, 5, (h, w)),
        "K": torch.tensor([[10.0, 0, 7.0], [0, 11.0, 5.0], [0, 0, 1]]),
        "meta": {},
    }


def _project(K, point):
    x, y, z = point
    return float(K[0, 0] * x / z + K[0, 2]), float(K[1, 1] * y / z + K[1, 2])


def test_hflip_moves_everything_and_mirrors_the_principal_point():
    s = _sample()
    f = hflip(s)
    assert torch.equal(f["depth"][..., 0], s["depth"][..., -1])
    assert torch.equal(f["semantics"][:, 3], s["semantics"][:, -4])
    # a 3D point at column u projects to column W-1-u in the mirrored camera with x -> -x
    u, v = _project(s["K"], (0.3, -0.2, 2.0))
    u2, v2 = _project(f["K"], (-0.3, -0.2, 2.0))
    assert u2 == pytest.approx(16 - 1 - u) and v2 == pytest.approx(v)


def test_crop_shifts_principal_point():
    s = _sample()
    c = crop(s, 2, 3, 8, 10)
    assert torch.equal(c["depth"], s["depth"][:, 2:10, 3:13])
    u, v = _project(s["K"], (0.1, 0.2, 3.0))
    u2, v2 = _project(c["K"], (0.1, 0.2, 3.0))
    assert (u2, v2) == pytest.approx((u - 3, v - 2))


def test_resize_scales_intrinsics_with_pixel_centres_and_uses_nearest_for_depth():
    s = _sample(12, 16)
    r = resize(s, (24, 32))
    u, v = _project(s["K"], (0.1, 0.2, 3.0))
    u2, v2 = _project(r["K"], (0.1, 0.2, 3.0))
    assert (u2, v2) == pytest.approx(((u + 0.5) * 2 - 0.5, (v + 0.5) * 2 - 0.5))
    # nearest-neighbour: every resized depth value is one of the original values
    assert set(r["depth"].unique().tolist()) <= set(s["depth"].unique().tolist())
    assert r["valid"].dtype == torch.bool and r["semantics"].dtype == torch.long


def test_channel_permutation_is_a_true_permutation():
    s = _sample()
    t = TrainTransform((12, 16), AugmentConfig(p=1.0, hflip=False, color_jitter=0.0, crop_scale=(1.0, 1.0)))
    seen = set()
    for _ in range(60):
        out = t(s)["image"]
        perm = tuple(int(torch.argmin(((out[i : i + 1] - s["image"]) ** 2).flatten(1).sum(1))) for i in range(3))
        assert sorted(perm) == [0, 1, 2] and perm != (0, 1, 2)
        seen.add(perm)
    assert seen == {p for p in itertools.permutations(range(3)) if p != (0, 1, 2)}


def test_train_transform_output_size_and_depth_untouched_by_colour():
    s = _sample(20, 30)
    t = TrainTransform((12, 16), AugmentConfig(p=1.0, hflip=False, channel_permutation=False, crop_scale=(1.0, 1.0)))
    out = t(s)
    assert out["image"].shape == (3, 12, 16) and out["depth"].shape == (1, 12, 16)
    assert torch.equal(out["depth"], resize(s, (12, 16))["depth"])


def test_masked_downsample_ignores_invalid_pixels():
    depth = torch.tensor([[1.0, 3.0], [0.0, 100.0]]).view(1, 1, 2, 2)
    valid = torch.tensor([[True, True], [False, False]]).view(1, 1, 2, 2)
    d, v = masked_downsample(depth, valid, (1, 1))
    assert d.item() == pytest.approx(2.0) and v.item()
    d, v = masked_downsample(depth, torch.zeros_like(valid), (1, 1))
    assert not v.item() and d.item() == 0.0


def test_bad_augment_values_name_the_key():
    with pytest.raises(ValueError, match="data.augment.p"):
        AugmentConfig(p=1.5)
    with pytest.raises(ValueError, match="data.augment.crop_scale"):
        AugmentConfig(crop_scale=(0.0, 1.0))


def test_teacher_image_is_flipped_with_the_depth_but_keeps_its_colours():
    s = _sample()
    t = TrainTransform((12, 16), AugmentConfig(p=1.0, hflip=True, color_jitter=0.3, channel_permutation=True,
                                               crop_scale=(1.0, 1.0)))
    out = t(s)
    assert torch.equal(out["teacher_image"], s["image"].flip(-1))  # flipped like depth, no jitter, no permutation
    assert torch.equal(out["depth"], s["depth"].flip(-1))
    assert not torch.allclose(out["image"], out["teacher_image"])  # the student's image was colour-augmented
