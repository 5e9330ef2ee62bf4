"""The distribution ships the library only: no generic top-level names (``nets``, ``experiments``,
``benchmarks``, ``tests``) in a user's site-packages.

The check reads the package list setuptools builds the wheel from (``[tool.setuptools.packages.find]`` of
``pyproject.toml``, evaluated with setuptools' own finder on this checkout), so adding ``nets*`` back, or
widening the pattern to everything, fails here without building a wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
setuptools = pytest.importorskip("setuptools")


def _packaged() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    find = config["tool"]["setuptools"]["packages"]["find"]
    return setuptools.find_packages(
        where=str(ROOT), include=find.get("include", ("*",)), exclude=find.get("exclude", ())
    )


def test_the_wheel_ships_only_minmax():
    packages = _packaged()
    assert "minmax" in packages and "minmax.minnorm" in packages and "minmax.torch" in packages
    outside = sorted({p.split(".")[0] for p in packages} - {"minmax"})
    assert not outside, f"the wheel would install top-level packages {outside}"


def test_every_subpackage_of_minmax_is_shipped():
    # A subpackage that the include pattern misses would be importable from a checkout but absent after
    # `pip install .`.
    on_disk = sorted(
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "minmax").rglob("__init__.py")
    )
    assert sorted(p for p in _packaged() if p.startswith("minmax")) == on_disk
