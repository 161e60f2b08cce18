"""The optimiser of a training run: AdamW with a step schedule, and its config."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from seldepth.defaults import check_number


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a step schedule (METER: lr 1e-3, weight decay 0.01, x0.1 every 20 epochs).

    ``part_lr`` gives parts of the model (parameter name prefixes: ``encoder``, ``decoder.up3``)
    their own learning rate, e.g. a small one for a pretrained encoder; the schedule scales all.
    """

    lr: float = 1e-3
    part_lr: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    step_epochs: int = 20
    gamma: float = 0.1

    def __post_init__(self):
        check_number("optim.lr", self.lr, 0, low_open=True)
        check_number("optim.weight_decay", self.weight_decay, 0)
        check_number("optim.step_epochs", self.step_epochs, 1, integer=True)
        check_number("optim.gamma", self.gamma, 0, 1, low_open=True)
        for name, lr in self.part_lr.items():
            check_number(f"optim.part_lr.{name}", lr, 0, low_open=True)
        if len(self.betas) != 2:
            raise ValueError(f"optim.betas must be two numbers in [0, 1), got {list(self.betas)}")
        for i, beta in enumerate(self.betas):
            check_number(f"optim.betas[{i}]", beta, 0, 1, high_open=True)


def adamw_with_steps(o: OptimConfig, groups: list[dict]) -> dict:
    """AdamW over parameter ``groups`` with ``o``'s step schedule, as Lightning's ``configure_optimizers`` returns it."""
    optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_epochs, gamma=o.gamma)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
