"""`seldepth bench` over every backend: the JSON of each path, the RMSE, the pick written, and the fallback to ONNX
Runtime when OpenVINO is missing, fails to compile or crashes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from seldepth.cli import main
from seldepth.defaults import MissingExtraError
from seldepth.deploy import bench
from seldepth.deploy.bench import benchmark
from seldepth.deploy.probe import ChildFailed
from seldepth.inference import predict_depth
from seldepth.models.loading import load_model

OPENVINO = ("ov_fp32", "ov_bf16", "ov_int8")


def _fast(**options):
    return dict(runs=2, warmup=0, compile=False, threads=1, **options)


def test_bench_pick_times_every_path_and_writes_the_fastest_within_the_budget(meter_nyu_file, nyu_sample, tmp_path):
    # a process of its own, as the command runs: OpenVINO's and ONNX Runtime's thread pools beside torch's in
    # the long-lived test process, after hundreds of other tests, have crashed it (SIGSEGV) where a fresh
    # process never did
    out, report = tmp_path / "picked", tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "seldepth", "bench", "--model", str(meter_nyu_file), "--runs", "2",
                           "--warmup", "0", "--threads", "1", "--no-compile", "--data", f"nyu:{nyu_sample}",
                           "--calibration-images", "2", "--pick", "--max-rmse-increase", "0.01", "--out", str(out),
                           "--json", str(report)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(report.read_text())
    for name in ("eager", "ort_fp32", "ort_int8", *OPENVINO):
        assert result["latency_ms"][name]["p50"] > 0, name
        assert 0.3 < result["rmse"][name] < 1.0, name  # the official model's NYU RMSE is 0.56 m
    assert result["rmse"]["ov_fp32"] == pytest.approx(result["rmse"]["ort_fp32"], abs=1e-4)
    pick = result["pick"]
    base = result["latency_ms"]["ort_fp32"]["p50"]
    assert result["latency_ms"][pick["backend"]]["p50"] <= base
    assert result["rmse"][pick["backend"]] <= result["rmse"]["ort_fp32"] * 1.01
    written = [p for p in tmp_path.iterdir() if p.stem == "picked"]
    assert sorted(p.suffix for p in written) == ([".bin", ".xml"] if pick["backend"].startswith("ov_") else [".onnx"])
    picked = load_model(next(p for p in written if p.suffix != ".bin"))
    assert picked.preprocessing == load_model(meter_nyu_file).preprocessing
    assert f"pick: {pick['backend']}" in done.stdout and "AVX-512 BF16" in done.stdout


def _bench_in_child(tmp_path, model, setup: str = "", after: str = "", **options) -> dict:
    """:func:`benchmark` (``options``) in a fresh interpreter, after ``setup`` (monkeypatching ``bench``); its result,
    with what ``after`` put in ``extra``. OpenVINO runs in the test process only through child processes: its
    thread pools beside ONNX Runtime's and torch's in the long-lived test process, after hundreds of other
    tests, have crashed it (SIGSEGV) where a fresh process never did."""
    out = tmp_path / "result.json"
    script = "\n".join([
        "import json, sys, torch",
        "from seldepth.deploy import bench",
        "from seldepth.deploy.probe import ChildFailed",
        "from seldepth.defaults import MissingExtraError",
        setup,
        f"result = bench.benchmark({str(model)!r}, **{options!r})",
        "extra = {}",
        after,
        f"json.dump({{**result, 'extra': extra}}, open({str(out)!r}, 'w'), default=str)",
    ])
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def test_openvino_failing_to_compile_falls_back_to_onnx_runtime(meter_nyu_file, nyu_sample, tmp_path):
    setup = ("def broken(*args, **kwargs):\n"
             "    raise ChildFailed('RuntimeError: Exception from src/plugins/intel_cpu: unsupported instruction set')\n"
             "bench.export_in_child = broken")
    result = _bench_in_child(tmp_path, meter_nyu_file, setup, **_fast(data=f"nyu:{nyu_sample}", int8_images=2))
    for name in OPENVINO:
        assert "unsupported instruction set" in result["latency_ms"][name]["error"]
        assert name not in result["rmse"] and name not in result["files"]
    assert sum("ONNX Runtime FP32 remains the fallback" in n for n in result["notes"]) == 3
    assert result["latency_ms"]["ort_fp32"]["p50"] > 0 and "ort_fp32" in result["rmse"]
    from seldepth.deploy.pick import pick_backend

    assert pick_backend(result["latency_ms"], result["rmse"])["backend"] in ("ort_fp32", "ort_int8")


def test_openvino_missing_skips_its_paths_with_the_pip_line(meter_nyu_file, monkeypatch):
    def missing(module):
        raise MissingExtraError(f"{module} is needed: pip install 'seldepth[openvino]'")

    monkeypatch.setattr(bench, "require", missing)
    result = benchmark(meter_nyu_file, **_fast())  # no OpenVINO: in this process
    for name in OPENVINO:
        assert "pip install 'seldepth[openvino]'" in result["latency_ms"][name]["skipped"]
    assert result["latency_ms"]["ort_fp32"]["p50"] > 0


def test_a_crash_in_the_child_is_a_note_and_the_file_is_not_used(meter_nyu_file, tmp_path):
    setup = ("exported = []\n"
             "real = bench.export_in_child\n"
             "def crashing(onnx_path, out, precision, size, calibration=None, **kwargs):\n"
             "    exported.append(precision)\n"
             "    if precision == 'bf16':\n"
             "        raise ChildFailed('the process was killed by SIGSEGV')\n"
             "    return real(onnx_path, out, precision, size, calibration, **kwargs)\n"
             "bench.export_in_child = crashing")
    result = _bench_in_child(tmp_path, meter_nyu_file, setup, after="extra['exported'] = exported", **_fast())
    assert result["latency_ms"]["ov_bf16"]["error"].endswith("the process was killed by SIGSEGV")
    assert result["latency_ms"]["ov_fp32"]["p50"] > 0 and "skipped" in result["latency_ms"]["ov_int8"]
    assert result["extra"]["exported"] == ["f32", "bf16"] and "ov_bf16" not in result["files"]


def test_the_openvino_file_of_the_bench_predicts_what_torch_predicts_and_passes_the_real_probe(meter_nyu_file,
                                                                                                nyu_sample, tmp_path):
    from seldepth.deploy.probe import probe_model

    after = "\n".join([
        "from seldepth.data.spec import open_dataset",
        "from seldepth.inference import predict_depth",
        "from seldepth.models.loading import load_model",
        f"image = open_dataset('nyu:{nyu_sample}', 'test')[0]['image'][None]",
        "with torch.no_grad():",
        f"    expected = predict_depth(load_model({str(meter_nyu_file)!r}), image)",
        "got = predict_depth(load_model(result['files']['ov_fp32']), image)",
        "extra['max_diff'] = (got - expected).abs().max().item()",
    ])
    result = _bench_in_child(tmp_path, meter_nyu_file, after=after, **_fast(work_dir=str(tmp_path / "work")))
    assert result["extra"]["max_diff"] < 1e-4
    assert probe_model(result["files"]["ov_fp32"], (192, 256)) is None  # loads and runs in a child process
    assert "not found" in probe_model(tmp_path / "missing.xml", (192, 256))


@pytest.mark.parametrize("argv, message", [
    (["--pick"], "--pick needs --data"),
    (["--out", "x.onnx"], "--out is the file of --pick"),
    (["--pick", "--data", "nyu:x", "--out", "y", "--max-rmse-increase", "-1"], "--max-rmse-increase"),
])
def test_bench_pick_arguments_are_checked_before_any_work(meter_nyu_file, argv, message, capsys):
    assert main(["bench", "--model", str(meter_nyu_file), *argv]) == 2
    assert message in capsys.readouterr().err


def test_export_format_best_writes_the_pick_of_the_recorded_benchmark(meter_nyu_file, tmp_path, monkeypatch, capsys):
    seen = {}

    def recorded(model_path, data=None, work_dir=None, **options):
        seen.update(options, data=data)
        files = {}
        for name, suffix in (("ort_fp32", ".onnx"), ("ov_bf16", ".xml"), ("ov_int8", ".xml")):
            path = tmp_path / "work" / f"{name}{suffix}"
            path.parent.mkdir(exist_ok=True)
            path.write_text(name)
            if suffix == ".xml":
                path.with_suffix(".bin").write_bytes(name.encode() + b"-weights")
            files[name] = str(path)
        return {"architecture": "meter_xxs", "model": str(model_path), "size": [192, 256], "threads": 2, "runs": 300,
                "warmup": 10, "parameters": 1, "flops": 1, "cpu": None, "notes": [], "files": files,
                "latency_ms": {"ort_fp32": {"p50": 3.1, "p90": 3.4}, "ov_bf16": {"p50": 1.8, "p90": 2.0},
                               "ov_int8": {"p50": 1.5, "p90": 1.7}},
                "rmse": {"ort_fp32": 0.5604, "ov_bf16": 0.5620, "ov_int8": 0.5703}, "data": data, "protocol": "nyu"}

    monkeypatch.setattr(bench, "benchmark", recorded)
    out = tmp_path / "deploy" / "meter.onnx"
    assert main(["export", "--model", str(meter_nyu_file), "--format", "best", "--data", "nyu:somewhere",
                 "--max-rmse-increase", "0.01", "--threads", "2", "--out", str(out)]) == 0
    assert seen["data"] == "nyu:somewhere" and seen["threads"] == 2 and seen["compile"] is False
    assert (tmp_path / "deploy" / "meter.xml").read_text() == "ov_bf16"  # ov_int8 is faster but +1.8% RMSE
    assert (tmp_path / "deploy" / "meter.bin").read_bytes() == b"ov_bf16-weights"
    assert not out.exists()
    assert "pick: ov_bf16" in capsys.readouterr().out
    assert main(["export", "--model", str(meter_nyu_file), "--format", "best", "--out", str(out)]) == 2
    assert "--format best needs --data" in capsys.readouterr().err
