"""Generators of bad command lines and the in-process call that checks the CLI's refusal rule.

Every generated input (`scaling run`, `sweep plan` of a generated spec, `predict`, `fit`,
`sql`, `runs`, `import`, `report` with values people mistype) must end in exit 0 or in a
refusal: exit 2 with one line on stderr, never a traceback. tests/test_fuzz_cli.py holds the
property for a fixed sample; benchmarks/fuzz_cli.py runs the same generators for many more.
Needs hypothesis (the `test` extra): only those two import this module.
"""

from __future__ import annotations

import contextlib
import io
import os
import traceback
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from hypothesis import strategies as st

# Values people mistype: signs, overflow, NaN, units, separators, empty, shell debris.
BAD_WORDS = [
    "", " ", "-1", "0", "-0", "nan", "inf", "-inf", "1e400", "1e30", "1e20", "1e12", "9" * 30,
    "2M", "1.5", "0.5", "1e-400", "0x10", "1,000", "1_000", "--", "-", "'", '"', ";", ";;;",
    "abc", "7B", "1.4T", "500k", "1e", "e5", "NULL", "None", "true", "[]", "{}", "%s", "\\",
]  # fmt: skip
TOML_VALUES = [
    "1e30", "1e300", "-1", "0", "1000000000", "1000000", "99999999999999999999", "2147483648",
    '"abc"', '""', '"2M"', '"1e30"', "true", "[]", "{}", "[1, \"a\"]", "nan", "inf", "-inf",
    "0.5", "1.5", "{ logspace = [1, 0, 3] }", "{ logspace = [1e-3, 1e-1, 100000] }",
    "{ logspace = [0, 1, 3] }", "[{ d_model = 0, n_layers = 1, n_heads = 1 }]",
    "[{ d_model = 1e9, n_layers = 1, n_heads = 1 }]", '["nosuchsize"]', '"grid"', '"isoflop"',
]  # fmt: skip
SPEC_KEYS = [
    "fixed.d_model", "fixed.n_layers", "fixed.n_heads", "fixed.seq_len", "fixed.batch_size",
    "fixed.tokens", "fixed.lr", "fixed.seed", "fixed.warmup", "fixed.eval_tokens",
    "fixed.eval_every", "fixed.vocab_size", "fixed.beta1", "fixed.precision", "fixed.corpus",
    "axes.lr", "axes.tokens", "axes.size", "axes.seed", "axes.arch", "axes.batch_size",
    "design.kind", "design.budgets", "design.refine", "design.max_runs", "name",
]  # fmt: skip
IMPOSSIBLE_TARGETS = ["1e299", "1e-300", "inf", "-inf", "nan", "0.5", "0", "-1", '"abc"', "1e400"]
ADAPTIVE_SPEC = """name = "fuzz-adaptive"
[fixed]
seq_len = 32
batch_size = 8
lr = 3e-3
[design]
kind = "adaptive"
target = { @TARGET }
budget_flops = 1e15
[design.candidates]
size = [{ d_model = 32, n_layers = 1, n_heads = 2 }]
tokens = [8192, 16384]
"""
RUN_OPTIONS = [
    "--d-model", "--n-layers", "--n-heads", "--seq-len", "--batch-size", "--tokens", "--lr",
    "--warmup", "--seed", "--eval-every", "--eval-tokens", "--mup-base-width", "--arch",
    "--size", "--schedule", "--precision", "--parametrization", "--device",
]  # fmt: skip
LAWS = ["chinchilla", "isoflop", "power", "lr", "lr-law", "bs-law", "nosuchlaw", ""]
# Issues 24 and 26: where --out may point (@LOG is the run log, @DIR a scratch folder),
# strings Rich would read as markup, import mappings that are not one value per row.
OUT_TARGETS = [
    "@LOG", "@DIR", "@DIR/missing/x.csv", "/dev/full", "/dev/null", "", " ",
    "@DIR/" + "a" * 300, "@DIR/out.csv", "@DIR/out.json", "@DIR/out.parquet", "@DIR/log-link",
]  # fmt: skip
MARKUP = ["[/]", "[bold]x", "[/x]", "[red]", "[link=file:///etc/passwd]x[/link]", "\\[/]"]
MAPPINGS = [
    "loss=*", "loss=COLUMNS(*)", "loss=sum(loss)", "loss=loss, loss=2", "loss=count(*)",
    "loss=lag(loss) OVER ()", "loss=* EXCLUDE (N)", "loss=loss*2", "seed=-5", "wall_s=-5",
    "loss=(SELECT max(loss) FROM file)", "loss=loss; DROP TABLE runs", "N=N,N=D",
]  # fmt: skip
SQL_TEXTS = [
    "SELECT 'a' AS x, 'b' AS x", "SELECT '[/]' AS arch", "SELECT * FROM runs",
    "SELECT * FROM duckdb_settings() WHERE name LIKE '%external%'", "SELECT 1/0",
    "SELECT * FROM range(100000)", "SELECT 'nan'::DOUBLE, 'inf'::DOUBLE", "SELECT [1, 2] AS l",
]  # fmt: skip
X = ["N", "D", "C", "width"]  # a power law's variables
NUMBERS = ["1e299", "1e-300", "1e308", "1e-9", "0.5", "1e30"]


def words() -> st.SearchStrategy[str]:
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=12)
    return st.one_of(st.sampled_from(BAD_WORDS + MARKUP + NUMBERS), printable)


@st.composite
def run_argv(draw: st.DrawFn) -> list[str]:
    """`scaling run` with bad values; a trailing invalid setting makes sure nothing trains."""
    argv = ["run"]
    for option in draw(st.lists(st.sampled_from(RUN_OPTIONS), min_size=1, max_size=3)):
        argv += [option, draw(words())]
    guard = draw(st.sampled_from([["--lr", "-1"], ["--d-model", "0"], ["--tokens", "1"]]))
    if guard[0] in argv:  # the generated value may be valid: guard with another setting
        guard = ["--batch-size", "0"] if guard[0] != "--batch-size" else ["--lr", "-1"]
    return argv + guard


@st.composite
def spec_text(draw: st.DrawFn) -> str:
    """A small valid spec with one to three keys set to generated values, or garbage."""
    roll = draw(st.integers(0, 9))
    if roll == 0:
        return draw(st.text(max_size=60))
    if roll == 1:  # issue 26: adaptive targets no sweep can serve
        value = draw(st.sampled_from(IMPOSSIBLE_TARGETS))
        ask = draw(
            st.sampled_from(['ask = "loss", N = {v}, D = {v}', 'ask = "optimal", compute = {v}'])
        )
        return ADAPTIVE_SPEC.replace("@TARGET", ask.format(v=value))
    tables: dict[str, dict[str, str]] = {
        "fixed": {"seq_len": "32", "batch_size": "8", "eval_tokens": "1024"},
        "axes": {"size": "[{ d_model = 32, n_layers = 1, n_heads = 2 }]", "tokens": "[8192]"},
        "design": {},
    }
    top = {"name": '"fuzz"'}
    for key in draw(st.lists(st.sampled_from(SPEC_KEYS), min_size=1, max_size=3)):
        value = draw(st.one_of(st.sampled_from(TOML_VALUES), st.integers().map(str)))
        if "." in key:
            table, name = key.split(".")
            tables[table][name] = value
        else:
            top[key] = value
    lines = [f"{k} = {v}" for k, v in top.items()]
    for table, values in tables.items():
        lines += [f"[{table}]", *(f"{k} = {v}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


@st.composite
def query_argv(draw: st.DrawFn) -> list[str]:
    """predict, fit, backtest, sql, runs and import with bad values."""
    kind = draw(st.sampled_from(["predict", "fit", "backtest", "sql", "runs", "import", "report"]))
    if kind == "predict":
        sub = draw(st.sampled_from(["loss", "optimal", "lr", "bs", "crossover", "power"]))
        argv = ["predict", sub]
        if sub == "power":
            argv += ["--at", draw(words()), "--x", draw(st.one_of(words(), st.sampled_from(X)))]
        elif sub == "crossover":
            argv += [draw(words()), draw(words()), "--min-compute", draw(words())]
        elif sub == "optimal":
            argv += [draw(st.sampled_from(["--compute", "--hours"])), draw(words())]
            if draw(st.booleans()):
                argv += ["--seq-len", draw(words())]
        elif sub == "loss" and draw(st.booleans()):
            argv += ["--compute", draw(words()), "--M", draw(words())]
        else:
            argv += ["--D", draw(words())] + ([] if sub == "bs" else ["--N", draw(words())])
        option = draw(st.sampled_from(["--level", "--arch", "--where", "--source", "--U", None]))
        return argv + ([option, draw(words())] if option else [])
    if kind == "fit":
        argv = ["fit", draw(st.sampled_from(LAWS))]
        option = draw(st.sampled_from(["--x", "--E", "--form", "--level", "--bootstrap", None]))
        return argv + ([option, draw(words())] if option else [])
    if kind == "backtest":
        option = draw(st.sampled_from(["--holdout", "--fraction", "--x", "--E", "--method"]))
        return ["backtest", draw(st.sampled_from(LAWS)), option, draw(words())]
    if kind == "sql":
        argv = ["sql", draw(st.one_of(words(), st.sampled_from(SQL_TEXTS), st.text(max_size=40)))]
        if draw(st.booleans()):
            argv += ["--format", draw(st.sampled_from(["table", "csv", "json", "parquet", "x"]))]
        if draw(st.booleans()):
            argv += ["--out", draw(st.sampled_from(OUT_TARGETS))]
        return argv
    if kind == "runs":
        option = draw(st.sampled_from(["--limit", "--status", "--arch", "--sweep"]))
        return ["runs", option, draw(words())]
    if kind == "report":  # only --out values that are refused: a report draws for minutes
        return ["report", "--out", draw(st.sampled_from(["@LOG", "/dev/null", "", "@DIR/x.csv"]))]
    file = draw(st.sampled_from(["@DIR/good.csv", "@DIR/fifo.csv", "@DIR", "@LOG"]))
    argv = ["import", draw(st.one_of(words(), st.just(file)))]
    argv += ["--columns", draw(st.one_of(words(), st.sampled_from(MAPPINGS)))]
    if draw(st.booleans()):
        argv += ["--source", draw(st.one_of(words(), st.sampled_from(MARKUP)))]
    return argv


@dataclass
class Outcome:
    argv: list[str]
    code: int
    out: str
    err: str
    traceback: str | None = None

    def problem(self) -> str | None:
        """Why this outcome breaks the property (None: a clean refusal or success)."""
        if self.traceback:
            return "traceback"
        if self.code not in (0, 2):
            return f"exit {self.code}"
        if "Traceback" in self.out + self.err:
            return "traceback text"
        if self.code == 2 and len(self.err.strip().splitlines()) != 1:
            return f"{len(self.err.strip().splitlines())} lines on stderr"
        return None


def call(argv: list[str]) -> Outcome:
    """`scaling ARGV` in this process, its output captured; a raised exception is a finding."""
    from cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code, trace = 0, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # any escape is what the fuzzer looks for
            code, trace = 1, traceback.format_exc()
    return Outcome(argv, code, out.getvalue(), err.getvalue(), trace)


def plan_outcome(text: str, folder: Path) -> Outcome:
    """`sweep plan` of a generated spec; if accepted, its runs must fit the run log's columns."""
    from runners.sweeps.designs import Planner
    from runners.sweeps.spec import loads_spec

    spec = folder / "spec.toml"
    spec.write_text(text, encoding="utf-8")
    outcome = call(["sweep", "plan", str(spec), "--db", str(folder / "plan.duckdb")])
    if outcome.code == 0 and outcome.traceback is None:
        try:
            _insert_planned(Planner(loads_spec(text))(), folder / "columns.duckdb")
        except Exception:
            outcome.code, outcome.traceback = 1, traceback.format_exc()
    return outcome


def _insert_planned(configs: list, db: Path) -> None:
    from runners.corpus import load_corpus
    from runners.results import config_row
    from store.db import connect
    from store.runs import mark_running

    with connect(db) as con:
        for config in configs:
            corpus = load_corpus(config.train.corpus)
            mark_running(con, config_row(config, corpus.name, corpus.sha256, "fuzz"))
        con.execute("DELETE FROM runs")


def prepare_log(db: Path) -> None:
    """A run log with a handful of imported runs, so queries reach the fits and not 'no log';
    beside it a good CSV, a FIFO and a link to the log, for import and --out to meet."""
    from store.db import connect
    from store.imports import import_file

    csv = db.with_suffix(".csv")
    pd.DataFrame(
        {"N": [1e6, 2e6, 4e6, 1e6], "D": [1e8, 1e8, 2e8, 2e8], "loss": [3.1, 3.0, 2.9, 2.8]}
    ).to_csv(csv, index=False)
    with connect(db) as con:
        import_file(con, csv, "fuzz")
    pd.read_csv(csv).assign(arch="[/]").to_csv(db.parent / "good.csv", index=False)
    os.mkfifo(db.parent / "fifo.csv")
    (db.parent / "log-link").symlink_to(db)


def resolve(argv: list[str], db: Path) -> list[str]:
    """The generated argv with @LOG as the run log and @DIR as its folder."""
    return [a.replace("@LOG", str(db)).replace("@DIR", str(db.parent)) for a in argv]


def log_intact(db: Path) -> bool:
    """The run log still opens and holds its four runs (no --out replaced it)."""
    import duckdb

    try:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute("SELECT count(*) FROM runs").fetchall()[0][0] >= 4
    except duckdb.Error:
        return False
