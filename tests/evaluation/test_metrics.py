import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seldepth.evaluation.metrics import METRIC_NAMES, DepthMetrics, clamp_prediction, per_image_metrics
from seldepth.evaluation.protocol import Protocol, crop_bounds, get_protocol


def _metric(values, name):
    return values[:, METRIC_NAMES.index(name)]


def test_hand_computed_two_pixel_image():
    # gt = [1, 4], pred = [2, 2]
    gt = torch.tensor([1.0, 4.0]).view(1, 1, 1, 2)
    pred = torch.tensor([2.0, 2.0]).view(1, 1, 1, 2)
    v = per_image_metrics(pred, gt, gt > 0)[0]
    m = dict(zip(METRIC_NAMES, v.tolist()))
    assert m["abs_rel"] == pytest.approx((1 / 1 + 2 / 4) / 2)
    assert m["sq_rel"] == pytest.approx((1 / 1 + 4 / 4) / 2)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))
    assert m["rmse_log"] == pytest.approx(math.log(2))  # both |log ratio| = log 2
    assert m["log10"] == pytest.approx(math.log10(2))
    # e = [log 2, -log 2]: mean 0, mean e^2 = log(2)^2 -> silog = 100 log 2
    assert m["silog"] == pytest.approx(100 * math.log(2))
    assert m["delta1"] == 0.0 and m["delta2"] == 0.0 and m["delta3"] == 0.0  # ratio 2 > 1.25^3 = 1.953


def test_delta_thresholds_are_strict_powers_of_1_25():
    gt = torch.ones(1, 1, 1, 3)
    pred = torch.tensor([1.2, 1.5, 1.9]).view(1, 1, 1, 3)
    m = dict(zip(METRIC_NAMES, per_image_metrics(pred, gt, gt > 0)[0].tolist()))
    assert m["delta1"] == pytest.approx(1 / 3)
    assert m["delta2"] == pytest.approx(2 / 3)
    assert m["delta3"] == pytest.approx(1.0)


def test_mask_excludes_pixels_and_empty_images_are_nan():
    gt = torch.tensor([[1.0, 100.0]]).view(1, 1, 1, 2)
    pred = torch.tensor([[1.0, 1.0]]).view(1, 1, 1, 2)
    mask = torch.tensor([[True, False]]).view(1, 1, 1, 2)
    assert _metric(per_image_metrics(pred, gt, mask), "rmse").item() == 0.0
    assert torch.isnan(per_image_metrics(pred, gt, torch.zeros_like(mask))).all()


def test_silog_is_scale_invariant_but_rmse_log_is_not():
    gt = torch.rand(1, 1, 8, 8) * 5 + 0.5
    v = per_image_metrics(gt * 1.7, gt, gt > 0)[0]
    assert v[METRIC_NAMES.index("silog")].item() == pytest.approx(0.0, abs=1e-5)
    assert v[METRIC_NAMES.index("rmse_log")].item() == pytest.approx(math.log(1.7))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.01, 80.0), min_size=1, max_size=64))
def test_perfect_prediction(values):
    gt = torch.tensor(values).view(1, 1, 1, -1)
    m = dict(zip(METRIC_NAMES, per_image_metrics(gt.clone(), gt, gt > 0)[0].tolist()))
    assert m["rmse"] == 0 and m["abs_rel"] == 0 and m["log10"] == 0
    assert m["delta1"] == 1 and m["delta3"] == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=2, max_size=32), st.floats(1.01, 3.0))
def test_uniform_overestimate(values, factor):
    gt = torch.tensor(values, dtype=torch.float64).view(1, 1, 1, -1)
    m = dict(zip(METRIC_NAMES, per_image_metrics(gt * factor, gt, gt > 0)[0].tolist()))
    assert m["abs_rel"] == pytest.approx(factor - 1, rel=1e-6)
    assert m["log10"] == pytest.approx(math.log10(factor), rel=1e-6)
    assert m["delta1"] == (1.0 if factor < 1.25 else 0.0)


def test_clamp_prediction_handles_inf_and_nan():
    pred = torch.tensor([float("inf"), float("nan"), -float("inf"), 20.0, 0.0])
    assert clamp_prediction(pred, 1e-3, 10.0).tolist() == pytest.approx([10.0, 1e-3, 1e-3, 10.0, 1e-3])


def test_crops_at_native_resolution():
    assert crop_bounds("eigen_nyu", 480, 640) == (45, 471, 41, 601)
    assert crop_bounds("garg", 375, 1242) == (153, 371, 44, 1197)
    assert crop_bounds("eigen_kitti", 375, 1242) == (124, 342, 44, 1197)
    from seldepth.evaluation.protocol import get_protocol

    assert get_protocol("kitti_eigen").crop == "eigen_kitti" and get_protocol("kitti_eigen").max_depth == 80.0


def test_metric_averages_per_image_not_per_pixel():
    # Image A: 1 valid pixel with error 3; image B: 3 valid pixels with error 0.
    proto = Protocol("t", 1e-3, 100.0, None)
    gt = torch.full((2, 1, 1, 4), 5.0)
    gt[0, 0, 0, 1:] = 0  # invalid
    pred = gt.clone()
    pred[0, 0, 0, 0] = 8.0
    pred[1, 0, 0, 3] = 5.0
    gt[1, 0, 0, 3] = 0
    metric = DepthMetrics(proto)
    metric.update(pred, gt)
    out = metric.compute()
    assert out["rmse"] == pytest.approx((3.0 + 0.0) / 2)  # per-pixel pooling would give 1.5 too, so check abs_rel
    assert out["abs_rel"] == pytest.approx((3 / 5 + 0) / 2)
    assert out["num_images"] == 2


def test_metric_accumulates_across_updates_like_one_batch():
    proto = get_protocol("nyu", caps=(4,))
    gt = torch.rand(4, 1, 48, 64) * 9 + 0.5
    pred = gt * (1 + 0.2 * torch.randn_like(gt)).clamp(0.5, 1.5)
    one, two = DepthMetrics(proto), DepthMetrics(proto)
    one.update(pred, gt)
    two.update(pred[:1], gt[:1])
    two.update(pred[1:], gt[1:])
    a, b = one.compute(), two.compute()
    for key in a:
        assert a[key] == pytest.approx(b[key])
    assert "rmse@4m" in a and a["rmse@4m"] != a["rmse"]


def test_capped_metrics_only_score_pixels_below_cap():
    proto = Protocol("t", 1e-3, 10.0, None, caps=(4.0,))
    gt = torch.tensor([2.0, 8.0]).view(1, 1, 1, 2)
    pred = torch.tensor([3.0, 8.0]).view(1, 1, 1, 2)
    metric = DepthMetrics(proto)
    metric.update(pred, gt)
    out = metric.compute()
    assert out["rmse@4m"] == pytest.approx(1.0)
    assert out["rmse"] == pytest.approx(math.sqrt(0.5))


def test_bad_protocol_values():
    with pytest.raises(ValueError, match="unknown protocol"):
        get_protocol("nyuu")
    with pytest.raises(ValueError, match="depth range"):
        Protocol("x", 5.0, 1.0)
    with pytest.raises(ValueError, match="unknown crop"):
        Protocol("x", crop="nope")


def test_semantic_iou_by_hand_skips_ignored_pixels_and_absent_classes():
    from seldepth.evaluation.metrics import SemanticIoU

    target = torch.tensor([[0, 0, 1, 1, -1]])
    pred = torch.tensor([[0, 1, 1, 1, 2]])  # the ignored pixel's prediction does not count
    m = SemanticIoU(3)
    m.update(pred, target)
    out = m.compute()
    # class 0: tp 1, gt 2, pred 1 -> 1/2; class 1: tp 2, gt 2, pred 3 -> 2/3; class 2 absent from the targets
    assert out["iou"][:2] == pytest.approx([0.5, 2 / 3]) and out["iou"][2] != out["iou"][2]
    assert out["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    logits = torch.nn.functional.one_hot(pred.clamp(max=2), 3).permute(0, 2, 1)[..., None].float()  # (1, 3, 5, 1)
    m2 = SemanticIoU(3)
    m2.update(logits, target[..., None])
    assert m2.compute()["miou"] == pytest.approx(out["miou"])


def test_evaluate_scores_semantics_of_a_model_with_a_semantic_output(tmp_path, monkeypatch):
    from seldepth.data.spec import open_dataset
    from seldepth.evaluation import evaluate, format_table
    from seldepth.models import create_model
    from seldepth.models.preprocessing import Preprocessing
    from seldepth.evaluation.protocol import get_protocol

    monkeypatch.setenv("SELDEPTH_CACHE", str(tmp_path))
    data = open_dataset("synthetic:default:12", "train")
    model = create_model("synergy_depth", semantic_classes=5)
    model.preprocessing = Preprocessing(input_size=(64, 64))
    with torch.no_grad():  # predict class 2 (wall) everywhere
        model.semantic_head.weight.zero_()
        model.semantic_head.bias.copy_(torch.tensor([0.0, 0.0, 10.0, 0.0, 0.0]))
    result = evaluate(model, data, get_protocol("synthetic"), progress=False)
    labels = torch.cat([data[i]["semantics"].flatten() for i in range(len(data))])
    walls = (labels == 2).sum().item()
    present = len(labels.unique())
    assert result["semantics"]["iou"][2] == pytest.approx(walls / len(labels))  # tp = walls, union = every pixel
    assert result["semantics"]["miou"] == pytest.approx(walls / len(labels) / present)
    assert "semantic mIoU" in format_table(result, get_protocol("synthetic"))
    assert "semantics" not in evaluate(create_model("meter_xxs"), data, get_protocol("synthetic"), progress=False)


def test_median_scaling_by_hand_and_the_ratios_spread():
    proto = Protocol("t", 1e-3, 10.0, None, median_scaling=True)
    gt = torch.tensor([[[[1.0, 2.0, 4.0]]], [[[2.0, 2.0, 2.0]]]])
    pred = torch.stack([gt[0] / 2, gt[1] / 4])  # right up to scale: ratios 2 and 4
    metric = DepthMetrics(proto)
    metric.update(pred, gt)
    out = metric.compute()
    assert out["abs_rel"] == pytest.approx(0, abs=1e-12) and out["rmse"] == pytest.approx(0, abs=1e-12)
    assert out["scale_ratio"] == pytest.approx(3.0) and out["scale_ratio_spread"] == pytest.approx(1 / 3)
    # the ratio is of medians over the scored pixels: invalid ones do not count
    metric = DepthMetrics(proto)
    metric.update(torch.tensor([[[[1.0, 1.0, 100.0]]]]), torch.tensor([[[[2.0, 3.0, 0.0]]]]))
    m = metric.compute()
    # median(gt) over the two valid pixels is 2 (torch: the lower one), median(pred) 1, so pred -> 2, 2
    assert m["scale_ratio"] == pytest.approx(2.0) and m["abs_rel"] == pytest.approx((0 + 1 / 3) / 2)
    assert "scale_ratio" not in DepthMetrics(Protocol("t", 1e-3, 10.0, None)).compute()


def test_valid_range_is_open_at_both_ends():
    # min_depth < gt < max_depth: a pixel at exactly 10 m (or exactly min_depth) is not scored
    proto = Protocol("t", 0.5, 10.0, None)
    gt = torch.tensor([5.0, 10.0, 0.5]).view(1, 1, 1, 3)
    pred = torch.tensor([5.0, 1.0, 3.0]).view(1, 1, 1, 3)
    metric = DepthMetrics(proto)
    metric.update(pred, gt)
    out = metric.compute()
    assert out["rmse"] == 0.0 and out["abs_rel"] == 0.0  # only the 5 m pixel counts


def test_crop_mask_covers_exactly_the_crop_bounds():
    from seldepth.evaluation.protocol import crop_mask

    mask = crop_mask("eigen_nyu", 480, 640)
    assert int(mask.sum()) == (471 - 45) * (601 - 41)
    assert mask[45, 41] and mask[470, 600]  # first and last pixel inside (end indices exclusive)
    assert not mask[44, 41] and not mask[45, 40] and not mask[471, 600] and not mask[470, 601]
    garg = crop_mask("garg", 375, 1242)
    assert int(garg.sum()) == (371 - 153) * (1197 - 44)


def test_eigen_nyu_crop_is_rounded_at_other_sizes_and_garg_truncated():
    # 471 / 480 * 228 = 223.725: rounded to 224 (truncation would give 223)
    assert crop_bounds("eigen_nyu", 228, 304) == (21, 224, 19, 285)
    # the KITTI crops are fractions truncated to pixels: 0.40810811 * 352 = 143.65 -> 143
    assert crop_bounds("garg", 352, 1216) == (143, 349, 43, 1172)
