"""The model registry: models are built by name, and one registry drives the CLI, export and tests."""

from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[[], nn.Module]] = {}


def register_model(name: str, factory: Callable[[], nn.Module]) -> None:
    """Register ``factory`` (called with no arguments) under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = factory


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    _import_builtin_models()
    return sorted(_REGISTRY)


def create_model(name: str) -> nn.Module:
    """Build a registered model with fresh weights.

    Example:
        >>> model = create_model("meter_xxs")
        >>> model.num_parameters()
        713464
    """
    _import_builtin_models()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(sorted(_REGISTRY))}") from None
    return factory()


def _import_builtin_models() -> None:
    from seldepth.models import meter  # noqa: F401  (registers its variants on import)
