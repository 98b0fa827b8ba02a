"""The one error type every estimator raises for data it cannot fit."""


class FitError(ValueError):
    """Data cannot identify the law (too few sizes, no spread, NaNs, non-positive values...).

    A ValueError so that callers who only know the standard library still catch it; the
    message says what is missing and is meant to be shown to the user as is.
    """
