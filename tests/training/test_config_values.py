"""Every number of the training config is checked finite and in range before any work, the error naming the key."""

import math

import pytest

from seldepth.defaults import check_number
from seldepth.training.config import parse_train_args, parse_train_config

INF, NAN = math.inf, math.nan


@pytest.mark.parametrize("mapping, message", [
    ({"optim": {"lr": INF}}, "optim.lr must be a finite number > 0, got inf"),
    ({"optim": {"lr": NAN}}, "optim.lr must be a finite number > 0, got nan"),
    ({"optim": {"lr": -0.1}}, "optim.lr must be a finite number > 0, got -0.1"),
    ({"optim": {"weight_decay": INF}}, "optim.weight_decay must be a finite number >= 0, got inf"),
    ({"optim": {"gamma": NAN}}, "optim.gamma must be a finite number in (0, 1], got nan"),
    ({"optim": {"betas": [0.9, NAN]}}, "optim.betas[1] must be a finite number in [0, 1), got nan"),
    ({"optim": {"part_lr": {"encoder": INF}}}, "optim.part_lr.encoder must be a finite number > 0, got inf"),
    ({"loss": {"w_ssim": INF}}, "loss.w_ssim must be a finite number >= 0, got inf"),
    ({"loss": {"max_depth": NAN}}, "loss.max_depth must be a finite number > 0, got nan"),
    ({"multiscale": {"max_depth": INF}}, "multiscale.max_depth must be a finite number > 0.5, got inf"),
    ({"multiscale": {"alphas": [1, 1, NAN, 1]}}, "multiscale.alphas[2] must be a finite number >= 0, got nan"),
    ({"synergy": {"focal_gamma": NAN}}, "synergy.focal_gamma must be a finite number >= 0, got nan"),
    ({"selfsup": {"snippet_motion_lr": INF}}, "selfsup.snippet_motion_lr must be a finite number >= 0, got inf"),
    ({"selfsup": {"loss": {"w_ssim": -1.0}}}, "selfsup.loss.w_ssim must be a finite number >= 0, got -1.0"),
    ({"selectivity": {"weight": NAN}}, "selectivity.weight must be a finite number >= 0, got nan"),
    ({"selectivity": {"depth_range": [0.0, INF]}}, "selectivity.depth_range[1] must be a finite number > 0, got inf"),
    ({"trainer": {"max_minutes": INF}}, "trainer.max_minutes must be a finite number > 0 or null, got inf"),
    ({"trainer": {"seed": -1}}, "trainer.seed must be an integer in [0, 4294967295], got -1"),
    ({"trainer": {"log_every_n_steps": 0}}, "trainer.log_every_n_steps must be an integer >= 1, got 0"),
    ({"data": {"augment": {"p": NAN}}}, "data.augment.p must be a finite number in [0, 1], got nan"),
    ({"data": {"augment": {"color_jitter": 1.5}}}, "data.augment.color_jitter must be a finite number in [0, 1], got 1.5"),
    ({"data": {"sparse": {"bend": INF}}}, "data.sparse.bend must be a finite number >= 0, got inf"),
])
def test_non_finite_and_out_of_range_values_are_refused_naming_the_key(mapping, message):
    with pytest.raises(ValueError) as info:
        parse_train_config(mapping)
    assert str(info.value) == message


def test_yaml_infinity_on_the_command_line_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"^optim\.lr must be a finite number > 0, got inf$"):
        parse_train_args(["--optim.lr", ".inf"])
    with pytest.raises(ValueError, match=r"optim\.lr"):  # "inf" is text to YAML: not a float at all
        parse_train_args(["--optim.lr", "inf"])


def test_check_number_refuses_fractions_of_integers_and_booleans():
    assert check_number("k", 3, 1, integer=True) == 3
    assert check_number("k", None, 1, optional=True) is None
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1, got 2\.5$"):
        check_number("k", 2.5, 1, integer=True)
    with pytest.raises(ValueError, match=r"^k must be a finite number in \[0, 1\], got True$"):
        check_number("k", True, 0, 1)
