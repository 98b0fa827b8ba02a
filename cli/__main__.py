"""`python -m cli` runs the `scaling` command (used by tests and when no script is on PATH)."""

from cli.app import main

main()
