r"""The probe's statistics: per-batch slopes, descent fractions, the best step, mean ± SE over batches.

Everything here is NumPy on arrays the probe filled (:mod:`experiments.directions.probe`), so the estimators
are tested on numbers with a known answer. For one direction γ and N batches, the inputs are
:math:`\hat\varphi_b(\theta)` (``phi0``, shape (N,)) and :math:`\hat\varphi_b(\theta + t_j\gamma_b)` (``phi``,
shape (N, T)) on the grid :math:`0 < t_1 < \dots < t_T`.

- **Slope** (per batch): the forward difference :math:`s_b = (\hat\varphi_b(\theta + t_1\gamma_b) -
  \hat\varphi_b(\theta)) / t_1`, an estimate of the one-sided directional derivative
  :math:`D_\gamma\varphi_b(\theta)` (Danskin's formula, the paper's eq. 4).
- **Descent fraction**: the share of batches with :math:`s_b < 0`.
- **Change curve**: :math:`\Delta_b(t_j) = \hat\varphi_b(\theta + t_j\gamma_b) - \hat\varphi_b(\theta)`; its
  mean over batches is plotted, and the **best t** is the grid point of lowest mean change; the **decrease**
  reported there is :math:`-\overline{\Delta}(t^\star)`.
- **Paired comparison** with a reference direction (DDi's): per batch the difference of the two slopes and
  of the two changes at every t. Both directions are probed on the same batches from the same random
  start, so the batch-to-batch spread of the loss cancels and the SE of the difference is much smaller than
  either direction's own.
- **Uncertainty**: the standard error :math:`\mathrm{sd}/\sqrt{n}` (sample standard deviation, ``ddof=1``)
  over the n batches where the number is defined (a direction that is zero in a batch, e.g. DDi at a
  stationary point, has no unit vector there and is left out); None in JSON when n < 2.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["direction_statistics", "mean_se", "paired_statistics"]


def mean_se(values) -> dict:
    """Mean, standard error of the mean and count of the finite entries of ``values``.

    Returns
    -------
    dict
        ``{"mean": float or None, "se": float or None, "n": int}``: None (JSON null) for the mean when no
        entry is finite, for the SE when fewer than two are.

    Examples
    --------
    >>> mean_se([1.0, 2.0, 3.0, float("nan")])
    {'mean': 2.0, 'se': 0.5773502691896258, 'n': 3}
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    mean = float(v.mean()) if n else None
    se = float(v.std(ddof=1) / math.sqrt(n)) if n >= 2 else None
    return {"mean": mean, "se": se, "n": n}


def _validated(phi0, phi, grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    phi0 = np.asarray(phi0, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 1 or not np.all(np.isfinite(grid)) or not np.all(grid > 0):
        raise ValueError(f"grid must be a non-empty vector of positive finite steps t, got {grid.tolist()}")
    if np.any(np.diff(grid) <= 0):
        raise ValueError(f"grid must be strictly increasing, got {grid.tolist()}")
    if phi0.ndim != 1 or phi.shape != (phi0.size, grid.size):
        raise ValueError(f"phi0 must have shape (N,) and phi shape (N, {grid.size}) for a grid of "
                         f"{grid.size} steps; got {phi0.shape} and {phi.shape}")
    return phi0, phi, grid


def direction_statistics(phi0, phi, grid, *, model_slope=None) -> dict:
    r"""The probe's numbers for one direction over N batches (see the module notes for the estimators).

    Parameters
    ----------
    phi0 : array_like of shape (N,)
        :math:`\hat\varphi_b(\theta)`, the probe attack's robust loss of batch b at the checkpoint.
    phi : array_like of shape (N, T)
        :math:`\hat\varphi_b(\theta + t_j\gamma_b)`; NaN in a row where the direction was undefined.
    grid : array_like of shape (T,)
        The steps :math:`0 < t_1 < \dots < t_T`.
    model_slope : array_like of shape (N,), optional
        :math:`\max_i\langle\gamma_b, g_i\rangle` over the m gradients of the direction attacks (the slope
        of the linearized finite-set loss that DDi minimizes), summarized the same way.

    Returns
    -------
    dict
        ``slope`` (mean ± SE over batches of :math:`s_b`), ``slopes`` (the N values, None where undefined),
        ``descent_batches`` / ``batches`` / ``descent_fraction``, ``best_t``, ``decrease_at_best_t``
        (mean ± SE of :math:`-\Delta_b(t^\star)`), ``curve`` (``t`` from 0, mean and SE of the change and of
        :math:`\hat\varphi` itself at every t) and, when given, ``model_slope``.

    Raises
    ------
    ValueError
        If the grid is not strictly increasing positive numbers or the shapes disagree.

    Examples
    --------
    Two batches whose robust loss is exactly :math:`1 + a_b t` along the direction, :math:`a = (-2, 1)`:

    >>> import numpy as np
    >>> grid = np.array([0.01, 0.1])
    >>> phi = 1 + np.array([[-2.0], [1.0]]) * grid
    >>> s = direction_statistics([1.0, 1.0], phi, grid)
    >>> [round(v, 12) for v in s["slopes"]], s["descent_fraction"], round(s["slope"]["mean"], 12)
    ([-2.0, 1.0], 0.5, -0.5)
    """
    phi0, phi, grid = _validated(phi0, phi, grid)
    change = phi - phi0[:, None]
    slopes = change[:, 0] / grid[0]
    defined = np.isfinite(slopes)
    descent = int(np.sum(slopes[defined] < 0))
    batches = int(defined.sum())
    mean_change = np.array([mean_se(change[:, j])["mean"] for j in range(grid.size)], dtype=float)
    if np.any(np.isfinite(mean_change)):
        best = int(np.nanargmin(mean_change))
        best_t, decrease = float(grid[best]), mean_se(-change[:, best])
    else:
        best_t, decrease = None, mean_se([])
    curve_change = [mean_se(np.zeros(batches))] + [mean_se(change[:, j]) for j in range(grid.size)]
    curve_phi = [mean_se(phi0[defined])] + [mean_se(phi[:, j]) for j in range(grid.size)]
    out = {
        "slope": mean_se(slopes),
        "slopes": [float(v) if np.isfinite(v) else None for v in slopes],
        "descent_batches": descent,
        "batches": batches,
        "descent_fraction": descent / batches if batches else None,
        "best_t": best_t,
        "decrease_at_best_t": decrease,
        "curve": {
            "t": [0.0, *grid.tolist()],
            "change_mean": [c["mean"] for c in curve_change],
            "change_se": [c["se"] for c in curve_change],
            "phi_mean": [c["mean"] for c in curve_phi],
            "phi_se": [c["se"] for c in curve_phi],
        },
    }
    if model_slope is not None:
        model_slope = np.asarray(model_slope, dtype=np.float64)
        if model_slope.shape != phi0.shape:
            raise ValueError(f"model_slope must have shape {phi0.shape}, got {model_slope.shape}")
        out["model_slope"] = mean_se(model_slope)
    return out


def paired_statistics(phi0, phi, phi_ref, grid) -> dict:
    r"""Direction a against a reference direction r on the same batches: the per-batch differences.

    Parameters
    ----------
    phi0 : array_like of shape (N,)
        :math:`\hat\varphi_b(\theta)`, shared by both directions.
    phi, phi_ref : array_like of shape (N, T)
        :math:`\hat\varphi_b(\theta + t_j\gamma_b)` along direction a and along the reference.
    grid : array_like of shape (T,)

    Returns
    -------
    dict
        ``slope_difference``: mean ± SE of :math:`s_b^a - s_b^r`; ``change_difference``: the same for
        :math:`\Delta_b^a(t_j) - \Delta_b^r(t_j)` at every t of the grid; ``batches_steeper``: batches where
        a's slope is below the reference's, of ``batches`` where both are defined.

    Examples
    --------
    >>> import numpy as np
    >>> grid = np.array([0.1, 0.2])
    >>> phi0 = np.array([1.0, 2.0])
    >>> along_a = phi0[:, None] + np.array([[-1.0], [-4.0]]) * grid   # slopes -1 and -4
    >>> along_ddi = phi0[:, None] + np.array([[-2.0], [-2.0]]) * grid  # slopes -2 and -2
    >>> p = paired_statistics(phi0, along_a, along_ddi, grid)
    >>> round(p["slope_difference"]["mean"], 12), p["batches_steeper"], p["batches"]
    (-0.5, 1, 2)
    """
    phi0, phi, grid = _validated(phi0, phi, grid)
    _, phi_ref, _ = _validated(phi0, phi_ref, grid)
    diff = phi - phi_ref  # = the difference of the changes, phi0 cancels
    slope = diff[:, 0] / grid[0]
    defined = np.isfinite(slope)
    return {
        "slope_difference": mean_se(slope),
        "change_difference": [mean_se(diff[:, j]) for j in range(grid.size)],
        "batches_steeper": int(np.sum(slope[defined] < 0)),
        "batches": int(defined.sum()),
    }
