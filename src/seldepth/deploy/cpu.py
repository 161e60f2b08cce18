"""What the CPU offers reduced-precision inference: vendor, model and the vector / matrix features that matter.

AVX-512 VNNI speeds up INT8 convolutions, AVX-512 BF16 and AMX (Intel's matrix tiles, from Sapphire
Rapids on) BF16 and INT8; OpenVINO uses BF16 by default where they are present. Benchmarks print these
next to their timings, since the ranking of the backends depends on them.

Example:
    >>> describe_cpu()
    'Intel(R) Xeon(R) Platinum 8480+ (GenuineIntel), 2 cores; AVX2 yes, AVX-512 yes, AVX-512 VNNI yes, ...'
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# /proc/cpuinfo flag -> name in reports
FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX BF16",
    "amx_int8": "AMX INT8",
}


def cpu_features(cpuinfo: str | None = None) -> dict:
    """The CPU's vendor, model, core count and :data:`FEATURES` (True / False; None where unknown).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo`` (default: read it; on other systems the features are unknown).

    Returns:
        ``{"vendor", "model", "cores", "features": {flag: bool | None}}``.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {"vendor": fields.get("vendor_id") or platform.machine() or "unknown",
            "model": fields.get("model name") or platform.processor() or "unknown CPU",
            "cores": os.cpu_count(),
            "features": {flag: (flag in flags) if flags else None for flag in FEATURES}}


def has_bf16(features: dict | None = None) -> bool:
    """Whether the CPU computes BF16 natively (AVX-512 BF16 or AMX BF16)."""
    found = (features or cpu_features())["features"]
    return bool(found.get("avx512_bf16") or found.get("amx_bf16"))


def describe_cpu(features: dict | None = None) -> str:
    """One line: model, vendor, cores and each feature of :data:`FEATURES` (yes / no / unknown)."""
    info = features or cpu_features()
    marks = {True: "yes", False: "no", None: "unknown"}
    listed = ", ".join(f"{FEATURES[flag]} {marks[info['features'].get(flag)]}" for flag in FEATURES)
    return f"{info['model']} ({info['vendor']}), {info['cores']} cores; {listed}"
