"""The deprecated ``RealtimeDepth.detach(head)``: a warning, then exactly what ``up_to_head(head)`` gives."""

import warnings

import pytest
import torch

from seldepth.models import create_model
from seldepth.models.preprocessing import Preprocessing


def _trained_looking_model():
    """A realtime_depth whose every weight and BatchNorm statistic differs from a fresh model's."""
    model = create_model("realtime_depth", semantic_classes=3)
    with torch.no_grad():
        for t in model.parameters():
            t.add_(0.05 * torch.randn_like(t))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.mul_(torch.rand_like(b) + 0.5)
            elif name.endswith("running_mean"):
                b.add_(0.05 * torch.randn_like(b))
    model.preprocessing = Preprocessing(input_size=(64, 96))
    return model.eval()


@pytest.mark.parametrize("head", ["L", "M", "S", "XS"])
def test_detach_warns_and_gives_the_weights_of_up_to_head(head):
    full = _trained_looking_model()
    with pytest.warns(DeprecationWarning, match=r"detach\(head\) is deprecated; use up_to_head\(head\)") as caught:
        old = full.detach(head)
    assert len(caught) == 1 and caught[0].filename == __file__  # stacklevel: the warning points at the caller
    new = full.up_to_head(head)
    assert type(old) is type(new) and old.heads == new.heads and old.config == new.config
    assert old.preprocessing == new.preprocessing == full.preprocessing and old.training == new.training is False
    a, b, own = old.state_dict(), new.state_dict(), full.state_dict()
    assert list(a) == list(b) and a  # same entries in the same order
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
        torch.testing.assert_close(a[key], own[key], rtol=0, atol=0)  # the full model's weights, not fresh ones
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        out = old(x)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, new(x), rtol=0, atol=0)


def test_up_to_head_itself_does_not_warn_and_detach_checks_the_head():
    full = create_model("realtime_depth", head="S")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full.up_to_head("XS")
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="head 'M' is not built"):
        full.detach("M")
