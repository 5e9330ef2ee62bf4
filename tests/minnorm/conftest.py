"""The QP tests run every method of ``minmax.minnorm.METHODS``; cvxpy's only where the extra is installed."""

from __future__ import annotations

import importlib.util

import pytest

_HAS_CVXPY = importlib.util.find_spec("cvxpy") is not None


def pytest_collection_modifyitems(config, items):
    """Skip the tests parametrized with ``method="cvxpy"`` when cvxpy is missing (``minmax[cvxpy]``)."""
    if _HAS_CVXPY:
        return
    skip = pytest.mark.skip(reason="method 'cvxpy' needs the optional cvxpy: pip install 'minmax[cvxpy]'")
    for item in items:
        params = getattr(item, "callspec", None)
        if params is not None and params.params.get("method") == "cvxpy":
            item.add_marker(skip)
