"""The one error type every estimator raises for a fit it cannot do."""

from collections.abc import Mapping


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


def each_reason_once(refused: Mapping[str, str]) -> str:
    """Why several laws were refused ({law: reason}), each reason once after the laws it
    stopped: 'chinchilla, kaplan: no spread in D; data-constrained: needs runs that ...'."""
    stopped: dict[str, list[str]] = {}
    for name, why in refused.items():
        stopped.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in stopped.items())
