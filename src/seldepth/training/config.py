"""The typed configuration of a training run, read from YAML with command-line overrides (jsonargparse).

A run's resolved configuration is saved beside its checkpoints (``config.yaml``) and
reproduces the run. Every value is checked before any work starts; errors name the key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser

from seldepth.data.datamodule import DataConfig
from seldepth.data.spec import check_spec
from seldepth.data.subsets import read_selection
from seldepth.defaults import check_number
from seldepth.evaluation.protocol import PRESETS
from seldepth.inference import semantic_classes
from seldepth.losses.balanced import BalancedLossConfig
from seldepth.losses.logdepth import MultiScaleLossConfig
from seldepth.losses.synergy import SynergyLossConfig
from seldepth.models import create_model, list_models
from seldepth.models.base import has_output
from seldepth.selectivity.dissect import resolve_layers
from seldepth.selectivity.regularizer import SelectivityConfig
from seldepth.training.optim import OptimConfig
from seldepth.training.selfsup import SelfSupervisedConfig
from seldepth.training.teachers import TeacherConfig, TrainingTargets
from seldepth.training.transfer import freeze, init_from_file, parameter_groups


BEST_BY = {"val/rmse": "min", "val/miou": "max"}  # metric -> which end is best


@dataclass(frozen=True)
class TrainerConfig:
    """The training loop (Lightning Trainer) and where the run is written.

    Attributes:
        epochs: epochs to train.
        out_dir: run folder: checkpoints/, logs, config.yaml, model.safetensors.
        accelerator, devices, num_nodes, strategy, precision: Lightning's, passed to its Trainer as they are
            (``accelerator: auto`` trains on a GPU when there is one, else on the CPU; ``ddp`` for multi-process).
        checkpoint_every_n_steps: save ``last.ckpt`` every N training steps instead of at each epoch end.
        seed: seeds torch, numpy, python and the loader workers.
        max_minutes: stop training after this many minutes of wall-clock time (at a step's end; the
            run is then finished and scored as after its last epoch), to compare recipes at equal time.
        best_by: the validation metric that picks ``best.ckpt`` (and the run's model file):
            ``val/rmse`` (lowest), or ``val/miou`` (highest; a run that trains semantics only).
    """

    epochs: int = 60
    out_dir: str = "runs/meter_xxs"
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    seed: int = 0
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int | None = None
    progress_bar: bool = True
    evaluate_test: bool = True
    best_by: str = "val/rmse"
    max_minutes: float | None = None

    def __post_init__(self):
        check_number("trainer.max_minutes", self.max_minutes, 0, low_open=True, optional=True)
        if self.best_by not in BEST_BY:
            raise ValueError(f"trainer.best_by must be one of {', '.join(BEST_BY)}, got {self.best_by!r}")
        check_number("trainer.epochs", self.epochs, 1, integer=True)
        check_number("trainer.devices", self.devices, 1, integer=True)
        check_number("trainer.num_nodes", self.num_nodes, 1, integer=True)
        check_number("trainer.seed", self.seed, 0, 2**32 - 1, integer=True)  # what numpy and Lightning accept
        check_number("trainer.log_every_n_steps", self.log_every_n_steps, 1, integer=True)
        check_number("trainer.checkpoint_every_n_steps", self.checkpoint_every_n_steps, 1, integer=True, optional=True)


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run.

    ``model_options`` override fields of the model's config (``{semantic_classes: 5}``);
    ``multiscale`` selects the multi-resolution log-depth loss of Chiu et al., ICPR 2020 (multi-head models) and
    ``synergy`` the joint depth and semantic loss of Jiao et al., ECCV 2018 (``synergy_depth``) instead of ``loss``
    (METER's balanced loss); ``teacher`` names the teacher networks and semantic targets.
    ``init_from`` starts the model from a model file's weights, except the parts named by
    prefix in ``init_skip``; ``freeze`` names parts (prefixes) that training leaves unchanged
    (:mod:`seldepth.training.transfer`). ``selfsup`` trains from video frames without depth labels
    (:mod:`seldepth.training.selfsup`).
    """

    model: str = "meter_xxs"
    model_options: dict = field(default_factory=dict)
    protocol: str = "synthetic"
    data: DataConfig = field(default_factory=DataConfig)
    loss: BalancedLossConfig = field(default_factory=BalancedLossConfig)
    multiscale: MultiScaleLossConfig | None = None
    synergy: SynergyLossConfig | None = None
    selfsup: SelfSupervisedConfig | None = None
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    selectivity: SelectivityConfig = field(default_factory=SelectivityConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    init_from: str | None = None
    init_skip: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def build_parser(prog: str = "seldepth train") -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description="Train a depth model (Lightning) from a YAML config with overrides, "
                            "e.g. --optim.lr 5e-4 --trainer.epochs 10.", exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file")
    parser.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoints/last.ckpt")
    parser.add_class_arguments(TrainConfig)
    return parser


def _instantiate(parser: ArgumentParser, parse) -> tuple[TrainConfig, bool]:
    """Run ``parse()`` (jsonargparse) and build the config from its namespace, field by dataclass field."""
    try:
        ns = parse()
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in jsonargparse 4.49
        init = instantiate(ns)
    except Exception as exc:  # jsonargparse reports unknown keys and type errors as ArgumentError
        message = str(exc).strip()
        # a config dataclass's own check inside an optional section (multiscale, selfsup, ...): that line alone,
        # without jsonargparse's list of the union's alternatives
        own = re.search(r"^[\s-]*([\w.\[\]]+ must be .*)$", message, re.MULTILINE)
        if isinstance(exc, ValueError) and (own is None or own.group(1) == message):
            raise
        raise ValueError(own.group(1) if own else message) from None
    fields = {f.name: getattr(init, f.name) for f in dataclasses.fields(TrainConfig)}
    fields.update(model_options=dict(fields["model_options"] or {}), init_skip=list(fields["init_skip"] or []),
                  freeze=list(fields["freeze"] or []))
    return TrainConfig(**fields), bool(init.get("resume", False))


def parse_train_args(argv: list[str], check_init: bool = True) -> tuple[TrainConfig, bool]:
    """Parse ``seldepth train`` arguments into a checked config and the resume flag.

    Raises:
        ValueError: an unknown key, a wrong type or a bad value, with the key named.
    """
    parser = build_parser()
    cfg, resume = _instantiate(parser, lambda: parser.parse_args(argv))
    validate(cfg, check_init=check_init)
    return cfg, resume


def parse_train_config(mapping: dict, check_init: bool = True) -> TrainConfig:
    """A checked config from a mapping of config keys (what a YAML config file holds).

    Raises:
        ValueError: an unknown key, a wrong type or a bad value, with the key named.
    """
    if not isinstance(mapping, dict):
        raise ValueError(f"expected a mapping of training config keys, got {type(mapping).__name__}")
    parser = build_parser()
    cfg, _ = _instantiate(parser, lambda: parser.parse_object(mapping))
    validate(cfg, check_init=check_init)
    return cfg


def validate(cfg: TrainConfig, check_init: bool = True) -> None:
    """Checks that need more than one value or the file system; run before any work starts.

    ``check_init=False`` leaves out the ``init_from`` file (an experiment's run that starts from
    another run's model, which does not exist yet).
    """
    if cfg.model not in list_models():
        raise ValueError(f"model: unknown model {cfg.model!r}; available: {', '.join(list_models())}")
    if cfg.protocol not in PRESETS:
        raise ValueError(f"protocol: unknown protocol {cfg.protocol!r}; available: {', '.join(PRESETS)}")
    check_spec(cfg.data.path, key="data.path")  # kind, path, layout and the options' names and values: no data read
    if cfg.data.train_subset:
        read_selection(cfg.data.train_subset)  # exists and lists indices (their range is checked when the data is opened)
    try:
        with torch.device("meta"):  # the structure only: no weight is allocated or initialised, no random number drawn
            model = create_model(cfg.model, **cfg.model_options)
    except ValueError as exc:
        raise ValueError(f"model_options: {exc}") from None
    _validate_heads_and_teachers(cfg, model)
    freeze(model, cfg.freeze)  # names checked before any work
    parameter_groups(model, cfg.optim.lr, cfg.optim.part_lr)
    if cfg.init_skip and not cfg.init_from:
        raise ValueError("init_skip: names parts to leave out of init_from, but init_from is not set")
    if cfg.init_from and check_init:
        init_from_file(model, cfg.init_from, tuple(cfg.init_skip), weights=False)  # the file exists and fits
    if cfg.selectivity.layers or cfg.selectivity.logged_layers:
        for key, names in (("selectivity.layers", cfg.selectivity.layers), ("selectivity.log_layers", cfg.selectivity.logged_layers)):
            if names:
                try:
                    resolve_layers(model, list(names))
                except ValueError as exc:
                    raise ValueError(f"{key}: {str(exc).removeprefix('layers: ')}") from None
        m = getattr(model, "size_multiple", 1)
        if any(side % m for side in cfg.data.input_size):
            raise ValueError(f"data.input_size: {cfg.model} pads inputs to multiples of {m}, so at {list(cfg.data.input_size)} "
                             f"its activations would not line up with the ground truth for selectivity; use sides that "
                             f"are multiples of {m}, e.g. [128, 192] or [192, 256]")


def _validate_heads_and_teachers(cfg: TrainConfig, model) -> None:
    """The multi-scale loss needs a multi-head model; semantic weights need semantic outputs and targets;
    teacher files are loaded (and their unit checked) before any work."""
    classes = semantic_classes(model)
    if cfg.multiscale is not None:
        if not has_output(model, "heads"):
            raise ValueError(f"multiscale: {cfg.model} has a single output; the multi-scale loss needs a multi-head "
                             f"model such as realtime_depth (or leave multiscale out to use loss)")
        if cfg.multiscale.uses_semantics and not classes:
            raise ValueError("multiscale.betas: semantic weights need a model with semantic outputs "
                             f"(model_options: {{semantic_classes: N}})")
        if cfg.multiscale.uses_semantics and not cfg.teacher.semantic:
            raise ValueError("multiscale.betas: semantic weights need semantic targets (teacher.semantic: labels or a model file)")
    if cfg.synergy is not None:
        if not has_output(model, "tasks"):
            raise ValueError(f"synergy: {cfg.model} has no semantic branch; the synergy loss needs model: synergy_depth")
        if cfg.multiscale is not None:
            raise ValueError("synergy and multiscale: choose one loss")
        if tuple(cfg.synergy.tasks) == ("semantics",) and not classes:
            raise ValueError(f"synergy.tasks: {cfg.model} with these model_options has no semantic output "
                             f"(structure depth_only) to train")
        if "semantics" in cfg.synergy.tasks and classes and not cfg.teacher.semantic:
            raise ValueError("synergy: needs semantic targets (teacher.semantic: labels or a model file)")
    if cfg.trainer.best_by == "val/miou" and not (classes and cfg.teacher.semantic):
        raise ValueError("trainer.best_by: val/miou needs a model with semantic outputs and semantic targets (teacher.semantic)")
    if cfg.selfsup is not None:
        others = [k for k in ("multiscale", "synergy") if getattr(cfg, k) is not None]
        if others or cfg.teacher.depth or cfg.teacher.semantic or cfg.selectivity.enabled:
            raise ValueError(f"selfsup: self-supervised training takes no {', '.join(others) or 'teacher or selectivity'} "
                             f"(it reads no depth or semantic labels)")
        if getattr(getattr(model, "config", None), "output", None) == "linear":
            raise ValueError(f"selfsup: {cfg.model} must predict positive depth for view synthesis: "
                             f"model_options: {{output: softplus}}")
        if cfg.selfsup.pose_model not in list_models("pose"):
            raise ValueError(f"selfsup.pose_model: unknown pose network {cfg.selfsup.pose_model!r}; "
                             f"available: {', '.join(list_models('pose'))}")
    if cfg.teacher.semantic and not classes:
        raise ValueError(f"teacher.semantic: {cfg.model} has no semantic output (model_options: {{semantic_classes: N}})")
    TrainingTargets(cfg.teacher, classes or None, weights=False)  # checks the teacher files; training loads them


def load_config(path: str, check_init: bool = True) -> TrainConfig:
    """Read a saved ``config.yaml`` back into a config (``check_init``: see :func:`validate`)."""
    cfg, _ = parse_train_args(["--config", str(path)], check_init=check_init)
    return cfg


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
