import numpy as np
import pytest
import torch
from PIL import Image

import seldepth
from seldepth.inference import predict_depth


def test_predict_returns_metres_at_input_resolution(meter_nyu_file, nyu_sample):
    model = seldepth.load_model(meter_nyu_file)
    out = seldepth.predict(model, nyu_sample / "nyu2_test/00000_colors.png")
    depth = out["predicted_depth"]
    assert depth.shape == (480, 640)
    gt = np.asarray(Image.open(nyu_sample / "nyu2_test/00000_depth.png")) / 1000.0
    # A decent indoor model: median within 30% of the ground truth's.
    assert np.median(depth.numpy()) == pytest.approx(np.median(gt), rel=0.3)
    assert isinstance(out["depth"], Image.Image) and out["depth"].size == (640, 480)
    # New contract (was: "depth" the colour map): "depth" is grayscale as HF's depth-estimation pipeline makes it,
    # uint8((d - min) / (max - min) * 255), far bright; the colour map is "depth_color".
    assert out["depth"].mode == "L"
    d = depth.numpy().astype(np.float64)
    expected = ((d - d.min()) / (d.max() - d.min()) * 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(out["depth"]), expected)
    far = np.unravel_index(np.argmax(d), d.shape)
    assert np.asarray(out["depth"])[far] == 255
    assert isinstance(out["depth_color"], Image.Image) and out["depth_color"].mode == "RGB"
    assert out["depth_color"].size == (640, 480)


def test_predict_accepts_arrays_pil_and_tensors_alike(meter_nyu_file, nyu_sample):
    model = seldepth.load_model(meter_nyu_file)
    pil = Image.open(nyu_sample / "nyu2_test/00001_colors.png")
    a = seldepth.predict(model, pil)["predicted_depth"]
    b = seldepth.predict(model, np.asarray(pil))["predicted_depth"]
    c = seldepth.predict(model, torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1) / 255.0)["predicted_depth"]
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        seldepth.predict(model, np.zeros((4, 4)))
    # float arrays in [0, 1] and uint8 tensors are the same image
    d = seldepth.predict(model, np.asarray(pil).astype(np.float32) / 255.0)["predicted_depth"]
    e = seldepth.predict(model, torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1))["predicted_depth"]
    torch.testing.assert_close(a, d)
    torch.testing.assert_close(a, e)


def test_predict_refuses_inputs_it_would_get_wrong(meter_nyu_file, nyu_sample):
    model = seldepth.load_model(meter_nyu_file)
    rgb = np.asarray(Image.open(nyu_sample / "nyu2_test/00001_colors.png"))
    # 0..255 floats used to give 2.79..18.42 m instead of 2.1..4.2 m, silently.
    with pytest.raises(ValueError, match=r"has values 0\.\.255; a float image must be RGB in \[0, 1\] \(it looks like "
                                         r"0\.\.255: divide by 255, or pass it as uint8\)"):
        seldepth.predict(model, rgb.astype(np.float32))
    with pytest.raises(ValueError, match=r"values -0\.1\.\.1; a float image must be RGB in \[0, 1\]$"):
        seldepth.predict(model, np.full((8, 8, 3), -0.1, np.float32).clip(-0.1, None) + np.eye(8)[..., None] * 1.1)
    nan = np.full((8, 8, 3), 0.5, np.float32)
    nan[2, 2, 1] = np.nan
    with pytest.raises(ValueError, match="holds NaN or infinite values"):
        seldepth.predict(model, nan)
    with pytest.raises(ValueError, match=r"dtype uint16 is not an image seldepth reads: convert it to uint8"):
        seldepth.predict(model, (rgb.astype(np.uint16) * 257))
    with pytest.raises(ValueError, match=r"\(3, H, W\) tensor of dtype torch.int64"):
        seldepth.predict(model, torch.zeros(3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"got shape \(1, 3, 8, 8\) \(a batch\? pass a list of images\)"):
        seldepth.predict(model, torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"got shape \(8, 8, 4\)"):
        seldepth.predict(model, np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(TypeError, match="cannot read an image from dict"):
        seldepth.predict(model, {"image": rgb})
    # within one 8-bit step of [0, 1]: accepted (clamped), the same as the clamped image
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0
    y = x * (1 + 1e-3)
    torch.testing.assert_close(seldepth.predict(model, y)["predicted_depth"],
                               seldepth.predict(model, y.clamp(0, 1))["predicted_depth"])
    assert y.max().item() > 1.0  # the caller's tensor is not clamped in place


def test_predict_on_a_list_returns_one_result_per_image_in_order(meter_nyu_file, nyu_sample):
    model = seldepth.load_model(meter_nyu_file)
    paths = [nyu_sample / f"nyu2_test/{i}_colors.png" for i in ("00000", "00001", "00008")]
    small = Image.open(paths[2]).resize((320, 240))
    inputs = [paths[0], small, Image.open(paths[1]), np.asarray(Image.open(paths[2]))]
    outs = seldepth.predict(model, inputs, batch_size=2)
    assert isinstance(outs, list) and len(outs) == 4
    assert [tuple(o["predicted_depth"].shape) for o in outs] == [(480, 640), (240, 320), (480, 640), (480, 640)]
    for item, out in zip(inputs, outs):
        single = seldepth.predict(model, item)
        torch.testing.assert_close(out["predicted_depth"], single["predicted_depth"], atol=1e-4, rtol=1e-4)
        assert out["depth"].mode == "L" and out["depth_color"].mode == "RGB"
    assert seldepth.predict(model, []) == []
    with pytest.raises(ValueError, match=r"^image 1 of the list: .*has values 0\.\.255"):
        seldepth.predict(model, [paths[0], np.asarray(small).astype(np.float32)])


def test_flip_averaging_is_mean_of_both_predictions():
    model = seldepth.create_model("meter_xxs").eval()
    images = torch.rand(2, 3, 96, 128)
    plain = predict_depth(model, images)
    flipped = predict_depth(model, images.flip(-1)).flip(-1)
    torch.testing.assert_close(predict_depth(model, images, flip=True), 0.5 * (plain + flipped), atol=1e-5, rtol=1e-5)
