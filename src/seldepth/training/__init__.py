"""Training depth models with Lightning: the typed run config, the LightningModules, a whole run, its folder.

Where a change belongs:

* ``config.py``: the run config (``TrainConfig``) and its checks; ``optim.py``: the optimiser and its config;
* ``module.py``: supervised training (:class:`DepthTrainingModule`) and the plumbing every module shares;
  ``selfsup.py``: self-supervised training from video;
* ``run.py``: building module, data and trainer, and a whole run; ``loggers.py``: checkpoints and logs;
  ``resume.py``: what a checkpoint holds beyond Lightning's state (training order, random states, time);
  ``run_folder.py``: the files of a run folder and their readers;
* ``teachers.py``: targets from teacher models; ``transfer.py``: starting from another model, freezing parts.

Example:
    >>> from seldepth.training import parse_train_args, train  # doctest: +SKIP
    >>> cfg, resume = parse_train_args(["--config", "configs/meter_xxs_synthetic.yaml"])  # doctest: +SKIP
    >>> results = train(cfg, resume)  # doctest: +SKIP
"""

from seldepth.training.config import (BEST_BY, TrainConfig, TrainerConfig, dump_config, load_config, parse_train_args,
                                     parse_train_config)
from seldepth.training.loggers import AtomicCheckpointIO, ResumableCSVLogger
from seldepth.training.module import (DepthModelModule, DepthTrainingModule, TrainingDiverged, lists_to_tuples,
                                     log_depth_metrics)
from seldepth.training.optim import OptimConfig, adamw_with_steps
from seldepth.training.run import (build_datamodule, build_module, build_trainer, finish_pose, finish_run, train,
                                   validate_checkpoint)
from seldepth.training.run_folder import RunFolder

__all__ = [
    "AtomicCheckpointIO", "BEST_BY", "DepthModelModule", "DepthTrainingModule", "OptimConfig", "ResumableCSVLogger",
    "RunFolder", "TrainConfig", "TrainerConfig", "TrainingDiverged", "adamw_with_steps", "build_datamodule", "build_module", "build_trainer",
    "dump_config", "finish_pose", "finish_run", "lists_to_tuples", "load_config", "log_depth_metrics",
    "parse_train_args", "parse_train_config", "train", "validate_checkpoint",
]
