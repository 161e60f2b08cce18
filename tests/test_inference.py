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


def test_flip_averaging_is_mean_of_both_predictions():
    model = seldepth.create_model("meter_xxs").eval()
    images = torch.rand(2, 3, 96, 128)
    plain = predict_depth(model, images)
    flipped = predict_depth(model, images.flip(-1)).flip(-1)
    torch.testing.assert_close(predict_depth(model, images, flip=True), 0.5 * (plain + flipped), atol=1e-5, rtol=1e-5)
