"""The docstring examples of every module of ``experiments`` run as doctests (``tests/test_docs.py`` does the
same for ``minmax`` and ``nets``)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                 for p in (ROOT / "experiments").rglob("*.py") if p.name != "__main__.py")


def test_the_module_list_is_the_package():
    assert "experiments.common.seeds" in MODULES and "experiments.train.trainer" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module) if t.examples]
    if not tests:
        pytest.skip("no docstring examples in this module")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
