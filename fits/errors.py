"""Errors for data that cannot identify a law."""


class FitError(ValueError):
    """The data cannot identify the requested law; the message says what is missing."""
