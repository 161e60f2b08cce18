"""Convert the official METER checkpoints (plain PyTorch state_dicts) into seldepth model files.

The official NYU checkpoint predicts centimetres; the scale is folded into the last conv
(no bias) so that the imported model predicts metres.

The KITTI checkpoint's preprocessing and unit are not documented; they were found by
measurement on ``data/kitti_sample/annotated`` (3 images, Garg crop, 1e-3 < gt < 80 m). It
expects RGB in [0, 1] with NO ImageNet normalisation (with it, the prediction correlates with
the ground truth at only r = 0.4), the whole 375x1242 frame resized to 192x640 by plain
bilinear sampling (no antialiasing), and predicts decimetres: median(gt) / median(raw output)
= 0.0981, 0.0971, 0.0978 on the three images (0.1 expected for decimetres), AbsRel 0.059 after
per-image median scaling. The scale depends on the input size (a scene-size cue the network
learned): at 192x640 with antialiased resizing the ratio is 0.093; at 256x832, 0.071.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from seldepth.models.meter import METER_VARIANTS
from seldepth.models.model_file import load_state_dict_checked, save_model_file
from seldepth.models.preprocessing import Preprocessing
from seldepth.models.registry import create_model

# Official encoder order: mv2.0..4, mvit.0, mv2.5, mvit.1, mv2.6, mvit.2 -> our encoder.blocks.0..9.
_MV2_TO_BLOCK = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}
_MVIT_TO_BLOCK = {0: 5, 1: 7, 2: 9}

_RULES: list[tuple[str, str]] = [
    (r"^encoder\.conv1\.0\.depthwise\.", "encoder.stem.0.spatial."),
    (r"^encoder\.conv1\.0\.pointwise\.", "encoder.stem.0.pointwise."),
    (r"^encoder\.conv1\.1\.", "encoder.stem.1."),
    (r"^encoder\.conv2\.", "encoder.head."),
    (r"^mvit\.conv1\.0\.depthwise\.", "local.0.spatial."),
    (r"^mvit\.conv1\.0\.pointwise\.", "local.0.pointwise."),
    (r"^mvit\.conv1\.1\.", "local.1."),
    (r"^mvit\.conv2\.", "to_tokens."),
    (r"^mvit\.conv3\.", "from_tokens."),
    (r"^mvit\.conv4\.0\.depthwise\.", "fusion.0.spatial."),
    (r"^mvit\.conv4\.0\.pointwise\.", "fusion.0.pointwise."),
    (r"^mvit\.conv4\.1\.", "fusion.1."),
    (r"^mvit\.transformer\.layers\.0\.0\.norm\.", "transformer.attn_norm."),
    (r"^mvit\.transformer\.layers\.0\.0\.fn\.to_qkv\.", "transformer.attn.qkv."),
    (r"^mvit\.transformer\.layers\.0\.0\.fn\.to_out\.0\.", "transformer.attn.out."),
    (r"^mvit\.transformer\.layers\.0\.1\.norm\.", "transformer.mlp_norm."),
    (r"^mvit\.transformer\.layers\.0\.1\.fn\.net\.0\.", "transformer.mlp.0."),
    (r"^mvit\.transformer\.layers\.0\.1\.fn\.net\.3\.", "transformer.mlp.2."),
    (r"^decoder\.conv2d_in\.", "decoder.input."),
    (r"^decoder\.conv2d_out\.", "decoder.output."),
    (r"^decoder\.ups_block_(\d)\.conv2d_transpose\.", r"decoder.up\1.upsample."),
    (r"^decoder\.ups_block_(\d)\.end_up_layer\.0\.depthwise\.", r"decoder.up\1.fuse.spatial."),
    (r"^decoder\.ups_block_(\d)\.end_up_layer\.0\.pointwise\.", r"decoder.up\1.fuse.pointwise."),
]

# Output unit of each official METER checkpoint (Papa et al., 2023), in metres per output unit.
OFFICIAL_OUTPUT_SCALE = {"nyu": 0.01, "kitti": 0.1}
OFFICIAL_UNIT = {"nyu": "centimetres", "kitti": "decimetres, measured"}
OFFICIAL_PREPROCESSING = {
    "nyu": Preprocessing(input_size=(192, 256)),
    "kitti": Preprocessing(input_size=(192, 640), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize="bilinear"),
}
KITTI_CHARACTERISATION = ("measured on data/kitti_sample/annotated (3 images, Garg crop, 1e-3..80 m): RGB in [0,1] "
                          "without normalisation, whole frame resized to 192x640 with plain bilinear sampling; raw "
                          "output in decimetres (median gt / median raw = 0.098, 0.097, 0.098); AbsRel 0.059 after "
                          "median scaling. ImageNet normalisation breaks it (r = 0.4).")


def rename_official_key(key: str) -> str:
    """Map an official METER state_dict key to the seldepth METER key (unknown keys pass through)."""
    m = re.match(r"^encoder\.mv2\.(\d+)\.(.*)$", key)
    if m and int(m.group(1)) in _MV2_TO_BLOCK:
        return f"encoder.blocks.{_MV2_TO_BLOCK[int(m.group(1))]}.{m.group(2)}"
    m = re.match(r"^encoder\.mvit\.(\d+)\.(.*)$", key)
    if m and int(m.group(1)) in _MVIT_TO_BLOCK:
        inner = "mvit." + m.group(2)
        for pattern, repl in _RULES:
            if pattern.startswith(r"^mvit") and re.match(pattern, inner):
                return f"encoder.blocks.{_MVIT_TO_BLOCK[int(m.group(1))]}." + re.sub(pattern, repl, inner)
        return key
    for pattern, repl in _RULES:
        if not pattern.startswith(r"^mvit") and re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return key


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read an official checkpoint as plain tensors only (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"METER weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"{path}: not a plain-tensor checkpoint; refusing to unpickle code ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def import_meter(weights: str | os.PathLike, variant: str = "xxs", dataset: str = "nyu", out: str | os.PathLike | None = None):
    """Convert an official METER checkpoint into a seldepth METER model predicting metres.

    Args:
        weights: path of the official state_dict (e.g. ``build_model_best_nyu_xxs``).
        variant: ``xxs``, ``xs`` or ``s``.
        dataset: ``nyu`` or ``kitti``: sets the input size and the output unit.
        out: where to write the model file (safetensors); nothing is written when ``None``.

    Returns:
        The model (eval mode) with ``preprocessing`` set.
    """
    if variant not in METER_VARIANTS:
        raise ValueError(f"unknown METER variant {variant!r}; choose from {', '.join(METER_VARIANTS)}")
    if dataset not in OFFICIAL_OUTPUT_SCALE:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(OFFICIAL_OUTPUT_SCALE)}")
    state = {rename_official_key(k): v for k, v in read_official_state_dict(weights).items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model = create_model(f"meter_{variant}")
    own = model.state_dict()
    state.update({k: own[k] for k in own if k.endswith("num_batches_tracked") and k not in state})
    load_state_dict_checked(model, state, str(weights))
    scale = OFFICIAL_OUTPUT_SCALE[dataset]
    with torch.no_grad():
        model.decoder.output.weight.mul_(scale)
    model.preprocessing = OFFICIAL_PREPROCESSING[dataset]
    provenance = {
        "source": Path(weights).name,
        "sha256": sha256_of(weights),
        "origin": "official METER checkpoint (Papa et al., MIT licence)",
        "dataset": dataset,
        "variant": variant,
        "unit_conversion": f"official output ({OFFICIAL_UNIT[dataset]}) x {scale} -> metres, folded into decoder.output.weight",
    }
    if dataset == "kitti":
        provenance["characterisation"] = KITTI_CHARACTERISATION
    model.metadata = {"architecture": model.name, "provenance": provenance, "output_unit": "m"}
    if out is not None:
        save_model_file(model, out, model.preprocessing, provenance)
    return model.eval()
