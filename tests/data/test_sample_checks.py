"""The one sample builder rejects every kind of bad depth with the file named."""

import pytest
import torch

from seldepth.data.errors import DatasetError
from seldepth.data.sample import intrinsics_matrix, make_sample

META = {"rgb": "scene/rgb_7.png", "depth": "scene/depth_7.png", "index": 7}
K = intrinsics_matrix(500.0, 500.0, 3.5, 2.5)


def _depth(**changes):
    d = torch.full((1, 6, 8), 2.0)
    for (y, x), v in changes.get("at", {}).items():
        d[0, y, x] = v
    return d


def test_valid_mask_is_positive_depth():
    d = _depth(at={(0, 0): 0.0, (5, 7): 0.0})
    s = make_sample(torch.rand(3, 6, 8), d, K, META)
    assert s["valid"].shape == (1, 6, 8)
    assert not s["valid"][0, 0, 0] and not s["valid"][0, 5, 7]
    assert int(s["valid"].sum()) == 46
    assert torch.equal(s["K"], K)


@pytest.mark.parametrize("value, message", [(float("nan"), "NaN or infinite"), (float("inf"), "NaN or infinite"),
                                            (-0.5, "negative")])
def test_bad_values_are_named(value, message):
    with pytest.raises(DatasetError, match=rf"scene/depth_7.png: 1 depth values are {message}"):
        make_sample(torch.rand(3, 6, 8), _depth(at={(2, 3): value}), K, META)


def test_all_invalid_depth_is_named():
    with pytest.raises(DatasetError, match="depth_7.png: the depth map has no valid pixel"):
        make_sample(torch.rand(3, 6, 8), torch.zeros(1, 6, 8), K, META)


def test_size_mismatch_names_both_files():
    with pytest.raises(DatasetError, match=r"RGB scene/rgb_7.png is \(6, 9\) but depth scene/depth_7.png is \(6, 8\)"):
        make_sample(torch.rand(3, 6, 9), _depth(), K, META)


def test_bad_intrinsics_and_semantics():
    with pytest.raises(DatasetError, match="3x3"):
        make_sample(torch.rand(3, 6, 8), _depth(), torch.eye(4), META)
    with pytest.raises(DatasetError, match="semantics"):
        make_sample(torch.rand(3, 6, 8), _depth(), K, META, semantics=torch.zeros(5, 8))
