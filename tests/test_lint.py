import subprocess

from tests.conftest import REPO


def test_ruff_is_clean():
    """ruff comes with the test extra; lint failures fail the suite."""
    done = subprocess.run(["ruff", "check", str(REPO)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
