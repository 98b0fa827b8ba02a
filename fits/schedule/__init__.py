"""Schedule laws: the loss at every step of a run under any learning-rate schedule."""

from fits.schedule.forms import AnnealingLaw, MultiPowerLaw, annealing_area
from fits.schedule.kernel import loss_drop, loss_drop_grad, loss_drop_naive
from fits.schedule.laws import ScheduleLaw

__all__ = [
    "AnnealingLaw",
    "MultiPowerLaw",
    "ScheduleLaw",
    "annealing_area",
    "loss_drop",
    "loss_drop_grad",
    "loss_drop_naive",
]
