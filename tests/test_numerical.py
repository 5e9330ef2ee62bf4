"""The numerical one- and two-sided limits of Definition 1 (minmax.numerical) on functions with known
derivatives: smooth ones, a kink that only the larger steps meet, explicit steps, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from minmax import one_sided_derivative, two_sided_derivative


def test_numerical_limits_on_smooth_functions():
    f = lambda th: np.exp(th[0]) * np.cos(3 * th[1])  # noqa: E731
    theta, gamma = np.array([0.3, 0.2]), np.array([1.0, -2.0])
    exact = np.exp(0.3) * (np.cos(0.6) + 6 * np.sin(0.6))
    one = one_sided_derivative(f, theta, gamma)
    assert one.kind == "one-sided" and one.forward is None and one.asymmetry is None
    assert one.estimate == pytest.approx(exact, abs=1e-9)
    assert abs(one.estimate - exact) <= 10 * one.error
    two = two_sided_derivative(f, theta, gamma)
    assert two.estimate == pytest.approx(exact, abs=1e-9)
    assert abs(two.asymmetry) <= 1e-8
    assert len(two.steps) == len(two.quotients) == 12 and np.all(np.diff(two.steps) < 0)


def test_kink_met_only_by_large_steps():
    # φ(t) = |t - 0.003|: the quotient is -1 for t < 0.003, something else beyond.
    res = one_sided_derivative(lambda th: abs(th[0] - 0.003), np.zeros(1), np.ones(1))
    assert res.estimate == pytest.approx(-1.0, abs=1e-10) and res.error < 1e-9
    assert res.quotients[0] != pytest.approx(-1.0)


def test_explicit_steps():
    res = one_sided_derivative(np.sin, np.array(0.5), np.array(1.0), steps=[0.1, 0.07, 0.03, 0.02, 0.01])
    assert res.estimate == pytest.approx(np.cos(0.5), abs=1e-7)
    np.testing.assert_array_equal(res.steps, [0.1, 0.07, 0.03, 0.02, 0.01])


def test_numerical_limit_bad_input():
    f = lambda th: float(np.sum(th))  # noqa: E731
    with pytest.raises(ValueError, match="shape"):
        one_sided_derivative(f, np.zeros(2), np.ones(3))
    with pytest.raises(ValueError, match="zero"):
        one_sided_derivative(f, np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="decreasing"):
        one_sided_derivative(f, np.zeros(2), np.ones(2), steps=[0.1, 0.2])
    with pytest.raises(ValueError, match="at least 2"):
        one_sided_derivative(f, np.zeros(2), np.ones(2), steps=[0.1])
    with pytest.raises(ValueError, match="ratio"):
        one_sided_derivative(f, np.zeros(2), np.ones(2), ratio=1.5)
    with pytest.raises(ValueError, match="finite"):
        one_sided_derivative(f, np.array([np.nan, 0]), np.ones(2))
    with pytest.raises(ValueError, match="phi returned nan at theta - "):
        two_sided_derivative(lambda th: np.sqrt(th[0]) if th[0] >= 0 else np.nan, np.zeros(1), np.ones(1))
    with pytest.raises(TypeError, match="callable"):
        one_sided_derivative(3.0, np.zeros(1), np.ones(1))
    with pytest.raises(TypeError, match="real scalar"):
        one_sided_derivative(lambda th: th, np.zeros(2), np.ones(2))
