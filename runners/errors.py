"""Errors a user can cause in the runners (bad configs, missing corpora)."""


class RunnerError(ValueError):
    """A user mistake in a run or sweep request; the CLI prints it as one line."""
