"""Errors a user can cause in the runners (bad configs, missing corpora), and how a failed
run's error is recorded."""

import os
import traceback


class RunnerError(ValueError):
    """A user mistake in a run or sweep request; the CLI prints it as one line."""


def describe(exc: Exception) -> str:
    """A failed run's error for the run log, in one line: type, message and where raised."""
    where = traceback.extract_tb(exc.__traceback__)[-1]
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {message} (at {os.path.basename(where.filename)}:{where.lineno})"
