"""Training losses."""

from seldepth.losses.balanced import BalancedLoss, balanced_loss

__all__ = ["BalancedLoss", "balanced_loss"]
