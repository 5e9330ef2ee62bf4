r"""The optimality certificate of the minimum-norm-point problem (its duality gap), and input validation.

For feasible :math:`\alpha \in \Delta` and :math:`f(\alpha) = \alpha^\top G\alpha`, convexity gives

.. math::

    f^* \ge f(\alpha) + \nabla f(\alpha)^\top(\alpha^* - \alpha)
        \ge f(\alpha) - 2\bigl(\alpha^\top G\alpha - \min_i (G\alpha)_i\bigr)
        = f(\alpha) - \operatorname{gap}(\alpha),

so the Frank-Wolfe gap bounds the suboptimality, and with :math:`x = M\alpha`, :math:`x^* = M\alpha^*`,
:math:`\|x - x^*\|^2 \le f(\alpha) - f^* \le \operatorname{gap}(\alpha)` (the min-norm point is the
projection of the origin onto a convex set). Everything here is recomputed from ``G`` and the weights: a
solver's internal state is never trusted.

The stopping rule is ``gap <= max(rtol * f, floor)``. The floor is the rounding error of the computed gap
itself, :math:`c\,m\,u\,(\alpha^\top|G|\alpha + \max_i(|G|\alpha)_i) + 8\,m\,\eta` with :math:`u` the
float64 unit round-off and :math:`\eta = 2^{-1074}` the absolute error of a product that underflows (the
term matters only for Gram matrices near the subnormal range): a gap below it cannot be told apart from
zero. It is scale-aware (tighter than a floor proportional to :math:`\max_i G_{ii}` when the gradient
norms are spread over many orders of magnitude).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import array_api_compat
import numpy as np
from scipy.linalg.lapack import dpotrf

from .result import MESSAGES, MinNormResult, Status

__all__ = [
    "DEFAULT_TOL",
    "GapTest",
    "MinNormCertificate",
    "check_min_norm",
    "fw_gap",
    "gap_tolerance",
    "power_of_two_scale",
    "validate_gram",
    "validate_weights",
]

DEFAULT_TOL = 1e-12
_EPS = np.finfo(np.float64).eps
# Absolute error of a float64 product or sum that underflows (gradual underflow): the smallest subnormal.
_ETA = float(np.finfo(np.float64).smallest_subnormal)
_UNDERFLOW_FACTOR = 8.0
# Gram matrices whose largest entry lies outside this range are solved scaled by a power of two.
_SAFE_RANGE = (2.0**-300, 2.0**300)
# Safety factor of the floating-point allowances (rounding error of a length-m dot product is <= m*u).
_FLOOR_FACTOR = 4.0
_SYMMETRY_FACTOR = 16.0
_PSD_FACTOR = 16.0
# Feasibility of weights: |sum(alpha) - 1| <= this * m * u.
_SIMPLEX_FACTOR = 8.0


def _to_numpy(x, name: str) -> np.ndarray:
    if array_api_compat.is_torch_array(x):
        x = x.detach().cpu()
        if x.dtype.itemsize == 2:  # float16/bfloat16: NumPy has no bfloat16; float32 holds both exactly
            x = x.float()
    elif array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray):
        x = np.from_dlpack(x)  # other array-API arrays on the CPU (array_api_strict has no "cpu" device)
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be an array of real numbers, got {type(x).__name__}") from exc
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or integer), got dtype {arr.dtype}")
    return arr


def validate_gram(G, *, name: str = "G") -> np.ndarray:
    """Check that ``G`` is a finite, symmetric, positive semidefinite square matrix.

    Symmetry and semidefiniteness are judged up to the round-off of ``G``'s own dtype (a float32 Gram
    matrix is accepted with float32 round-off); nothing beyond round-off is repaired.

    Parameters
    ----------
    G : array_like of shape (m, m)
        Gram matrix :math:`M^\\top M`. NumPy arrays, array-API arrays (e.g. torch tensors, moved to the
        CPU) and nested sequences are accepted.
    name : str
        Name used in error messages.

    Returns
    -------
    ndarray of shape (m, m), float64
        ``(G + G.T) / 2`` in float64.

    Raises
    ------
    TypeError
        If ``G`` is not an array of real numbers.
    ValueError
        If ``G`` is empty, not square, not finite, not symmetric or not positive semidefinite beyond
        round-off.
    """
    arr = _to_numpy(G, name)
    input_eps = np.finfo(arr.dtype).eps if arr.dtype.kind == "f" else _EPS
    input_eps = max(float(input_eps), _EPS)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"{name} must be a square matrix of shape (m, m), got shape {arr.shape}")
    m = arr.shape[0]
    if m == 0:
        raise ValueError(f"{name} is empty: at least one gradient (m >= 1) is needed")
    # At m = 10 the per-call overhead of NumPy, not the flops, is the cost: few passes, ndarray methods.
    G64 = arr.astype(np.float64)
    # max propagates NaN and |inf| = inf, so one reduction is both the scale and the finiteness check.
    scale = float(np.abs(G64).max())
    if not math.isfinite(scale):
        raise ValueError(f"{name} contains NaN or infinite entries")
    asym = float(np.abs(G64 - G64.T).max())
    allowance = _SYMMETRY_FACTOR * m * (input_eps * scale + _ETA)
    if asym > allowance:
        raise ValueError(
            f"{name} is not symmetric: max |G - G^T| = {asym:.3e} exceeds round-off ({allowance:.3e})"
        )
    G64 += G64.T  # NumPy buffers the overlapping transpose, so this is exactly (G + G^T)
    G64 *= 0.5
    if scale > 0.0:
        # Checked scaled by a power of two where G's entries are tiny or huge (exact, power_of_two_scale):
        # in the subnormal range the Cholesky factorization would fail on rounding alone.
        factor = power_of_two_scale(scale)
        shifted = G64 * factor
        # Round-off of G's entries: relative, plus absolute where they are subnormal.
        shift = _PSD_FACTOR * m * (input_eps * max(float(shifted.diagonal().max()), 0.0) + _ETA * factor)
        shifted.ravel()[:: m + 1] += shift
        # LAPACK's Cholesky directly (the algorithm of np.linalg.cholesky, without its wrapper's
        # overhead); info > 0: a non-positive pivot, G + shift I is not positive definite.
        if dpotrf(shifted, lower=1, clean=0, overwrite_a=1)[1] != 0:
            lam = float(np.linalg.eigvalsh(G64 * factor)[0]) / factor
            raise ValueError(
                f"{name} is not positive semidefinite: its smallest eigenvalue {lam:.3e} is below "
                f"-{shift / factor:.3e}, the round-off allowance; a Gram matrix M^T M never is"
            )
    return G64


def validate_weights(weights, m: int, *, name: str = "weights") -> np.ndarray:
    """Check that ``weights`` is a finite real vector of length ``m``; return it as float64."""
    arr = _to_numpy(weights, name)
    if arr.shape != (m,):
        raise ValueError(f"{name} must have shape ({m},) to match G, got shape {arr.shape}")
    w = arr.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return w


def validate_tol(tol, *, name: str = "tol") -> float:
    """Check that a tolerance is a finite non-negative real number."""
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(tol).__name__}")
    tol = float(tol)
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(f"{name} must be finite and non-negative, got {tol}")
    return tol


def power_of_two_scale(largest: float) -> float:
    r"""An exact scale :math:`2^k` that brings ``largest`` (G's largest entry) near 1, or 1.0 if not needed.

    The minimizers of :math:`\alpha^\top G\alpha` on the simplex do not change when G is scaled, and
    multiplying by a power of two rounds nothing unless it underflows. Gram matrices whose largest entry
    lies outside :math:`[2^{-300}, 2^{300}]` are solved (and checked for semidefiniteness) scaled, so
    that no product of two entries under- or overflows; everything else is left as it is.
    """
    if not largest > 0.0 or _SAFE_RANGE[0] <= largest <= _SAFE_RANGE[1]:
        return 1.0
    # k <= 1000 keeps 2^k finite; it lifts even the smallest subnormal, 2^-1074, to 2^-74.
    return math.ldexp(1.0, min(-math.frexp(largest)[1], 1000))


def fw_gap(weights: np.ndarray, g_alpha: np.ndarray) -> tuple[float, float]:
    r"""Value :math:`f = \alpha^\top G\alpha` and Frank-Wolfe gap :math:`2(f - \min_i (G\alpha)_i)`.

    The one place the gap formula lives; iterative methods call it with their maintained
    :math:`G\alpha` (O(m)).
    """
    value = float(weights.dot(g_alpha))
    # Summed as 2 sum_i alpha_i ((G alpha)_i - min_j (G alpha)_j): the same on the simplex, but for alpha >= 0
    # every term is >= 0 in floating point too, so rounding never makes a feasible point's gap negative
    # (2 (f - min) did, e.g. -2.2e-16 for G = 11^T and alpha = 1/6), and f and min do not cancel.
    return value, 2.0 * float(weights.dot(g_alpha - g_alpha.min()))


def gap_tolerance(
    G: np.ndarray, weights: np.ndarray, value: float, rtol: float, *, nonnegative: bool = False
) -> float:
    """The gap below which ``weights`` is certified optimal: ``max(rtol * value, floor)``.

    ``nonnegative=True`` (the caller has checked ``weights >= 0``) skips ``|weights|``, the same array.
    """
    abs_weights = weights if nonnegative else np.abs(weights)
    abs_g_alpha = np.abs(G).dot(abs_weights)
    m = G.shape[0]
    floor = _FLOOR_FACTOR * m * _EPS * (
        float(abs_weights.dot(abs_g_alpha)) + float(abs_g_alpha.max())
    ) + _UNDERFLOW_FACTOR * m * _ETA
    return float(max(rtol * max(value, 0.0), floor))


class GapTest:
    """The certificate's stopping test for a method's iterate, cheap where it can be decided cheaply.

    ``test(x, gx)`` with ``gx = G @ x`` returns ``(passes, f, gap)``: ``passes`` is
    ``gap <= gap_tolerance(G, x, f, rtol)``, evaluated (O(m^2)) only once the gap is within
    ``max(rtol * f, loose_floor)``. ``loose_floor = 8 m u max|G|`` bounds the rounding floor on the simplex
    from above, so a gap above it fails without computing the floor.
    """

    __slots__ = ("G", "rtol", "loose_floor")

    def __init__(self, G: np.ndarray, rtol: float):
        self.G, self.rtol = G, rtol
        self.loose_floor = 8.0 * G.shape[0] * _EPS * float(np.abs(G).max())

    def __call__(self, x: np.ndarray, gx: np.ndarray) -> tuple[bool, float, float]:
        f, gap = fw_gap(x, gx)
        passes = gap <= max(self.rtol * f, self.loose_floor) and gap <= gap_tolerance(self.G, x, f, self.rtol)
        return passes, f, gap

    def passes(self, x: np.ndarray, gx: np.ndarray) -> bool:
        """Only the verdict of the test (the form :func:`minmax.minnorm.apg.polish_repeatedly` takes)."""
        return self(x, gx)[0]


@dataclass(frozen=True)
class MinNormCertificate:
    r"""What the inputs alone prove about a candidate minimizer of :math:`\alpha^\top G\alpha` on the simplex.

    Attributes
    ----------
    feasible : bool
        ``weights >= 0`` and ``|sum(weights) - 1|`` within round-off.
    infeasibility : float
        ``max(-min(weights), |sum(weights) - 1|)``; 0 for an exactly feasible point.
    value : float
        :math:`f(\alpha) = \alpha^\top G\alpha`.
    gap : float
        :math:`2(\alpha^\top G\alpha - \min_i (G\alpha)_i) \ge f(\alpha) - f^*` (for feasible weights).
    lower_bound : float
        :math:`\max(f(\alpha) - \mathrm{gap}, 0) \le f^*`.
    tolerance : float
        ``max(rtol * value, floor)``, the rounding floor described in the module docstring.
    optimal : bool
        ``feasible and gap <= tolerance``.
    """

    feasible: bool
    infeasibility: float
    value: float
    gap: float
    lower_bound: float
    tolerance: float
    optimal: bool


def _certify(G: np.ndarray, weights: np.ndarray, rtol: float) -> tuple:
    """The fields of :class:`MinNormCertificate`, as a tuple in field order (cheaper than the dataclass)."""
    m = G.shape[0]
    low = float(weights.min())
    infeasibility = max(-low, abs(float(weights.sum()) - 1.0), 0.0)
    # low >= 0 is all(weights >= 0) (a NaN weight fails both).
    feasible = low >= 0.0 and infeasibility <= _SIMPLEX_FACTOR * m * _EPS
    value, gap = fw_gap(weights, G.dot(weights))
    tolerance = gap_tolerance(G, weights, value, rtol, nonnegative=low >= 0.0)
    optimal = feasible and gap <= tolerance
    return feasible, infeasibility, value, gap, max(value - gap, 0.0), tolerance, optimal


class Certified:
    """The certificate of :func:`_certify` on exactly one read-only weight array, for :func:`finalize`.

    A solver whose own stopping test is the full certificate builds this on the weights it returns, so the
    O(m^2) certificate is computed once per solve. It is still computed by this module from ``G`` and the
    weights alone (never from a solver's maintained state), and :func:`finalize` uses it only for the very
    arrays (``G`` and the weights, by identity; the weights frozen read-only here) and tolerance it was
    computed on.
    """

    __slots__ = ("G", "weights", "rtol", "fields")

    def __init__(self, G: np.ndarray, weights: np.ndarray, rtol: float):
        if weights.dtype != np.float64 or weights.base is not None:
            weights = np.array(weights, dtype=np.float64)
        weights.setflags(write=False)  # nothing can change the weights after they are certified
        self.G, self.weights, self.rtol = G, weights, rtol
        self.fields = _certify(G, weights, rtol)

    @property
    def optimal(self) -> bool:
        """Feasible and ``gap <= tolerance``: the certificate holds."""
        return self.fields[6]

    @property
    def gap_passes(self) -> bool:
        """``gap <= tolerance`` (the stopping test of a solver; feasibility is judged by finalize)."""
        return self.fields[3] <= self.fields[5]


def check_min_norm(G, weights, *, rtol: float = DEFAULT_TOL) -> MinNormCertificate:
    r"""Certify candidate weights for :math:`\min_{\alpha \in \Delta} \alpha^\top G \alpha` from scratch.

    Parameters
    ----------
    G : array_like of shape (m, m)
        Positive semidefinite Gram matrix :math:`G = M^\top M`.
    weights : array_like of shape (m,)
        Candidate :math:`\alpha`.
    rtol : float, default 1e-12
        Relative tolerance on the gap; the absolute rounding floor always applies.

    Returns
    -------
    MinNormCertificate

    Raises
    ------
    TypeError, ValueError
        On invalid ``G`` (see :func:`validate_gram`), weights of the wrong shape or non-finite, or a
        negative ``rtol``.

    Examples
    --------
    >>> import numpy as np
    >>> from minmax import check_min_norm
    >>> G = np.array([[1.0, -1.0], [-1.0, 1.0]])      # g_2 = -g_1: the origin is in the hull
    >>> cert = check_min_norm(G, [0.5, 0.5])
    >>> cert.optimal, cert.value, cert.gap
    (True, 0.0, 0.0)
    >>> check_min_norm(G, [1.0, 0.0]).gap           # the vertex g_1 is far from optimal
    4.0
    """
    G = validate_gram(G)
    weights = validate_weights(weights, G.shape[0])
    return MinNormCertificate(*_certify(G, weights, validate_tol(rtol, name="rtol")))


def finalize(
    G: np.ndarray,
    weights: np.ndarray,
    *,
    method: str,
    iterations: int,
    status: Status,
    rtol: float,
    certified: Certified | None = None,
) -> MinNormResult:
    """Build the public result from a solver's weights, recomputing the certificate.

    The status is ``OPTIMAL`` exactly when the certificate holds; a solver that believed it had
    converged but is not certified is reported as ``STALLED``. ``certified``, the certificate this module
    already computed on these very (read-only) weights for this ``G`` and ``rtol``, saves recomputing it;
    anything else is ignored and the certificate recomputed.
    """
    if (
        certified is not None
        and certified.weights is weights
        and certified.G is G
        and certified.rtol == rtol
        and not weights.flags.writeable
    ):
        _, _, value, gap, _, tolerance, optimal = certified.fields
    else:
        weights = np.array(weights, dtype=np.float64)
        _, _, value, gap, _, tolerance, optimal = _certify(G, weights, rtol)
    if optimal:
        status = Status.OPTIMAL
    elif status is Status.OPTIMAL:
        status = Status.STALLED
    weights.setflags(write=False)
    support = (weights > 0).nonzero()[0]
    support.setflags(write=False)
    return MinNormResult(
        weights=weights,
        value=value,
        gap=gap,
        tolerance=tolerance,
        iterations=int(iterations),
        status=status,
        message=MESSAGES[status],
        support=support,
        method=method,
    )
