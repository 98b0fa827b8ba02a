"""The shared contract: public names, serialisation dispatch, input messages, no heavy imports."""

import gc
import json
import os
import re
import signal
import subprocess
import sys
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fits
from fits import Estimate, FitError, PowerLaw, from_dict, validate
from fits.bootstrap import _how_it_died, map_chunks, resolve_n_jobs
from tests.conftest import REPO


def test_public_names_are_exported():
    for name in fits.__all__:
        assert hasattr(fits, name), name


@pytest.mark.slow
def test_fits_never_imports_torch_or_duckdb():
    code = "import sys, fits; print(sorted({'torch', 'duckdb'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "[]"


def test_fit_error_is_a_value_error():
    assert issubclass(FitError, ValueError)


@pytest.fixture(scope="module")
def power():
    x = np.geomspace(1.0, 100.0, 8)
    return PowerLaw().fit(x, 2.0 + 3.0 * x**-0.5 + 0.001 * np.sin(x))


def test_from_dict_dispatches_on_the_law_and_checks_it(power):
    record = json.loads(json.dumps(power.to_dict()))
    assert set(record) >= {"law", "params", "uncertainty", "n_points", "objective", "config"}
    assert set(record["uncertainty"]) >= {"level", "stderr", "intervals"}
    assert isinstance(from_dict(record), PowerLaw)
    with pytest.raises(ValueError, match="not a ChinchillaLaw"):
        fits.ChinchillaLaw.from_dict(record)
    with pytest.raises(ValueError, match="unknown law 'nope'"):
        from_dict({**record, "law": "nope"})
    newer = {**record, "format_version": record["format_version"] + 1}
    with pytest.raises(ValueError, match="newer than this release reads"):
        from_dict(newer)


def test_generator_seed_is_not_serialised():
    x = np.geomspace(1.0, 100.0, 8)
    m = PowerLaw(n_bootstrap=20, random_state=np.random.default_rng(0)).fit(x, 1 + x**-0.3)
    record = json.loads(json.dumps(m.to_dict()))
    assert record["config"]["random_state"] is None
    assert len(record["state"]["bootstrap_params"]) == m.bootstrap_params_.shape[0]


def test_unfitted_estimators_say_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        PowerLaw().summary()
    with pytest.raises(RuntimeError, match="not fitted"):
        fits.ChinchillaLaw().predict(1e9, 1e10)


def test_level_is_checked(power):
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        PowerLaw(level=90).fit([1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.5, 1.2])
    with pytest.raises(ValueError, match="level must be between 0 and 1"):
        power.predict_interval([5.0], level=1.0)


def test_an_estimate_names_its_kind_as_statsmodels_does():
    lo, hi = np.array([0.5, 1.5]), np.array([1.5, 2.5])
    p = Estimate(np.array([1.0, 2.0]), lo, hi, 0.8, "prediction")
    frame = p.to_frame()
    assert list(frame.columns) == ["mean", "obs_ci_lower", "obs_ci_upper"]
    assert frame.shape == (2, 3) and frame.obs_ci_upper.tolist() == [1.5, 2.5]
    mean = Estimate(np.array([1.0, 2.0]), lo, hi, 0.8, "confidence").to_frame()
    assert list(mean.columns) == ["mean", "mean_ci_lower", "mean_ci_upper"]
    with pytest.raises(ValueError, match="interval kind 'calibrated'"):
        Estimate(np.array([1.0]), np.array([0.5]), np.array([1.5]), 0.8, "calibrated")


def test_an_estimate_holds_its_point_and_is_never_narrowed():
    """A percentile interval of skewed draws can miss the full fit's point (Farseer's runs: an
    N_opt of 2.79e10 [2.32e10, 2.78e10]); the end it misses is moved to the point, the others
    and NaN stay."""
    point = np.array([3.0, 1.0, np.nan, 2.0])
    lo, hi = np.array([3.5, 0.5, 1.0, 1.0]), np.array([4.0, 0.8, 2.0, 3.0])
    held = Estimate(point, lo, hi, 0.9, "confidence")
    assert held.lo.tolist() == [3.0, 0.5, 1.0, 1.0]
    assert held.hi.tolist() == [4.0, 1.0, 2.0, 3.0]


def test_input_messages():
    with pytest.raises(FitError, match="no data: N is empty"):
        validate.positive([], "N")
    with pytest.raises(FitError, match="N must be numeric"):
        validate.positive(["a", "b"], "N")
    with pytest.raises(FitError, match="one-dimensional"):
        validate.positive(np.ones((2, 2)), "N")
    bad = np.arange(1.0, 11.0)
    bad[[0, 2, 4, 6, 8, 9, 1]] = -1
    with pytest.raises(FitError, match=r"\(rows 0, 1, 2, 4, 6 and 2 more\)"):
        validate.positive(bad, "D")
    with pytest.raises(FitError, match=r"NaN or infinite values in y \(row b\)"):
        validate.finite(pd.Series([1.0, np.inf], index=["a", "b"]), "y")
    with pytest.raises(FitError, match=r"missing column\(s\) 'lr'"):
        validate.columns(pd.DataFrame({"loss": [1.0]}), ["loss", "lr"])


def test_percentile_interval_leaves_out_overflowed_draws():
    """A few degenerate refits overflow to inf or nan; the interval is that of the rest,
    matching numpy's quantile of the finite draws (an all-degenerate column stays nan)."""
    rng = np.random.default_rng(0)
    finite = rng.normal(size=(200, 2))
    draws = np.vstack([finite, [[np.inf, np.nan], [np.nan, -np.inf]]])
    draws[:, 1] = np.nan
    draws[:200, 1] = finite[:, 1]
    lo, hi = fits.percentile_interval(draws, 0.9)
    want_lo, want_hi = np.quantile(finite, [0.05, 0.95], axis=0)
    np.testing.assert_allclose(lo, want_lo)
    np.testing.assert_allclose(hi, want_hi)
    lo, hi = fits.percentile_interval(np.full((5, 1), np.inf), 0.9)
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_observation_interval_of_a_certain_law_is_the_runs_scatter():
    """With no law uncertainty (every draw 3), one run's interval is 3 times the quantiles of
    the residual factors: 0.91 and 1.09 for factors spread evenly over 0.9..1.1."""
    from fits.bootstrap import observation_interval

    draws = np.full((40_000, 1), 3.0)
    lo, hi = observation_interval(draws, np.log(np.linspace(0.9, 1.1, 201)), 0.90, seed=1)
    assert lo[0] == pytest.approx(3 * 0.91, rel=2e-3) and hi[0] == pytest.approx(3 * 1.09, rel=2e-3)
    assert observation_interval(draws, None, 0.90) == (3.0, 3.0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks here")
def test_all_cores_means_the_cores_this_process_may_use():
    """n_jobs=-1 under a one-core affinity mask (taskset, a container's cpuset) is one worker,
    whatever the machine has: a real process restricted to its first allowed core."""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from fits.bootstrap import resolve_n_jobs; print(resolve_n_jobs(-1), resolve_n_jobs(-2))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)  # fmt: skip
    assert done.stdout.split() == ["1", "1"]
    assert resolve_n_jobs(-1) == len(os.sched_getaffinity(0))


def _square_dying_once(marker: str, i: int) -> int:
    """i*i, but the first call for chunk 2 kills its own worker, as the out-of-memory killer
    would (SIGKILL); the marker file remembers that it happened."""
    if i == 2 and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return i * i


def _square_dying_in_workers(parent: int, exit_code: int | None, i: int) -> int:
    """i*i in the process `parent`; any other (a worker) dies: SIGKILL, or exit(exit_code)."""
    if os.getpid() != parent:
        if exit_code is None:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(exit_code)
    return i * i


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_a_worker_killed_mid_fit_costs_a_rerun_of_its_parts_not_the_fit(tmp_path):
    marker = str(tmp_path / "killed")
    chunks = [(marker, i) for i in range(6)]
    with pytest.warns(UserWarning) as caught:
        squares = map_chunks(_square_dying_once, chunks, n_jobs=2)
    assert os.path.exists(marker)  # a worker really died
    assert squares == [i * i for i in range(6)]
    (warning,) = [str(w.message) for w in caught]
    assert re.fullmatch(
        r"a worker process died while fitting \(killed by SIGKILL\); [1-5] of 6 parts are "
        r"refitted in new workers",
        warning,
    ), warning


class _Exited:
    """A finished worker process as `_how_it_died` reads it."""

    def __init__(self, exitcode: int) -> None:
        self.exitcode = exitcode

    def join(self, timeout: float) -> None:
        pass


@pytest.mark.parametrize(
    "codes, how",
    [([1, -9], "killed by SIGKILL"), ([-15, 3], "exit code 3"), ([1, 3], "exit code 3"),
     ([-15, 1], "exit code 1"), ([-15], "killed by SIGTERM"), ([-11, -15], "killed by SIGSEGV")],
)  # fmt: skip
def test_the_dead_worker_is_told_apart_from_the_survivors_the_pool_stops(codes, how):
    """The pool stops the survivors with SIGTERM, and a survivor whose queue closed under it
    exits with 1 (CI once reported a SIGKILLed worker as "exit code 1"), in any order."""
    for order in (codes, codes[::-1]):
        assert _how_it_died(BrokenProcessPool(), [_Exited(c) for c in order]) == how


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
@pytest.mark.parametrize("exit_code, how", [(None, "killed by SIGKILL"), (3, "exit code 3")])
@pytest.mark.parametrize("parts", [4, 20_000])
# CPython 3.11's pool manager marks the pool broken without the submit lock, so a submit in
# that moment can end its thread with "dictionary changed size during iteration" (its
# traceback, in about 1 run of 3); the pool is broken either way and handled the same
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_workers_that_keep_dying_leave_the_fit_to_this_process(exit_code, how, parts):
    """Every worker dies, in both pools: the parts left are fitted in the calling process,
    and each warning says how the workers died. With 20,000 parts a worker dies while parts are
    still being submitted (the pool's submit then raises), which is handled the same way."""
    chunks = [(os.getpid(), exit_code, i) for i in range(parts)]
    with pytest.warns(UserWarning) as caught:
        squares = map_chunks(_square_dying_in_workers, chunks, n_jobs=2)
    assert squares == [i * i for i in range(parts)]
    assert [str(w.message) for w in caught] == [
        f"a worker process died while fitting ({how}); {parts} of {parts} parts are refitted "
        f"in {where}"
        for where in ("new workers", "this process")
    ]


def _square_after_collecting(i: int) -> int:
    gc.collect()
    return i * i


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_workers_do_not_collect_the_callers_garbage(tmp_path):
    """An unreachable cycle that holds an open DuckDB connection, as a test's or a notebook's
    leftovers do: a forked worker that freed it would segfault (DuckDB's threads are not in
    the fork). Workers that collect garbage fit without a death."""
    import duckdb

    gc.disable()  # the cycle stays uncollected in this process until the workers are forked
    try:
        connection = duckdb.connect(str(tmp_path / "left.duckdb"))
        connection.execute("CREATE TABLE t AS SELECT range AS i FROM range(1000)")
        cycle: dict[str, object] = {"connection": connection}
        cycle["self"] = cycle
        del cycle, connection
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a dead worker's warning fails the test
            squares = map_chunks(_square_after_collecting, [(i,) for i in range(4)], n_jobs=2)
    finally:
        gc.enable()
        gc.collect()
    assert squares == [i * i for i in range(4)]


@pytest.mark.skipif(sys.platform != "linux", reason="workers are forked on Linux only")
def test_a_script_without_a_main_guard_fits_in_worker_processes(tmp_path):
    """A user's script that fits at top level, under a start method that re-imports __main__
    in each worker (spawn here; Python 3.14's default is forkserver): the workers are forked,
    so the script runs once and the fit completes in two processes."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import multiprocessing\n"
        "multiprocessing.set_start_method('spawn')\n"
        "print('script ran', flush=True)\n"
        "from scaling import Study, datasets\n"
        "runs = datasets.load('chinchilla-epoch').iloc[::3]\n"
        "law = Study.from_frame(runs, n_jobs=2, n_bootstrap=20).fit('chinchilla')\n"
        "print('fitted', law.model.params_['alpha'] > 0)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["script ran", "fitted True"]
