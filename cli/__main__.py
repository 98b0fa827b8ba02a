"""`python -m cli`: the `scaling` command without an installed console script."""

from cli.app import main

if __name__ == "__main__":
    main()
