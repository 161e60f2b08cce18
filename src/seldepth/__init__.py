"""seldepth: efficient, interpretable monocular depth estimation.

Public API::

    import seldepth
    seldepth.list_models()                      # ['meter_s', 'meter_xs', 'meter_xxs', ...]
    model = seldepth.create_model("meter_xxs")  # fresh weights
    model = seldepth.load_model("model.safetensors")
    out = seldepth.predict(model, "room.png")   # {"predicted_depth": (H, W) metres, "depth": PIL image}
"""

from seldepth.models import create_model, list_models
from seldepth.models.model_file import load_model

__version__ = "0.1.0"


def predict(model, image, **kwargs):
    """Depth for one image at its own resolution; see :func:`seldepth.inference.predict`."""
    from seldepth.inference import predict as _predict

    return _predict(model, image, **kwargs)


__all__ = ["create_model", "list_models", "load_model", "predict", "__version__"]
