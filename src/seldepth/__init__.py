"""seldepth: efficient, interpretable monocular depth estimation.

Public API::

    import seldepth
    seldepth.list_models()                      # ['meter_s', 'meter_xs', 'meter_xxs', ...]
    model = seldepth.create_model("meter_xxs")  # fresh weights
    model = seldepth.load_model("model.safetensors")  # or a pretrained model by name: "meter_xxs_nyu"
    out = seldepth.predict(model, "room.png")   # {"predicted_depth": (H, W) metres, "depth": gray PIL, "depth_color"}

Importing :mod:`seldepth` imports no torch: the functions above are imported on first use (PEP 562),
so ``seldepth --help`` and the torch-free modules (defaults, :mod:`seldepth.atomic`) start fast.
"""

__version__ = "0.2.0"

# public name -> module it comes from (imported on first access)
_LAZY = {
    "create_model": "seldepth.models",
    "list_models": "seldepth.models",
    "load_model": "seldepth.models.loading",
}


def predict(model, image, **kwargs):
    """Depth for one image (or a list: a list of results) at its own resolution; see :func:`seldepth.prediction.pipeline.predict`."""
    from seldepth.prediction.pipeline import predict as _predict

    return _predict(model, image, **kwargs)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["create_model", "list_models", "load_model", "predict", "__version__"]
