"""Fuzzing data spec strings through ``parse_spec``, ``resolve`` and ``check_spec``: nothing but the documented errors
(DatasetError and other ValueErrors, FileNotFoundError) may come out, and nothing is generated or read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from seldepth.data.spec import KINDS, check_spec, parse_spec, resolve

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (ValueError, FileNotFoundError)

WORK = Path(tempfile.mkdtemp(prefix="fuzz_spec_"))
PAIRS = WORK / "pairs"
PAIRS.mkdir()
Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(PAIRS / "000_rgb.png")
Image.fromarray(np.full((4, 6), 1000, np.uint16)).save(PAIRS / "000_depth.png")
(WORK / "list.txt").write_bytes(b"\xef\xbb\xbfa.png b.png 518.8\n")
CACHE = WORK / "cache"

OPTION_NAMES = ["scale", "split", "crop", "fx", "fy", "cx", "cy", "gt_root", "root", "depth", "camera", "splits",
                "depth_key", "semantics", "max_depth_8bit", ""]
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8)
VALUES = st.one_of(TEXT, st.sampled_from(["1000", "256", "-1", "0", "nan", "inf", "1e400", "none", "true", "kb", "eigen",
                                          "abc", "2", "3.5", "=", "&", ""]))


@st.composite
def specs(draw):
    kind = draw(st.one_of(st.sampled_from(KINDS), TEXT))
    path = draw(st.one_of(
        st.sampled_from(["default", "default:8", "default:8:1", "default:8:1:3", "default:0", "default:x", "default:1:2:3:4",
                         "default:-1", "default:99999999999999999999", str(PAIRS), str(WORK / "list.txt"),
                         str(WORK / "missing")]),
        TEXT.map(lambda t: str(WORK / "nothing" / t)),
    ))
    items = draw(st.lists(st.one_of(st.tuples(st.sampled_from(OPTION_NAMES), VALUES).map(lambda nv: f"{nv[0]}={nv[1]}"),
                                    TEXT), max_size=4))
    query = "&".join(items)
    sep = draw(st.sampled_from([":", ":", ""]))
    return f"{kind}{sep}{path}" + (f"?{query}" if items or draw(st.booleans()) else "")


@FUZZ
@given(st.one_of(specs(), TEXT))
def test_random_specs(spec):
    before = os.environ.get("SELDEPTH_CACHE")
    os.environ["SELDEPTH_CACHE"] = str(CACHE)
    try:
        for call in (parse_spec, resolve, check_spec):
            try:
                call(spec, "data.path")
            except ALLOWED as exc:
                assert "data.path" in str(exc) or "SELDEPTH" in str(exc) or str(WORK) in str(exc), str(exc)
    finally:
        if before is None:
            os.environ.pop("SELDEPTH_CACHE", None)
        else:
            os.environ["SELDEPTH_CACHE"] = before
    assert not CACHE.exists()  # nothing generated


def test_a_good_spec_passes_every_step():
    spec = f"folder:{PAIRS}?scale=1000"
    assert parse_spec(spec).options == {"scale": 1000}
    assert resolve(spec).path == PAIRS
    assert check_spec(spec).parsed.kind == "folder"
