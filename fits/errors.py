"""The one error type every estimator raises for a fit it cannot do."""


class FitError(ValueError):
    """Data cannot identify the law (too few sizes, no spread, NaNs, non-positive values...),
    or the machine could not finish the fit (its worker processes died).

    A ValueError so that callers who only know the standard library still catch it; the
    message says what is missing and is meant to be shown to the user as is.
    """
