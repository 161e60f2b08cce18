"""A training config whose data spec has a bad ``?option``: refused when the config is validated (``check_spec``),
naming ``data.path`` and the option, before any run folder or config.yaml is written."""

from __future__ import annotations

import pytest

from seldepth.data.errors import DatasetError
from seldepth.training.config import parse_train_args, parse_train_config


@pytest.mark.parametrize("query, message", [
    ("scale=abc", "option 'scale' expects a finite number, got 'abc'"),
    ("scael=1000", "option 'scael' is not known"),
    ("scale=1000&scale=256", "option 'scale' is given twice"),
])
def test_bad_data_option_refused_at_validation(pair_folder, tmp_path, query, message):
    out = tmp_path / "run"
    mapping = {"model": "realtime_depth", "data": {"path": f"folder:{pair_folder}?{query}"}, "trainer": {"out_dir": str(out)}}
    with pytest.raises(DatasetError, match=rf"data.path: data spec .*{message}"):
        parse_train_config(mapping)
    with pytest.raises(DatasetError, match=rf"data.path: data spec .*{message}"):
        parse_train_args(["--model", "realtime_depth", "--data.path", f"folder:{pair_folder}?{query}",
                          "--trainer.out_dir", str(out)])
    assert not out.exists()


def test_good_data_option_passes_validation(pair_folder, tmp_path):
    cfg = parse_train_config({"model": "realtime_depth", "data": {"path": f"folder:{pair_folder}?scale=1000"},
                              "trainer": {"out_dir": str(tmp_path / "run")}})
    assert cfg.data.path.endswith("?scale=1000")
