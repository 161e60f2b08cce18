"""The model registry: models are built by name, and one registry drives the CLI, export and tests.

The registry imports no model: each model module registers its models when it is imported, and
``seldepth.models`` (the package) imports every built-in model module, so that importing anything
from ``seldepth.models`` fills the registry.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}
KINDS = ("depth", "pose")


def register_model(name: str, factory: Callable[..., nn.Module], kind: str = "depth") -> None:
    """Register ``factory`` under ``name``; it is called with the keyword options of :func:`create_model`.

    ``kind``: ``depth`` (image -> depth, the models of every command) or ``pose`` (frames -> camera
    motion, the pose networks of self-supervised training).
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    _REGISTRY[name] = factory
    _KINDS[name] = kind


def list_models(kind: str = "depth") -> list[str]:
    """Names of the registered models of one kind (``depth`` or ``pose``), sorted."""
    return sorted(n for n in _REGISTRY if _KINDS[n] == kind)


def create_model(name: str, **options) -> nn.Module:
    """Build a registered model with fresh weights; ``options`` override fields of its dataclass config.

    Example:
        >>> create_model("meter_xxs").num_parameters()
        713464
        >>> create_model("realtime_depth", head="M", semantic_classes=5).heads
        ('M', 'S', 'XS')
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(sorted(_REGISTRY))}") from None
    # YAML and JSON metadata give lists where the dataclass configs hold tuples
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    try:
        return factory(**options)
    except TypeError as exc:  # an option the config does not have
        raise ValueError(f"model {name!r}: bad options {options}: {exc}") from None

