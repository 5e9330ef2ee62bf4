"""The documentation is tested: complete API pages, executed examples, and a site that builds.

* Every public name (``__all__`` of :mod:`minmax`, :mod:`minmax.torch`, :mod:`nets` and of the public
  modules :mod:`minmax.sets`, :mod:`minmax.maxfunc`, :mod:`minmax.problems`, :mod:`minmax.simplex` and
  their torch counterparts) must appear in an autosummary or auto* directive of ``docs/api/*.rst``, so a
  name added to the code but not to the reference fails here (and a name documented but no longer
  importable fails the Sphinx build).
* Every ``>>>`` example of the pages under ``docs/`` (theory and tutorials) runs as a doctest, one page per
  test, with the page's examples sharing one namespace in order.
* The docstring examples of every module of ``minmax`` and ``nets`` run as doctests (so pytest needs no
  ``--doctest-modules``).
* The whole site builds with warnings as errors (slow: it imports everything and renders every page).
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
HAS_TORCH = importlib.util.find_spec("torch") is not None

OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

# Packages whose whole ``__all__`` must be documented, and public modules whose ``__all__`` must be.
PACKAGES = ["minmax", "minmax.torch", "nets"]
PUBLIC_MODULES = ["minmax.sets", "minmax.maxfunc", "minmax.problems", "minmax.simplex",
                  "minmax.torch.maxfunc", "minmax.torch.problems", "minmax.torch.sets"]
NEEDS_TORCH = {"minmax.torch", "nets", "minmax.torch.maxfunc", "minmax.torch.problems", "minmax.torch.sets"}

_DIRECTIVE = re.compile(
    r"^\s*\.\. (currentmodule|module|automodule|autosummary|autoclass|autofunction|autodata|autoexception"
    r"|automethod|autoattribute)::\s*(\S*)\s*$"
)


# -- which objects the API pages document ------------------------------------------------------------


def _documented_entries() -> tuple[list[tuple[str, ...]], set[str]]:
    """The entries of the API pages, each as its candidate qualified names, and the ``automodule`` modules.

    An entry ``name`` under ``.. currentmodule:: mod`` means ``mod.name``, or ``name`` itself when that is
    already a full path (as Sphinx resolves it).
    """
    entries: list[tuple[str, ...]] = []
    modules: set[str] = set()
    for page in sorted(API.glob("*.rst")):
        current = None
        in_autosummary = False
        autosummary_indent = 0
        for line in page.read_text(encoding="utf-8").splitlines():
            match = _DIRECTIVE.match(line)
            if match:
                kind, arg = match.groups()
                in_autosummary = kind == "autosummary"
                autosummary_indent = len(line) - len(line.lstrip())
                if kind in ("currentmodule", "module", "automodule"):
                    current = arg
                    if kind == "automodule":
                        modules.add(arg)
                elif kind != "autosummary":
                    entries.append(_candidates(current, arg))
                continue
            if not in_autosummary:
                continue
            stripped = line.strip()
            indent = len(line) - len(line.lstrip())
            if stripped and indent <= autosummary_indent:
                in_autosummary = False
            elif stripped and not stripped.startswith(":"):
                entries.append(_candidates(current, stripped.lstrip("~")))
    return entries, modules


def _candidates(current: str | None, name: str) -> tuple[str, ...]:
    return (f"{current}.{name}", name) if current else (name,)


def _attribute_first(parts: list[str]):
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            obj = importlib.import_module(".".join(parts[:i]))
    return obj


def _module_first(parts: list[str]):
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(".".join(parts))


def _resolve(qualname: str) -> list:
    """The objects ``qualname`` can name. Sphinx may read ``a.b`` as attribute ``b`` of ``a`` or as module
    ``a.b``; they differ when a package exports a function named like a submodule (``minmax.gram``)."""
    found = []
    for lookup in (_attribute_first, _module_first):
        try:
            obj = lookup(qualname.split("."))
        except (AttributeError, ImportError):  # minmax's lazy exports import their module on access
            continue
        if not any(obj is f for f in found):
            found.append(obj)
    return found


def _resolve_entry(candidates: tuple[str, ...]) -> list:
    return [obj for name in candidates for obj in _resolve(name)]


def _public(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} defines no __all__: its public names cannot be checked"
    return list(names)


def test_api_pages_parse_to_names():
    entries, modules = _documented_entries()
    # A parser that finds nothing would make the coverage tests below pass vacuously.
    assert ("minmax.min_norm_point", "min_norm_point") in entries
    assert "minmax" in modules


@pytest.mark.parametrize("package", PACKAGES + PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(package):
    if package in NEEDS_TORCH and not HAS_TORCH:
        pytest.skip("torch is not installed")
    entries, modules = _documented_entries()
    if package in PUBLIC_MODULES:
        assert package in modules, f"docs/api/*.rst has no '.. automodule:: {package}'"
    module = importlib.import_module(package)
    # Identity, not spelling: minmax.torch.PGD may be documented as minmax.torch.attacks.PGD.
    documented = {id(obj) for c in entries for obj in _resolve_entry(c)}
    documented |= {id(obj) for m in modules for obj in _resolve(m)}
    missing = [name for name in _public(package) if id(getattr(module, name)) not in documented]
    assert not missing, (
        f"public names of {package} missing from the API reference (docs/api/*.rst): {missing}; add them "
        "to an autosummary list"
    )


def test_api_pages_name_only_existing_objects():
    entries, modules = _documented_entries()
    broken = sorted(
        c[0] for c in entries + [(m,) for m in modules]
        if not _needs_missing_torch(c[0]) and not _resolve_entry(c)
    )
    assert not broken, f"docs/api/*.rst documents names that do not exist: {broken}"


def _needs_missing_torch(qualname: str) -> bool:
    return not HAS_TORCH and (qualname.startswith("minmax.torch") or qualname.startswith("nets"))


# -- the pages' examples -----------------------------------------------------------------------------

PAGES = sorted(
    p for p in DOCS.rglob("*.rst")
    if "_build" not in p.parts and "generated" not in p.parts and ">>>" in p.read_text(encoding="utf-8")
)


def _page_id(path: Path) -> str:
    return str(path.relative_to(DOCS))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_page_examples_run(page):
    if "import torch" in page.read_text(encoding="utf-8") and not HAS_TORCH:
        pytest.skip("torch is not installed")
    result = doctest.testfile(
        str(page), module_relative=False, optionflags=OPTIONFLAGS, verbose=False, report=True,
        encoding="utf-8",
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {_page_id(page)} failed"


# -- the docstrings' examples ------------------------------------------------------------------------


def _modules() -> list[str]:
    found = []
    for package in ("minmax", "nets"):
        pkg = importlib.import_module(package)
        found.append(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}."):
            found.append(info.name)
    return sorted(found)


@pytest.mark.parametrize("module_name", _modules())
def test_docstring_examples_run(module_name):
    top = module_name.split(".")[:2]
    if not HAS_TORCH and (top[0] == "nets" or top == ["minmax", "torch"]):
        pytest.skip("torch is not installed")
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    tests = [t for t in finder.find(module, module_name) if t.examples]
    if not tests:
        pytest.skip("no docstring examples in this module")
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} docstring examples of {module_name} failed"
    )


# -- the site ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_site_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("furo")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
           str(tmp_path / "html")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sphinx -W failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
