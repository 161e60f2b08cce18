"""A training config whose data spec has a bad ``?option``: refused when the config is validated (``check_spec``),
naming ``data.path`` and the option, before any run folder or config.yaml is written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seldepth.data.errors import DatasetError
from seldepth.training.config import parse_train_args, parse_train_config


@pytest.fixture
def pairs(tmp_path):
    root = tmp_path / "pairs"
    root.mkdir()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "000_rgb.png")
    Image.fromarray(np.full((6, 8), 2000, np.uint16)).save(root / "000_depth.png")
    return root


@pytest.mark.parametrize("query, message", [
    ("scale=abc", "option 'scale' expects a finite number, got 'abc'"),
    ("scael=1000", "option 'scael' is not known"),
    ("scale=1000&scale=256", "option 'scale' is given twice"),
])
def test_bad_data_option_refused_at_validation(pairs, tmp_path, query, message):
    out = tmp_path / "run"
    mapping = {"model": "realtime_depth", "data": {"path": f"folder:{pairs}?{query}"}, "trainer": {"out_dir": str(out)}}
    with pytest.raises(DatasetError, match=rf"data.path: data spec .*{message}"):
        parse_train_config(mapping)
    with pytest.raises(DatasetError, match=rf"data.path: data spec .*{message}"):
        parse_train_args(["--model", "realtime_depth", "--data.path", f"folder:{pairs}?{query}",
                          "--trainer.out_dir", str(out)])
    assert not out.exists()


def test_good_data_option_passes_validation(pairs, tmp_path):
    cfg = parse_train_config({"model": "realtime_depth", "data": {"path": f"folder:{pairs}?scale=1000"},
                              "trainer": {"out_dir": str(tmp_path / "run")}})
    assert cfg.data.path.endswith("?scale=1000")
