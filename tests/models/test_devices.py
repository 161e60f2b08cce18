"""Choosing the device: auto = CUDA, then MPS, then CPU; named devices must exist; ONNX runs on the CPU only.
CPU-only: CUDA and MPS availability are monkeypatched."""

import pytest
import torch

from seldepth import load_model
from seldepth.inference import choose_device, resolve_device


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def one_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU 80GB")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, no_gpu):
    assert choose_device("auto") == (torch.device("cpu"), "auto: no CUDA or MPS GPU is available; running on the CPU")
    assert resolve_device() == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert choose_device("auto") == (torch.device("mps"), "auto: no CUDA GPU; Apple MPS is available; running on mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Fake GPU 80GB")
    assert choose_device("AUTO") == (torch.device("cuda", 0), "auto: CUDA is available (Fake GPU 80GB); running on cuda:0")


def test_named_devices(one_cuda):
    assert choose_device("cpu") == (torch.device("cpu"), "requested: cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert choose_device("cuda") == (torch.device("cuda", 0), "requested: cuda:0 (Fake GPU 80GB)")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("mps") == torch.device("mps")
    with pytest.raises(ValueError, match=r"device 'cuda:1': there is only 1 CUDA device \(cuda:0..cuda:0\)"):
        resolve_device("cuda:1")


def test_unavailable_devices_are_refused_naming_device(no_gpu):
    with pytest.raises(ValueError, match=r"^device 'cuda': CUDA is not available here .*use device 'cpu' or 'auto'$"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match=r"^device 'cuda:0': CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match=r"^device 'mps': Apple MPS is not available here"):
        resolve_device("mps")


@pytest.mark.parametrize("device", ["gpu", "tpu", "meta", "cuda:x", ""])
def test_unknown_devices_are_refused_naming_device(device):
    with pytest.raises(ValueError, match=rf"^device '{device}' is not .*; expected auto, cpu, cuda, cuda:N or mps$"):
        resolve_device(device)


def test_load_model_moves_to_the_device(meter_nyu_file, no_gpu):
    model = load_model(meter_nyu_file, device="auto")
    assert {p.device for p in model.parameters()} == {torch.device("cpu")}
    assert not model.training
    with pytest.raises(ValueError, match="^device 'cuda': CUDA is not available"):
        load_model(meter_nyu_file, device="cuda")
    with pytest.raises(ValueError, match="^device 'tpu' is not a device"):
        load_model(meter_nyu_file, device="tpu")
    meta_model = load_model(meter_nyu_file, weights=False, device="cuda")  # no weights: nothing to move
    assert next(meta_model.parameters()).device.type == "meta"


def test_onnx_models_run_on_the_cpu_only(tmp_path, one_cuda):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not really onnx")
    with pytest.raises(ValueError, match=r"^device 'cuda': .*model.onnx is an ONNX model, which seldepth runs on the "
                                         r"CPU only"):
        load_model(fake, device="cuda")
    for device in ("cpu", "auto"):  # accepted: the file is read (and found not to be ONNX)
        with pytest.raises(ValueError, match="not a loadable ONNX model"):
            load_model(fake, device=device)
