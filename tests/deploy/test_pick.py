"""Picking the inference path on recorded timings and RMSE; the CPU features the benchmarks print; the probe."""

from __future__ import annotations

import pytest

from seldepth.deploy.cpu import cpu_features, describe_cpu, has_bf16
from seldepth.deploy.pick import pick_backend, picked_path, save_picked
from seldepth.deploy.probe import probe_model

# timings as recorded on a Xeon with AMX (ms, p50) and the NYU RMSE of each path
LATENCY = {"eager": {"p50": 13.0}, "ort_fp32": {"p50": 3.2}, "ort_int8": {"p50": 2.8}, "ov_fp32": {"p50": 2.9},
           "ov_bf16": {"p50": 1.86}, "ov_int8": {"p50": 1.6}}
RMSE = {"eager": 0.5604, "ort_fp32": 0.5604, "ort_int8": 0.5706, "ov_fp32": 0.5604, "ov_bf16": 0.5611,
        "ov_int8": 0.5690}


def test_the_fastest_path_within_the_budget_is_picked():
    pick = pick_backend(LATENCY, RMSE, 0.01)
    assert pick["backend"] == "ov_bf16"  # ov_int8 is faster but +1.53% RMSE
    assert pick["speedup"] == pytest.approx(3.2 / 1.86)
    assert pick["rmse_increase"] == pytest.approx(0.5611 / 0.5604 - 1)
    assert "over the 1% budget" in pick["rejected"]["ov_int8"] and "over the 1% budget" in pick["rejected"]["ort_int8"]
    assert pick["rejected"]["ov_fp32"] == "eligible, slower than ov_bf16"
    assert "eager" not in pick["rejected"]  # not a path that gives a file to deploy
    assert pick_backend(LATENCY, RMSE, 0.02)["backend"] == "ov_int8"  # a wider budget admits INT8


def test_the_pick_is_never_slower_than_ort_fp32():
    slow = {**LATENCY, "ov_bf16": {"p50": 3.5}, "ov_int8": {"p50": 3.3}, "ov_fp32": {"p50": 3.25},
            "ort_int8": {"p50": 3.4}}
    pick = pick_backend(slow, RMSE, 0.05)
    assert pick["backend"] == "ort_fp32" and pick["speedup"] == 1.0
    assert pick["rejected"]["ov_bf16"].startswith("slower than ort_fp32")


def test_a_path_that_failed_or_was_skipped_is_never_picked():
    failed = {**LATENCY, "ov_bf16": {"error": "OpenVinoError: the process was killed by SIGSEGV"},
              "ov_int8": {"skipped": "openvino is not installed"}}
    pick = pick_backend(failed, RMSE, 0.01)
    assert pick["backend"] == "ov_fp32"
    assert "SIGSEGV" in pick["rejected"]["ov_bf16"] and "not installed" in pick["rejected"]["ov_int8"]
    no_rmse = {k: v for k, v in RMSE.items() if k != "ov_fp32"}
    assert pick_backend(failed, no_rmse, 0.01)["backend"] == "ort_fp32"


def test_the_pick_needs_its_reference_and_a_valid_budget():
    with pytest.raises(ValueError, match="ort_fp32 did not run"):
        pick_backend({**LATENCY, "ort_fp32": {"error": "x"}}, RMSE)
    with pytest.raises(ValueError, match="no RMSE of ort_fp32"):
        pick_backend(LATENCY, {"ov_bf16": 0.5})
    with pytest.raises(ValueError, match="max_rmse_increase must be"):
        pick_backend(LATENCY, RMSE, -0.01)


def test_the_picked_file_is_written_with_its_format_suffix(tmp_path):
    xml, bin_ = tmp_path / "m_ov_bf16.xml", tmp_path / "m_ov_bf16.bin"
    xml.write_text("<net/>")
    bin_.write_bytes(b"\x00\x01")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"onnx")
    files = {"ov_bf16": str(xml), "ort_fp32": str(onnx)}
    written = save_picked(files, {"backend": "ov_bf16"}, tmp_path / "out" / "fast.onnx")
    assert written == [tmp_path / "out" / "fast.xml", tmp_path / "out" / "fast.bin"]
    assert written[1].read_bytes() == b"\x00\x01" and written[0].read_text() == "<net/>"
    assert picked_path("fast", "ort_fp32").name == "fast.onnx"
    assert save_picked(files, {"backend": "ort_fp32"}, tmp_path / "fast")[0].read_bytes() == b"onnx"


def test_cpu_features_from_cpuinfo():
    amx = "vendor_id\t: GenuineIntel\nmodel name\t: Xeon 8480+\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_tile amx_bf16\n"
    info = cpu_features(amx)
    assert info["vendor"] == "GenuineIntel" and info["model"] == "Xeon 8480+"
    assert info["features"]["amx_bf16"] is True and info["features"]["avx512_bf16"] is False and has_bf16(info)
    epyc = cpu_features("vendor_id\t: AuthenticAMD\nmodel name\t: EPYC\nflags\t: avx2 avx512f avx512_bf16\n")
    assert has_bf16(epyc) and epyc["features"]["amx_tile"] is False
    unknown = cpu_features("")
    assert set(unknown["features"].values()) == {None} and not has_bf16(unknown)
    assert "AMX BF16 yes" in describe_cpu(info) and "AVX-512 BF16 no" in describe_cpu(info)


def test_the_probe_reports_a_crash_as_a_line(tmp_path, monkeypatch):
    from seldepth.deploy import probe

    monkeypatch.setattr(probe, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    assert probe_model(tmp_path / "m.xml", (8, 8)) == "the process was killed by SIGSEGV"
    monkeypatch.setattr(probe, "_PROBE", "raise RuntimeError('Exception from src/inference: unsupported CPU')")
    assert probe_model(tmp_path / "m.xml", (8, 8)) == "RuntimeError: Exception from src/inference: unsupported CPU"
    monkeypatch.setattr(probe, "_PROBE", "import sys; sys.exit(0)")
    assert probe_model(tmp_path / "m.xml", (8, 8)) is None
    monkeypatch.setattr(probe, "_EXPORT", "import os, signal; os.kill(os.getpid(), signal.SIGABRT)")
    with pytest.raises(probe.ChildFailed, match="killed by SIGABRT"):
        probe.export_in_child(tmp_path / "m.onnx", tmp_path / "m.xml", "bf16", (8, 8))
    monkeypatch.setattr(probe, "_EXPORT", "print('{\"precision\": \"bf16\"}')")
    assert probe.export_in_child(tmp_path / "m.onnx", tmp_path / "m.xml", "bf16", (8, 8)) == {"precision": "bf16"}
