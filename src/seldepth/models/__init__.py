"""Depth models, built by name from a registry.

Importing the package imports every built-in model module; each registers its models on import.
"""

from seldepth.models import meter, pose, realtime, synergy  # noqa: F401  (register their models on import)
from seldepth.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
