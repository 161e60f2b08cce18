"""Choosing the torch device a model runs on: ``auto`` (CUDA, then Apple MPS, then CPU) or a named one.

Re-exported by :mod:`seldepth.inference`; here so that :func:`~seldepth.models.model_file.read_model_file`
(which may import nothing above ``models``) can take ``device=`` too.
"""

from __future__ import annotations

import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def choose_device(device: str | torch.device | None = "auto") -> tuple[torch.device, str]:
    """The device to run on and a short reason to print.

    Args:
        device: ``auto`` (or None): CUDA when available, else MPS, else CPU; or ``cpu``, ``cuda``,
            ``cuda:N``, ``mps`` (or a ``torch.device``), which must be available.

    Returns:
        (device, reason), e.g. ``(device("cpu"), "auto: no CUDA or MPS GPU is available; running on the CPU")``.

    Raises:
        ValueError: naming ``device``, for an unknown device or one that is not available here.
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            name = _cuda_name(0)
            return torch.device("cuda", 0), f"auto: CUDA is available ({name}); running on cuda:0"
        if _mps_available():
            return torch.device("mps"), "auto: no CUDA GPU; Apple MPS is available; running on mps"
        return torch.device("cpu"), "auto: no CUDA or MPS GPU is available; running on the CPU"
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip().lower())
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"device {device!r} is not a device; expected {DEVICE_CHOICES}") from None
    if dev.type == "cpu":
        return torch.device("cpu"), "requested: cpu"
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: CUDA is not available here (torch.cuda.is_available() is False; "
                             f"torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
                             f"use device 'cpu' or 'auto'")
        count = torch.cuda.device_count()
        index = 0 if dev.index is None else dev.index
        if index >= count:
            raise ValueError(f"device {str(device)!r}: there {'is' if count == 1 else 'are'} only {count} CUDA "
                             f"device{'s' if count != 1 else ''} (cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index), f"requested: cuda:{index} ({_cuda_name(index)})"
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {str(device)!r}: Apple MPS is not available here "
                             f"(torch.backends.mps.is_available() is False); use device 'cpu' or 'auto'")
        return torch.device("mps"), "requested: mps"
    raise ValueError(f"device {str(device)!r} is not supported; expected {DEVICE_CHOICES}")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device to run on (see :func:`choose_device`, which also says why)."""
    return choose_device(device)[0]


def _cuda_name(index: int) -> str:
    try:
        return torch.cuda.get_device_name(index)
    except Exception:  # a monkeypatched or half-working CUDA: the name is only for the message
        return "CUDA device"
