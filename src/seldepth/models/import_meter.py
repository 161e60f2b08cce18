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


# NYU Depth v2 Kinect colour intrinsics at 640x480, as data/nyu_densedepth.py NYU_INTRINSICS (models may not
# import data; a test checks that the two agree). Recorded in imported NYU model files for point clouds.
NYU_CAMERA = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362, "height": 480, "width": 640}
# 16-bit depth PNG scale (values per metre) of each data set's convention: NYU millimetres, KITTI x256.
OFFICIAL_PNG_SCALE = {"nyu": 1000.0, "kitti": 256.0}
OFFICIAL_INTRINSICS = {"nyu": NYU_CAMERA, "kitti": None}
INTRINSICS_NOTE = {
    "nyu": "NYU Depth v2 Kinect colour camera (fx, fy, cx, cy at 640x480), scaled to each image's size",
    "kitti": "none recorded: KITTI's frames come from several calibrations (see each drive's calib_cam_to_cam.txt); "
             "give the intrinsics of the camera for point clouds",
}


def dataset_from_name(path: str | os.PathLike) -> str | None:
    """``nyu`` or ``kitti`` when the official file name says so (``build_model_best_nyu_xxs``), else None."""
    found = {d for d in OFFICIAL_OUTPUT_SCALE if re.search(rf"(^|[^a-z]){d}([^a-z]|$)", Path(path).name.lower())}
    return found.pop() if len(found) == 1 else None


def _fits(variant: str, state: dict[str, torch.Tensor]) -> str | None:
    """None when ``state`` (renamed keys) fits METER-``variant`` in names and shapes, else the mismatch message."""
    with torch.device("meta"):
        model = create_model(f"meter_{variant}")
    own = model.state_dict()
    state = {**{k: own[k] for k in own if k.endswith("num_batches_tracked")}, **state}
    try:
        load_state_dict_checked(model, state, f"meter_{variant}", check_only=True)
    except ValueError as exc:
        return str(exc)
    return None


def infer_variant(state: dict[str, torch.Tensor]) -> str | None:
    """The METER variant (``xxs``, ``xs``, ``s``) whose every tensor name and shape ``state`` (renamed keys) fits."""
    fitting = [v for v in METER_VARIANTS if _fits(v, state) is None]
    return fitting[0] if len(fitting) == 1 else None


def import_meter(weights: str | os.PathLike, variant: str | None = None, dataset: str | None = None,
                 out: str | os.PathLike | None = None):
    """Convert an official METER checkpoint into a seldepth METER model predicting metres.

    The variant is read from the tensor shapes; the data set from the official file name
    (``build_model_best_nyu_xxs``, ``build_model_best_kitti_xxs``). A ``variant`` or ``dataset`` given
    that contradicts the file stops the import, saying what the file looks like.

    The model file records, besides the preprocessing and the provenance: for NYU the Kinect camera
    intrinsics (metadata ``intrinsics``, so point clouds need no camera arguments); for KITTI none
    (``provenance.intrinsics`` null, with ``provenance.intrinsics_note``); and ``provenance.png_scale``,
    the 16-bit depth PNG convention of the data set (NYU 1000 per metre, KITTI 256).

    Args:
        weights: path of the official state_dict (e.g. ``build_model_best_nyu_xxs``).
        variant: ``xxs``, ``xs`` or ``s``; default: from the tensor shapes.
        dataset: ``nyu`` or ``kitti`` (sets the input size, preprocessing and output unit); default: from
            the file name, required when the name does not say.
        out: where to write the model file (safetensors); nothing is written when ``None``.

    Returns:
        The model (eval mode) with ``preprocessing`` and ``metadata`` set.

    Raises:
        ValueError: an unknown or contradicted ``variant`` / ``dataset``, ``dataset`` missing where the file
            name does not say, or weights that fit no METER variant.
    """
    if variant is not None and variant not in METER_VARIANTS:
        raise ValueError(f"unknown METER variant {variant!r}; choose from {', '.join(METER_VARIANTS)}")
    if dataset is not None and dataset not in OFFICIAL_OUTPUT_SCALE:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(OFFICIAL_OUTPUT_SCALE)}")
    name = Path(weights).name
    state = {rename_official_key(k): v for k, v in read_official_state_dict(weights).items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}

    named = dataset_from_name(weights)
    if dataset is None and named is None:
        raise ValueError(f"{weights}: the file name does not say which data set the weights were trained on; "
                         f"give dataset: {' or '.join(OFFICIAL_OUTPUT_SCALE)}")
    if dataset is not None and named is not None and dataset != named:
        raise ValueError(f"{weights}: the file name says these are the official {named.upper()} weights, but dataset "
                         f"{dataset!r} was given; give dataset {named!r} (or leave it out), or rename the file if its "
                         f"name is wrong")
    dataset_from = "given" if dataset is not None else "file name"
    dataset = dataset or named

    detected = infer_variant(state)
    if variant is not None and detected is not None and variant != detected:
        raise ValueError(f"{weights}: these weights look like METER-{detected} (every tensor shape fits meter_{detected}), "
                         f"not variant {variant!r}; give variant {detected!r} or leave it out. "
                         + (_fits(variant, state) or ""))
    if variant is None and detected is None:
        raise ValueError(f"{weights}: the weights fit no METER variant ({', '.join(METER_VARIANTS)}); as METER-xxs: "
                         + (_fits("xxs", state) or ""))
    variant_from = "given" if variant is not None else "tensor shapes"
    variant = variant or detected

    model = create_model(f"meter_{variant}")
    own = model.state_dict()
    state.update({k: own[k] for k in own if k.endswith("num_batches_tracked") and k not in state})
    load_state_dict_checked(model, state, str(weights))
    scale = OFFICIAL_OUTPUT_SCALE[dataset]
    with torch.no_grad():
        model.decoder.output.weight.mul_(scale)
    model.preprocessing = OFFICIAL_PREPROCESSING[dataset]
    intrinsics = OFFICIAL_INTRINSICS[dataset]
    provenance = {
        "source": name,
        "sha256": sha256_of(weights),
        "origin": "official METER checkpoint (Papa et al., MIT licence)",
        "dataset": dataset,
        "dataset_from": dataset_from,
        "variant": variant,
        "variant_from": variant_from,
        "unit_conversion": f"official output ({OFFICIAL_UNIT[dataset]}) x {scale} -> metres, folded into decoder.output.weight",
        "png_scale": OFFICIAL_PNG_SCALE[dataset],
        "intrinsics": intrinsics,
        "intrinsics_note": INTRINSICS_NOTE[dataset],
    }
    if dataset == "kitti":
        provenance["characterisation"] = KITTI_CHARACTERISATION
    model.metadata = {"architecture": model.name, "provenance": provenance, "output_unit": "m"}
    if intrinsics is not None:
        model.metadata["intrinsics"] = dict(intrinsics)
    if out is not None:
        save_model_file(model, out, model.preprocessing, provenance, intrinsics=intrinsics)
    return model.eval()
