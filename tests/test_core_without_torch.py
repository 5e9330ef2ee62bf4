"""The core never imports torch, nets, experiments, cvxpy or matplotlib (DESIGN: "importing minmax must work
with only NumPy installed"). A subprocess makes those imports fail and uses every core module."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "nets", "experiments", "cvxpy", "matplotlib")

SCRIPT = textwrap.dedent(
    f"""
    import sys

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError("blocked by the test: " + name)

    sys.meta_path.insert(0, Block())
    import numpy as np
    import minmax
    import minmax.descent_certificate, minmax.maxfunc, minmax.numerical, minmax.problems, minmax.sets
    import minmax.simplex

    for name in minmax.__all__:
        getattr(minmax, name)
    grads = np.array([[1.0, 0.0], [-0.6, 0.8]])
    res = minmax.steepest_descent(grads)
    assert res.qp.success and abs(res.slope + np.linalg.norm(grads.sum(0)) / 2) < 1e-12
    for method in ("wolfe", "apg", "fw-away", "fw-pairwise"):
        assert minmax.min_norm_point(minmax.gram(grads), method=method).success
    h = minmax.maxfunc.ddi(minmax.problems.Figure1(), [2.0, 0.05], iterations=2, rng=0)
    assert len(h.step_sizes) == 2
    loaded = sorted(k for k in sys.modules if k.split(".")[0] in {BLOCKED!r})
    assert not loaded, loaded
    print("ok")
    """
)


def test_core_works_without_torch_and_optional_packages():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
