"""What an exported depth model (ONNX Runtime, OpenVINO) shares: the parts of ``nn.Module`` the library uses, and the
call on a preprocessed batch (input checks, padding a dynamic export to its size multiple, fixed-batch chunks,
cropping back)."""

from __future__ import annotations

import math

import numpy as np
import torch

from seldepth.models.base import pad_to_multiple


class ExportedDepthModel:
    """Base of :class:`~seldepth.models.onnx_model.OnnxDepthModel` and
    :class:`~seldepth.models.openvino_model.OpenVinoDepthModel`.

    A subclass sets ``path``, ``input_shape`` ((B, 3, H, W), None where dynamic) and ``size_multiple``, and runs
    one chunk in :meth:`_run`. It has no parameters or buffers, is always in eval mode, and ``eval()`` /
    ``train()`` / ``to()`` return itself, so :func:`~seldepth.inference.predict_depth` and
    :func:`~seldepth.evaluation.evaluate` take it unchanged.
    """

    training = False

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def to(self, *args, **kwargs):
        return self

    def parameters(self):
        return iter(())

    def buffers(self):
        return iter(())

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """(b, 3, h, w) float32 -> (b, 1, h', w') float32 metres."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Depth for a preprocessed batch.

        Args:
            x: (B, 3, h, w) float, normalised as ``preprocessing`` does.

        Returns:
            (B, 1, h', w') float32 depth in metres (CPU).

        Raises:
            ValueError: a batch that is not (B, 3, h, w), or a size or batch the file was not exported for (naming it).
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a preprocessed batch (B, 3, h, w), got {getattr(x, 'shape', type(x).__name__)}")
        x = x.detach().cpu().float()
        fixed_b, fixed_h, fixed_w = self.input_shape[0], self.input_shape[2], self.input_shape[3]
        h, w = x.shape[-2:]
        crop = None
        if fixed_h is not None and fixed_w is not None:
            if (h, w) != (fixed_h, fixed_w):
                raise ValueError(f"{self.path} was exported for a fixed input of {fixed_h}x{fixed_w}, got {h}x{w}; "
                                 f"preprocess with its preprocessing or export with --dynamic")
        elif self.size_multiple > 1 and (h % self.size_multiple or w % self.size_multiple):
            x = pad_to_multiple(x, self.size_multiple)
            crop = (h, w)
        chunk = fixed_b or len(x)
        if len(x) % chunk:
            raise ValueError(f"{self.path} was exported for batches of {fixed_b}; got a batch of {len(x)}")
        outs = [self._run(np.ascontiguousarray(x[i:i + chunk].numpy())) for i in range(0, len(x), chunk)]
        depth = torch.from_numpy(np.concatenate(outs) if len(outs) > 1 else outs[0])
        if crop is not None:
            ph, pw = x.shape[-2:]
            depth = depth[..., : math.ceil(crop[0] * depth.shape[-2] / ph), : math.ceil(crop[1] * depth.shape[-1] / pw)]
        return depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)
