"""Errors about the run log a user can cause (wrong file, locked file, bad SQL)."""


class StoreError(ValueError):
    """A problem with the DuckDB run log; the CLI prints it as one line."""


class LockedError(StoreError):
    """Another process holds the run log past the wait; `holder` names it."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder
