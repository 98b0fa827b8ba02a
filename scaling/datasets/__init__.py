"""Published scaling-law data sets that ship with the package, as seaborn ships its examples.

Each is a small public table released by the authors of a paper this project builds on; the
tests fit them against the published values, and users can load, fit or import them from any
folder (`scaling import --example chinchilla-epoch`). Provenance: README.md beside this file.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from scaling.errors import ScalingError

if TYPE_CHECKING:
    import pandas as pd

FILES = {
    "chinchilla-epoch": "chinchilla_epoch.csv",
    "chinchilla-epoch-svg": "chinchilla_epoch_svg.csv",
    "step-law": "step_law.csv",
    "mu-scaling": "mu_scaling.csv",
    "farseer": "farseer_train.csv",
    "data-constrained": "data_constrained_train.csv",
}
DESCRIPTIONS = {
    "chinchilla-epoch": "Hoffmann et al. 2022 fig. 4 as extracted by Epoch (Besiroglu et al. "
    "2024): 245 runs, columns N, D, C, loss",
    "chinchilla-epoch-svg": "the same 245 points as Epoch's original svg extraction, with the "
    "plot colour that marks each compute budget",
    "step-law": "Step Law (Li et al. 2025): 1,911 dense runs over 17 (N, D) pairs with lr, bs "
    "(sequences of 2,048 tokens) and smoothed loss",
    "mu-scaling": "Mu-scaling (Yao et al. 2023): 10 muP widths, training loss after 20k steps",
    "farseer": "Farseer (Li et al. 2025) via ScaleBench: 404 training runs, N 1e8..6.4e9, "
    "D 1e9..5.1e11, columns N, D, loss",
    "data-constrained": "Muennighoff et al. 2023 via ScaleBench: 161 training runs, many "
    "repeating data, columns N, D, U (unique tokens), loss",
}


def names() -> list[str]:
    """The data sets that ship with the package."""
    return list(FILES)


def path(name: str) -> Path:
    """The file behind a data set (a CSV inside the installed package)."""
    if name not in FILES:
        raise ScalingError(f"unknown example data set {name!r}: choose one of {', '.join(FILES)}")
    return Path(str(files(__name__).joinpath(FILES[name])))


def load(name: str) -> pd.DataFrame:
    """A data set as a DataFrame, e.g. `load("chinchilla-epoch")` (columns N, D, C, loss)."""
    import pandas as pd

    return pd.read_csv(path(name))


def epoch_240() -> pd.DataFrame:
    """Epoch's 240 points: the 245 Chinchilla rows less the 5 with the highest loss."""
    frame = load("chinchilla-epoch")
    return frame.drop(frame.nlargest(5, "loss").index).reset_index(drop=True)
