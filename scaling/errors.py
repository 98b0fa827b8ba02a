"""Errors the public API raises for user mistakes."""


class ScalingError(ValueError):
    """A request the prediction API cannot answer as asked; the message says why."""
