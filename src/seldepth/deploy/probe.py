"""Running OpenVINO work in a child process, so that a runtime that crashes the interpreter is a note.

OpenVINO is not supported on AMD processors and has crashed there (a segmentation fault takes the whole
process with it, past any ``except``). :func:`export_in_child` converts (and for INT8 calibrates) an
OpenVINO file and runs it once in a fresh Python process; :func:`probe_model` loads and runs a model file
there. The caller uses a file in its own process only when that worked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

_PROBE = """
import sys, torch
from seldepth.models.model_file import read_model_file
model = read_model_file(sys.argv[1])
model(torch.zeros(1, 3, int(sys.argv[2]), int(sys.argv[3])))
"""

_EXPORT = """
import json, sys, torch
from seldepth.data.spec import open_dataset
from seldepth.deploy.openvino_export import export_openvino
from seldepth.models.model_file import read_model_file
onnx_path, out, precision, spec, split, num_images, height, width = sys.argv[1:9]
calibration = open_dataset(spec, split=split) if spec else None
info = export_openvino(onnx_path, out, precision=precision, calibration=calibration, num_images=int(num_images))
read_model_file(out)(torch.zeros(1, 3, int(height), int(width)))
print(json.dumps(info, default=str))
"""


class ChildFailed(RuntimeError):
    """Work run in a child process failed; the message says how in one line."""


def _run_child(script: str, args: list[str], timeout_s: float) -> str:
    """Run ``script`` with ``args`` in a fresh interpreter; its stdout, or :class:`ChildFailed`."""
    try:
        done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"no answer within {timeout_s:g} s") from None
    if done.returncode == 0:
        return done.stdout
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        raise ChildFailed(f"the process was killed by {name}")
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    raise ChildFailed(lines[-1][:200] if lines else f"exit status {done.returncode}")


def probe_model(path: str | os.PathLike, size: tuple[int, int], timeout_s: float = 300.0) -> str | None:
    """Load ``path`` (any model file :func:`~seldepth.models.model_file.read_model_file` reads) and run one
    (1, 3, h, w) batch of zeros in a child process.

    Returns:
        None when it worked; else one line saying how it failed (the exception's last line, the signal that
        killed the process, or the timeout).
    """
    try:
        _run_child(_PROBE, [str(path), str(int(size[0])), str(int(size[1]))], timeout_s)
    except ChildFailed as exc:
        return str(exc)
    return None


def export_in_child(onnx_path: str | os.PathLike, out: str | os.PathLike, precision: str, size: tuple[int, int],
                    calibration: str | None = None, split: str = "test", num_images: int = 16,
                    timeout_s: float = 1800.0) -> dict:
    """:func:`~seldepth.deploy.openvino_export.export_openvino` in a child process (calibrated on the data spec
    ``calibration``, split ``split``), then the file loaded and run once there.

    Returns:
        ``export_openvino``'s dict.

    Raises:
        ChildFailed: the export or the run failed or crashed the child (the message says how).
    """
    output = _run_child(_EXPORT, [str(onnx_path), str(out), precision, calibration or "", split, str(int(num_images)),
                                  str(int(size[0])), str(int(size[1]))], timeout_s)
    lines = [line for line in output.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise ChildFailed("the export printed no result")
    return json.loads(lines[-1])
