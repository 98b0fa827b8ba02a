"""Tables read at 80 columns: nothing cut to "…", numbers compact (3e-3, 1.2M)."""

from __future__ import annotations

import pytest

from cli.common import console, format_value
from scaling import datasets
from store.db import connect
from store.imports import import_file
from tests.conftest import call_cli

SPEC = """
name = "w"
[fixed]
seq_len = 32
batch_size = 8
eval_tokens = 1024
[axes]
size = [{ d_model = 32, n_layers = 1, n_heads = 2 }, { d_model = 48, n_layers = 2, n_heads = 2 }]
tokens = [4096, 8192]
lr = { logspace = [1e-3, 3e-2, 3] }
arch = ["llama", "cosformer2"]
seed = [0, 1]
"""


@pytest.fixture
def narrow(monkeypatch):
    monkeypatch.setattr(console, "width", 80)


def _fits(text: str) -> None:
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= 80


def test_sweep_plan_fits_80_columns(tmp_path, capsys, narrow):
    spec = tmp_path / "w.toml"
    spec.write_text(SPEC)
    code, out, err = call_cli(["sweep", "plan", str(spec), "--db", str(tmp_path / "x.db")], capsys)
    assert code == 0, err
    _fits(out)
    assert "5.48e-3" in out and "cosformer2" in out and "1.12B" in out
    assert "all n_heads 2, batch_size 8" in out  # constant columns are said once


def test_runs_fits_80_columns(tmp_path, capsys, narrow):
    db = tmp_path / "runs.duckdb"
    with connect(db) as con:
        import_file(con, datasets.path("chinchilla-epoch"), "chinchilla")
    code, out, err = call_cli(["runs", "--db", str(db), "--limit", "5"], capsys)
    assert code == 0, err
    _fits(out)
    header = next(line for line in out.splitlines() if line.startswith("run "))
    assert header.split() == ["run", "sweep", "arch", "N", "D", "lr", "bs", "status", "loss",
                              "wall", "s"]  # fmt: skip


def test_small_numbers_are_written_with_an_exponent():
    assert format_value(0.003) == "3e-3" and format_value(0.0031623) == "3.16e-3"
    assert format_value(-5e-5) == "-5e-5" and format_value(0.03) == "0.03"
    assert format_value(0.0) == "0"


def test_every_command_summary_in_help_is_a_whole_sentence(capsys, monkeypatch):
    from cli.app import app

    summaries = [c.help or c.callback.__doc__ for c in app.registered_commands]
    summaries += [g.typer_instance.info.help for g in app.registered_groups]
    for text in summaries:
        first = text.strip().split("\n\n")[0]
        assert "\n" not in first and first.endswith("."), first  # typer shows this paragraph


def test_a_note_the_same_in_every_row_is_said_once_and_an_empty_one_not_at_all(capsys, narrow):
    """The schedule law's held-out table repeated one note in every row, cut to "…"."""
    import pandas as pd

    from cli.common import print_frame

    note = "|measured / predicted - 1| at its logged points"
    frame = pd.DataFrame({"held out": ["a", "b"], "worst": [0.1, 0.2], "note": [note, note]})
    print_frame(frame, title="each run held out", squeeze="note")
    out = capsys.readouterr().out
    assert out.count("measured") == 1 and "…" not in out
    print_frame(frame.assign(note=["", ""]), title="each run held out", squeeze="note")
    out = capsys.readouterr().out
    assert "note" not in out and "worst" in out
