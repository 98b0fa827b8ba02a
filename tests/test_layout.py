"""The code's layout rules, read from the source: no import cycles between our modules, and
dependencies that point cli -> scaling -> (runners, fits, store)."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("scaling", "runners", "fits", "store", "cli")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Each of our modules and the modules of ours it imports anywhere in it (also inside
    functions and under TYPE_CHECKING: a cycle there is still a cycle of the design)."""
    files = {module_name(p, root): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = {e for e in edges if not name.startswith(e + ".")}  # parents run first
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle_and_a_self_free_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_type_checking(tmp_path):
    pkg = tmp_path / "scaling"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from scaling.b import B\n")  # fmt: skip
    (pkg / "b.py").write_text("def f():\n    from scaling import a\n")
    for other in PACKAGES[1:]:
        (tmp_path / other).mkdir()
    graph = import_graph(tmp_path)
    assert graph["scaling.a"] == {"scaling.b"} and graph["scaling.b"] == {"scaling.a"}
    assert cycles(graph) == [["scaling.a", "scaling.b"]]


def test_no_import_cycles_between_our_modules():
    assert cycles(import_graph()) == []


def test_dependencies_point_from_cli_to_scaling_to_the_rest():
    allowed = {
        "cli": {"cli", "scaling", "runners", "fits", "store"},
        "scaling": {"scaling", "runners", "fits", "store"},
        "runners": {"runners"},
        "fits": {"fits"},
        "store": {"store"},
    }
    wrong = [
        f"{m} imports {t}"
        for m, targets in import_graph().items()
        for t in targets
        if t.split(".")[0] not in allowed[m.split(".")[0]]
    ]
    assert wrong == []


def test_no_class_over_300_lines_and_no_module_over_400():
    too_long = []
    for pkg in ("scaling", "fits", "cli"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            name = str(path.relative_to(REPO))
            source = path.read_text()
            if len(source.splitlines()) > 400:
                too_long.append(f"{name}: {len(source.splitlines())} lines")
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno >= 300:
                    too_long.append(f"{name}: class {node.name}")
    assert too_long == []


LOADERS = {"spec_from_file_location", "run_path", "SourceFileLoader", "exec_module"}


def crossings(root: Path = REPO) -> list[str]:
    """Imports across the line between tests/ and benchmarks/: a test importing a benchmark
    (by name, or loading its file), or a benchmark importing a test."""
    found = []
    for here, other in (("tests", "benchmarks"), ("benchmarks", "tests")):
        for path in sorted((root / here).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                elif isinstance(node, ast.Call):
                    func = node.func
                    called = (
                        func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    )
                    names = [f"{other} (loads a file: {called})"] if called in LOADERS else []
                else:
                    continue
                found += [f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names
                          if n.split(".")[0].split(" ")[0] == other]  # fmt: skip
    return found


def test_the_crossing_finder_sees_imports_and_file_loads(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text(
        "import importlib.util\nfrom benchmarks.study import x\n"
        "spec = importlib.util.spec_from_file_location('s', 'benchmarks/study.py')\n"
    )
    (tmp_path / "benchmarks" / "b.py").write_text("import tests.test_a\nimport testsuite\n")
    assert crossings(tmp_path) == [
        "tests/test_a.py:2 imports benchmarks.study",
        "tests/test_a.py:3 imports benchmarks (loads a file: spec_from_file_location)",
        "benchmarks/b.py:1 imports tests.test_a",
    ]


def test_tests_do_not_import_benchmarks_and_benchmarks_do_not_import_tests() -> None:
    """Code both need lives in the package (e.g. scaling.experiments, cli.fuzzing)."""
    assert crossings() == []
