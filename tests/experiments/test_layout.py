"""The layout of ``experiments/``: no import cycle, imports flowing one way, no file over 350 lines.

* The static import graph of the ``experiments.*`` modules (every ``import`` statement, also those inside
  functions, read with :mod:`ast`; importing ``a.b.c`` also imports the packages ``a`` and ``a.b``) has no
  cycle, and each job's folder imports only the folders it may (``common`` <- ``train`` <- ``evaluate``,
  ``figures``).
* At run time, importing each module (in a subprocess, with every ``experiments`` module forgotten before
  each one) never meets a module that is still being imported: no module imports one that imports it back.
* No file under ``experiments/`` is longer than 350 lines.

Each checker is first run on a small package with a known cycle, so that it is shown able to fail.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
MAX_LINES = 350

#: What each job's folder may import from experiments (besides itself and the package ``experiments``).
LAYERS = {
    "experiments.common": (),
    "experiments.train": ("experiments.common",),
    "experiments.evaluate": ("experiments.common", "experiments.train"),
    "experiments.figures": ("experiments.common", "experiments.train"),
    "experiments.directions": ("experiments.common", "experiments.train"),
    "experiments.study": ("experiments.common", "experiments.train"),
}


def _modules(root: Path, package: str) -> dict[str, Path]:
    """``{dotted name: file}`` of every module of ``package`` under ``root``."""
    found = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of package it imports}``, from the source of every module of ``package``."""
    modules = _modules(root, package)
    graph = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here.split(".")[:len(here.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in names:  # `from a import b`: b is a module or a name of a
                if target in modules:
                    targets.update([target, *(a for a in _ancestors(target) if a in modules)])
        targets.discard(name)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of the directed graph, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


# The run-time check: wrap __import__ and report every import statement that names a module of the package
# that is still executing (its spec's _initializing flag, which the import system itself uses). Between
# modules, every module of the package is forgotten, so each one is imported as by a fresh interpreter.
_RUNTIME = textwrap.dedent("""
    import builtins, importlib, importlib.util, json, sys

    package, names = sys.argv[1], sys.argv[2:]
    real_import = builtins.__import__
    report = {"cycles": [], "files": {}, "errors": {}}

    def checked_import(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__", "?")
        base = importlib.util.resolve_name("." * level + name, (globals or {}).get("__package__") or "") \\
            if level else name
        parts = base.split(".")
        for target in [".".join(parts[:i]) for i in range(1, len(parts) + 1)] + \\
                [base + "." + f for f in (fromlist or ()) if f != "*"]:
            module = sys.modules.get(target)
            if target.split(".")[0] == package and target != importer and module is not None \\
                    and getattr(getattr(module, "__spec__", None), "_initializing", False):
                report["cycles"].append([importer, target])
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = checked_import
    for name in names:
        for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[loaded]
        try:
            report["files"][name] = importlib.import_module(name).__file__
        except Exception as exc:
            report["errors"][name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report))
""")


def runtime_check(root: Path, package: str, names) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _RUNTIME, package, *names], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def cyclic_package(tmp_path):
    """``cyc``: ``a`` imports ``b`` at the top, ``b`` imports ``a`` at the top; ``c`` imports nothing."""
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc import b\n")
    (pkg / "b.py").write_text("from cyc.a import *\n")
    (pkg / "c.py").write_text("import json\n")
    return tmp_path


def test_the_checkers_find_a_known_cycle(cyclic_package):
    graph = import_graph(cyclic_package, "cyc")
    assert graph["cyc.a"] == {"cyc", "cyc.b"} and graph["cyc.c"] == set()
    assert find_cycle(graph) in (["cyc.a", "cyc.b", "cyc.a"], ["cyc.b", "cyc.a", "cyc.b"])
    report = runtime_check(cyclic_package, "cyc", ["cyc.a", "cyc.c"])
    assert report["cycles"] == [["cyc.b", "cyc.a"]] and not report["errors"]


def test_the_static_import_graph_has_no_cycle():
    graph = import_graph(ROOT, "experiments")
    assert len(graph) > 30 and "experiments.train.trainer" in graph  # the walk found the package
    assert "experiments.train.model" in graph["experiments.train.trainer"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_each_job_imports_only_the_folders_below_it():
    wrong = []
    for name, targets in import_graph(ROOT, "experiments").items():
        for layer, allowed in LAYERS.items():
            if name == layer or name.startswith(layer + "."):
                ok = ("experiments", layer, *allowed)
                wrong += [f"{name} imports {t}" for t in sorted(targets)
                          if not any(t == p or t.startswith(p + ".") for p in ok)]
    assert not wrong, "\n".join(wrong)


def test_every_job_folder_declares_what_it_may_import():
    folders = {f"experiments.{p.name}" for p in (ROOT / "experiments").iterdir()
               if (p / "__init__.py").exists()}
    assert folders == set(LAYERS), "add the new folder to LAYERS"


def test_package_init_files_import_nothing_from_experiments():
    graph = import_graph(ROOT, "experiments")
    inits = [n for n, p in _modules(ROOT, "experiments").items() if p.name == "__init__.py"]
    assert {n: graph[n] for n in inits if graph[n]} == {}


def test_no_module_imports_one_that_imports_it_back():
    names = sorted(_modules(ROOT, "experiments"))
    report = runtime_check(ROOT, "experiments", names)
    assert not report["errors"], report["errors"]
    assert report["cycles"] == [], report["cycles"]
    for name, file in report["files"].items():  # this checkout's modules, not an installed copy
        assert Path(file).resolve().is_relative_to(ROOT / "experiments"), (name, file)


def test_no_file_under_experiments_exceeds_350_lines():
    files = [p for p in (ROOT / "experiments").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert len(files) > 30
    lengths = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in files}
    assert {p: n for p, n in lengths.items() if n > MAX_LINES} == {}
