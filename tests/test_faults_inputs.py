"""Specs, corpora and fits that used to raise tracebacks or hang: each is one line, exit 2."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fits.errors import FitError
from fits.isoflop import IsoFLOPFit
from fits.power import PowerLaw
from runners.corpus import load_corpus
from runners.errors import RunnerError
from runners.sweeps.spec import load_spec, loads_spec
from tests.conftest import call_cli, run_cli

ADAPTIVE = """
name = "a"
[fixed]
lr = 3e-3
[design]
kind = "adaptive"
budget_flops = 1e15
target = {target}
[design.candidates]
size = [{{ d_model = 32, n_layers = 1, n_heads = 2 }},
        {{ d_model = 48, n_layers = 1, n_heads = 2 }},
        {{ d_model = 64, n_layers = 1, n_heads = 2 }}]
tokens = [4096, 8192, 16384]
"""


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (ADAPTIVE.format(target='{ ask = ["loss"] }'),
         r"^spec\.design\.target\.ask: expected loss, optimal or lr, got \['loss'\]$"),
        (ADAPTIVE.format(target='{ ask = "loss", N = 1e-300, D = 1e-300 }'),
         r"^spec\.design\.target\.N: must be a finite number of at least one parameter, "
         r"got 1e-300$"),
        (ADAPTIVE.format(target='{ ask = "optimal", compute = 1 }'),
         r"^spec\.design\.target\.compute: must be a finite number of at least 6 FLOPs"),
        ('name = "i"\n[design]\nkind = "isoflop"\nbudgets = [1e300]\n',
         r"^spec\.design\.budgets: 1e\+300 is too large \(a setting is below 1e\+300\)$"),
        ("name = " + "[" * 500 + "]" * 500 + "\n",
         r"^spec: values nested too deep to be a sweep spec$"),
    ],
)  # fmt: skip
def test_bad_specs_are_one_line(text, says):
    with pytest.raises(RunnerError, match=says):
        loads_spec(text)


@pytest.mark.slow
def test_spec_files_that_never_end_are_refused_without_reading_them(tmp_path):
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.toml"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero):  # a subprocess with a timeout: a hang fails, it does not stall
        done = run_cli("sweep", "plan", str(path), timeout=120)
        assert done.returncode == 2
        assert done.stderr.strip() == f"error: spec {path} is not a regular file"
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (2 << 20))
    with pytest.raises(RunnerError, match="is 2,097,152 bytes: not a sweep spec"):
        load_spec(huge)


@pytest.mark.slow
def test_a_sweep_named_like_markup_is_shown_as_written(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "[/x]"\n[fixed]\nseq_len = 32\n[axes]\nlr = [1e-3]\n')
    code, out, err = call_cli(["sweep", "plan", str(spec), "--db", str(tmp_path / "l.duckdb")],
                              capsys)  # fmt: skip
    assert code == 0, err
    assert "sweep [/x] (grid)" in out


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b'{"text": 7}\n', "line 2: 'text' is 7, not a string"),
        (b'{"text": null}\n', "line 2: 'text' is null, not a string"),
        (b'{"text": "\\ud800"}\n', "line 2: 'text' holds a lone surrogate, not text"),
        (b'{"text": "caf\xe9"}\n', "line 2 is not UTF-8 text"),
    ],
)
def test_jsonl_corpora_with_text_that_is_not_text_are_refused(tmp_path, capsys, line, says):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "' + b"fine text " * 500 + b'"}\n' + line)
    with pytest.raises(RunnerError, match=f"{path}: {says}"):
        load_corpus(str(path))
    code, _, err = call_cli(["run", "--corpus", str(path), "--db", str(tmp_path / "l.duckdb")],
                            capsys)  # fmt: skip
    assert code == 2 and err.strip() == f"error: {path}: {says}"


@pytest.mark.slow
def test_corpora_that_are_not_files_or_are_empty_names_are_refused(tmp_path):
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    for corpus in (str(fifo), "/dev/zero"):
        done = run_cli("run", "--corpus", corpus, "--db", str(tmp_path / "l.duckdb"), timeout=120)
        assert done.returncode == 2
        assert done.stderr.strip() == f"error: corpus {corpus} is not a regular file or a folder"
    (tmp_path / "notes.txt").write_text("private notes " * 1000)  # would have been trained on
    done = run_cli("run", "--corpus", "", "--db", str(tmp_path / "l.duckdb"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: --corpus is empty")
    assert not (tmp_path / "l.duckdb").exists()


X = np.array([1e6, 3e6, 1e7, 3e7, 1e8])


@pytest.mark.parametrize(
    ("y", "says"),
    [
        (np.full(5, 3.0), "loss does not fall as a power of x"),  # was A = -4e-56, alpha < 0
        (3.0 - 1e-9 * X**0.5, "loss does not fall as a power of x"),  # A < 0, alpha < 0
        (0.5 * (X / 1e6) ** -0.2 - 0.3, r"E = -0\.3: a negative irreducible loss"),
    ],
)
def test_power_law_fits_need_a_positive_falling_law(y, says):
    with pytest.raises(FitError, match=says):
        PowerLaw().fit(X, y)
    kept = PowerLaw(force=True).fit(X, y)  # kept when forced, and flagged
    assert kept.identification_problems()
    good = PowerLaw().fit(X, 1.7 + 400 * X**-0.34)  # the closed form it must recover
    assert good.params_ == pytest.approx({"E": 1.7, "A": 400, "alpha": 0.34}, rel=1e-6)


def test_isoflop_on_loss_rising_with_size_is_a_refusal():
    N = np.tile([1e6, 2e6, 4e6, 8e6, 1.6e7], 3)
    C = np.repeat([1e15, 1e16, 1e17], 5)
    with pytest.raises(FitError, match="loss has no minimum at any model size"):
        IsoFLOPFit().fit(N, 2 + 0.1 * np.log(N), C)  # was ZeroDivisionError


@pytest.mark.slow
def test_fit_cli_refuses_degenerate_data_in_one_line(tmp_path, capsys):
    rows = ["N,D,loss"] + [
        f"{n:g},{c / (6 * n):g},{2 + 0.1 * np.log(n)}"
        for c in (1e15, 1e16, 1e17)
        for n in (1e6, 2e6, 4e6, 8e6, 1.6e7)
    ]
    (tmp_path / "rising.csv").write_text("\n".join(rows) + "\n")
    db = str(tmp_path / "l.duckdb")
    code, _, err = call_cli(["import", str(tmp_path / "rising.csv"), "--db", db], capsys)
    assert code == 0, err
    for law in ("isoflop", "power"):
        code, _, err = call_cli(["fit", law, "--db", db], capsys)
        assert code == 2, (law, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
