"""Schedule laws: the loss at every step of a run under any learning-rate schedule."""

from fits.schedule.forms import AnnealingLaw, MultiPowerLaw, annealing_area
from fits.schedule.kernel import loss_drop, loss_drop_grad, loss_drop_naive
from fits.schedule.laws import ScheduleLaw
from fits.schedule.sized import SizedMultiPowerLaw

__all__ = [
    "AnnealingLaw",
    "MultiPowerLaw",
    "ScheduleLaw",
    "SizedMultiPowerLaw",
    "annealing_area",
    "loss_drop",
    "loss_drop_grad",
    "loss_drop_naive",
]
