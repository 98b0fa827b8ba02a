"""Every command and code example in the README and docs/ works as written.

A `scaling ...` line that is a concrete command is parsed by the real CLI (its options, their
types, its arguments); a usage synopsis (`[--opt X]`, `a | b`) has every option it names checked
against the command. TOML blocks are sweep specs and must load. The README's examples and the
Python blocks run for real (slow: they fit laws, and the shell example trains a model).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer

from runners.sweeps.spec import loads_spec
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def commands(body: str) -> list[str]:
    """The `scaling ...` command lines of a shell block, continuations joined, comments cut."""
    joined = body.replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line.startswith("scaling ")]


def documented_commands() -> list[tuple[str, str]]:
    return [
        (f"{page.name}: {line}", line)
        for page in PAGES
        for body in blocks(page, "bash")
        for line in commands(body)
    ]


def resolve(root: typer.core.TyperGroup, words: list[str]) -> tuple[object, list[str]]:
    """The (sub)command the words name, and the words left for it."""
    command: object = root
    while words and hasattr(command, "commands") and words[0] in command.commands:
        command = command.commands[words[0]]
        words = words[1:]
    return command, words


def option_names(command: object) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize(("where", "line"), documented_commands())
def test_every_documented_command_parses(where: str, line: str) -> None:
    from cli.app import app

    root = typer.main.get_command(app)
    command, rest = resolve(root, shlex.split(line)[1:])
    assert not hasattr(command, "commands"), f"{where}: no such command"
    synopsis = any(mark in line for mark in ("[", " | ", "..."))
    if synopsis:
        named = {re.sub(r"[\[\]]", "", w).split("=")[0] for w in rest if "--" in w}
        named = {w[w.index("--") :] for w in named}
        unknown = named - option_names(command)
        assert not unknown, f"{where}: unknown options {sorted(unknown)}"
    else:
        command.make_context(command.name, rest)  # raises on an unknown option or bad value


def test_commands_are_found_in_the_docs() -> None:
    """The collector itself: it finds the README's short example and the sweep commands."""
    found = [line for _, line in documented_commands()]
    assert any(line.startswith("scaling predict optimal --compute") for line in found)
    assert any(line.startswith("scaling sweep run") for line in found)
    assert len(found) >= 30


@pytest.mark.parametrize(
    ("where", "text"),
    [(page.name, body) for page in PAGES for body in blocks(page, "toml")],
)
def test_every_documented_spec_loads(where: str, text: str) -> None:
    spec = loads_spec(text)
    assert spec.name == tomllib.loads(text)["name"], where


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("where", "code"),
    [(page.name, body) for page in PAGES for body in blocks(page, "python")],
)
def test_every_python_example_runs(where: str, code: str) -> None:
    done = run_python(code, REPO)
    assert done.returncode == 0, f"{where}:\n{done.stderr[-3000:]}"


@pytest.mark.slow
def test_readme_shell_example_runs(tmp_path: Path) -> None:
    """The README's short example, line by line, in an empty folder: each exits 0."""
    (example,) = [b for b in blocks(REPO / "README.md", "bash") if "scaling sql" in b]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    out = {}
    for line in commands(example):
        argv = [sys.executable, "-m", "cli", *shlex.split(line)[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800)  # fmt: skip
        assert done.returncode == 0, f"{line}:\n{done.stderr[-2000:]}"
        words = shlex.split(line)[1:]
        out[" ".join(words[:2]) if words[0] == "predict" else words[0]] = done.stdout
    assert "prediction interval" in out["predict loss"]
    assert "llama" in out["sql"]


def test_readme_stays_a_front_door() -> None:
    """At most 250 lines, and every docs/ page it links exists (reference lives in docs/)."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    linked = re.findall(r"\]\((docs/[^)#]+)", text)
    assert linked, "the README links no docs/ page"
    missing = [link for link in linked if not (REPO / link).exists()]
    assert not missing, f"README links missing pages: {missing}"


def test_docs_links_resolve() -> None:
    """Relative links between pages and to figures point at files that exist."""
    broken = [
        f"{page.name}: {link}"
        for page in PAGES
        for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text())
        if not (page.parent / link).exists()
    ]
    assert not broken, broken
