import pytest
import torch

from seldepth.data.sparse import SparseDepth, SparseDepthConfig, lidar_mask


def test_lidar_mask_coverage_rows_and_determinism():
    cfg = SparseDepthConfig(enabled=True, lines=16, step=2, dropout=0.1, bend=0.0)
    mask = lidar_mask(192, 256, cfg, index=3)
    assert torch.equal(mask, lidar_mask(192, 256, cfg, index=3))  # a fixed property of the frame
    assert not torch.equal(mask, lidar_mask(192, 256, cfg, index=4))
    rows = mask.any(1).nonzero().flatten()
    assert len(rows) == 16  # straight lines: one row each, spaced H / lines apart
    assert ((rows[1:] - rows[:-1]) - 12).abs().max() <= 1
    assert not mask[:, 1::2].any()  # every 2nd pixel along a line
    expected = 16 / 192 * 0.9 / 2
    assert abs(mask.float().mean().item() - expected) < 0.01


def test_bent_lines_stay_near_their_rows():
    cfg = SparseDepthConfig(enabled=True, lines=8, step=1, dropout=0.0, bend=3.0)
    mask = lidar_mask(96, 128, cfg, index=0)
    rows = mask.any(1).nonzero().flatten()
    assert 8 <= len(rows) <= 8 * 7  # each line within +-3 rows of its own


class _Dense(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        depth = torch.full((1, 48, 64), 3.0)
        valid = torch.ones_like(depth, dtype=torch.bool)
        valid[:, :, :8] = False
        return {"image": torch.rand(3, 48, 64), "depth": depth, "valid": valid}


def test_sparse_dataset_masks_depth_and_valid():
    cfg = SparseDepthConfig(enabled=True, lines=6, step=2)
    sample = SparseDepth(_Dense(), cfg)[1]
    expected = lidar_mask(48, 64, cfg, 1)[None] & _Dense()[1]["valid"]
    assert torch.equal(sample["valid"], expected)
    assert (sample["depth"][~expected] == 0).all() and (sample["depth"][expected] == 3.0).all()


def test_scan_lines_stay_in_the_vertical_field_of_view():
    cfg = SparseDepthConfig(enabled=True, lines=16, step=2, dropout=0.0, bend=2.0, rows=(0.35, 1.0))
    for index in range(5):
        mask = lidar_mask(192, 256, cfg, index)
        rows = mask.any(1).nonzero().flatten()
        assert rows.min() >= round(0.35 * 192) - 2 and len(rows) >= 16  # nothing above the band (bend <= 2 px)
        assert not mask[: round(0.35 * 192) - 2].any() and mask[150:].any()
    with pytest.raises(ValueError, match="data.sparse.rows"):
        SparseDepthConfig(rows=(0.5, 0.4))
