"""Errors the public API raises for user mistakes."""


class ScalingError(ValueError):
    """A request the prediction API cannot answer as asked; the message says why."""


class ScalingWarning(UserWarning):
    """Something the API did not do but did not need for the answer (e.g. log it)."""
