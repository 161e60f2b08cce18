"""The optimiser of a training run: AdamW with a step schedule, and its config."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


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
        if not self.lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.step_epochs < 1:
            raise ValueError(f"optim.step_epochs must be >= 1, got {self.step_epochs}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"optim.gamma must be in (0, 1], got {self.gamma}")
        bad = {k: v for k, v in self.part_lr.items() if not float(v) > 0}
        if bad:
            raise ValueError(f"optim.part_lr: learning rates must be > 0, got {bad}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be in [0, 1), got {self.betas}")


def adamw_with_steps(o: OptimConfig, groups: list[dict]) -> dict:
    """AdamW over parameter ``groups`` with ``o``'s step schedule, as Lightning's ``configure_optimizers`` returns it."""
    optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_epochs, gamma=o.gamma)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
