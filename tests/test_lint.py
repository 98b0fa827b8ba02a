import subprocess
import sys

from tests.conftest import REPO


def test_ruff_is_clean():
    """ruff comes with the test extra; lint failures fail the suite."""
    done = subprocess.run(["ruff", "check", str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_mypy_is_clean():
    """The packages type-check (mypy comes with the test extra; config in pyproject.toml)."""
    packages = ["scaling", "runners", "fits", "store", "cli"]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *packages], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0, done.stdout
