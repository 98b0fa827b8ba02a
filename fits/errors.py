"""The one error type every estimator raises for a fit it cannot do."""

from collections.abc import Callable, Iterable
from typing import Any


class FitError(ValueError):
    """Data cannot identify the law (too few sizes, no spread, NaNs, non-positive values...),
    or the machine could not finish the fit (its worker processes died).

    A ValueError so that callers who only know the standard library still catch it; the
    message says what is missing and is meant to be shown to the user as is.
    """


class UnidentifiedFit(FitError):
    """A fit the data do not identify (an exponent not above zero, a parameter outside its
    bounds): `problems` lists why, and the message adds that `--force` (force=True) keeps it,
    which a caller that offers no such choice (an adaptive sweep) leaves out."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{'; '.join(self.problems)}; --force keeps it, flagged")


def each_reason_once(
    refused: Iterable[tuple[Any, str]], named: Callable[[list[Any]], str] = ", ".join
) -> str:
    """Why several things were refused ((law, reason) pairs, or IsoFLOP's budgets), each
    reason once after what it stopped, as `named` names them: 'chinchilla, kaplan: no spread
    in D; data-constrained: needs runs that ...'."""
    stopped: dict[str, list[Any]] = {}
    for name, why in refused:
        stopped.setdefault(why, []).append(name)
    return "; ".join(f"{named(names)}: {why}" for why, names in stopped.items())
