"""Errors about the run log a user can cause (wrong file, locked file, bad SQL)."""


class StoreError(ValueError):
    """A problem with the DuckDB run log; the CLI prints it as one line."""
