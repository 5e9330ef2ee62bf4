r"""The compact sets of :mod:`minmax.sets` in torch: batched projection and sampling on any device.

:class:`TorchSet` wraps a :class:`minmax.sets.CompactSet` (which keeps the description and its validation)
and computes :math:`P_S` and uniform samples in torch, on the set's device and in its dtype, for batches of
shape ``(k, dim)``: this is what :func:`minmax.torch.maximize` applies to all its starts at once.

* :class:`~minmax.sets.Box` (and :class:`~minmax.sets.LinfBall`) -- a clamp; samples
  :math:`l + (u - l)U`.
* :class:`~minmax.sets.L2Ball` -- :math:`c + (x - c)\min(1, r/\|x - c\|)`; samples
  :math:`c + rU^{1/\mathrm{dim}}Z/\|Z\|`.
* :class:`~minmax.sets.Simplex` -- the sort-based projection (Held, Wolfe and Crowder 1974); samples from
  the flat Dirichlet distribution (normalized exponentials).
* :class:`~minmax.sets.FiniteSet` -- the nearest point (first on ties); samples uniformly with replacement.
* Any other :class:`~minmax.sets.CompactSet` -- its own NumPy ``project`` and ``sample``, through the host.

The formulas are those of :mod:`minmax.sets`, in the same order of operations, so in float64 the
projections agree with the NumPy ones to the last few ulps.

Examples
--------
>>> import torch
>>> from minmax.sets import L2Ball, Simplex
>>> from minmax.torch.sets import TorchSet
>>> TorchSet(L2Ball([0.0, 0.0], 1.0)).project(torch.tensor([[3.0, 4.0]], dtype=torch.float64))
tensor([[0.6000, 0.8000]], dtype=torch.float64)
>>> TorchSet(Simplex(3)).project(torch.tensor([[2.0, 0.0, 0.5]], dtype=torch.float64))
tensor([[1., 0., 0.]], dtype=torch.float64)
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from minmax.sets import Box, CompactSet, FiniteSet, L2Ball, Simplex

__all__ = ["TorchSet"]

_DTYPES = (torch.float32, torch.float64)


def check_dtype(dtype) -> torch.dtype:
    """``dtype`` must be ``torch.float64`` or ``torch.float32``."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype (torch.float64 or torch.float32), got {dtype!r}")
    if dtype not in _DTYPES:
        raise TypeError(f"dtype must be torch.float64 or torch.float32, got {dtype}")
    return dtype


class TorchSet:
    r"""A :class:`minmax.sets.CompactSet` whose projection and sampling run in torch.

    Parameters
    ----------
    set : minmax.sets.CompactSet
        The set :math:`S`.
    dtype : torch.dtype, default torch.float64
        ``torch.float64`` or ``torch.float32``.
    device : torch.device or str, optional
        Where the points live (default: the CPU).

    Raises
    ------
    TypeError
        ``set`` not a :class:`~minmax.sets.CompactSet`, an unsupported ``dtype``.
    """

    def __init__(self, set: CompactSet, *, dtype: torch.dtype = torch.float64, device=None):  # noqa: A002
        if not isinstance(set, CompactSet):
            raise TypeError(f"set must be a minmax.sets.CompactSet, got {type(set).__name__}")
        self.set = set
        self.dim = set.dim
        self.dtype = check_dtype(dtype)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        as_tensor = lambda a: torch.as_tensor(np.array(a), dtype=self.dtype, device=self.device)  # noqa: E731
        if isinstance(set, Box):
            self._lower, self._upper = as_tensor(set.lower), as_tensor(set.upper)
        elif isinstance(set, L2Ball):
            self._center = as_tensor(set.center)
        elif isinstance(set, FiniteSet):
            self._points = as_tensor(set.points)

    def __repr__(self):
        return f"TorchSet({self.set!r}, dtype={self.dtype}, device={self.device})"

    # -- projection ---------------------------------------------------------------------------------------

    def project(self, x: torch.Tensor) -> torch.Tensor:
        r"""Euclidean projection :math:`P_S` of every row of ``x``, shape ``(k, dim)`` (no validation).

        Parameters
        ----------
        x : torch.Tensor of shape (k, dim)
            On the set's device, in its dtype.

        Returns
        -------
        torch.Tensor of shape (k, dim)
        """
        S = self.set
        if isinstance(S, Box):
            return torch.clamp(x, self._lower, self._upper)
        if isinstance(S, L2Ball):
            d = x - self._center
            norm = torch.linalg.vector_norm(d, dim=1, keepdim=True)
            tiny = torch.finfo(x.dtype).tiny
            # points inside keep scale 1 exactly (the projection is then the identity, bit for bit)
            scale = torch.where(norm > S.radius, S.radius / norm.clamp_min(tiny), 1.0)
            return self._center + d * scale
        if isinstance(S, Simplex):
            return self._project_simplex(x)
        if isinstance(S, FiniteSet):
            dist = torch.cdist(x, self._points, compute_mode="donot_use_mm_for_euclid_dist")
            return self._points[torch.argmin(dist, dim=1)]
        projected = S.project(x.detach().cpu().numpy().astype(np.float64))
        return torch.as_tensor(projected, dtype=x.dtype, device=x.device)

    def _project_simplex(self, x):
        # As minmax.sets.Simplex: shift by the row maximum, sort, threshold at the last index where
        # u_j - (sum_{r <= j} u_r - 1) / j > 0.
        n = self.dim
        y = x - x.max(dim=1, keepdim=True).values
        u = torch.sort(y, dim=1, descending=True).values
        css = torch.cumsum(u, dim=1) - 1.0
        k = torch.arange(1, n + 1, dtype=x.dtype, device=x.device)
        cond = (u - css / k > 0).to(torch.int64)
        rho = n - torch.argmax(torch.flip(cond, dims=(1,)), dim=1)  # argmax returns the first maximum
        tau = css.gather(1, (rho - 1)[:, None]) / rho[:, None].to(x.dtype)
        return torch.clamp(y - tau, min=0.0)

    # -- sampling -----------------------------------------------------------------------------------------

    def sample(self, n: int, rng=None) -> torch.Tensor:
        r"""``n`` points drawn independently and uniformly from S, shape ``(n, dim)``.

        Parameters
        ----------
        n : int
            Non-negative.
        rng : torch.Generator, numpy.random.Generator, or None
            A :class:`torch.Generator` (on the set's device) draws in torch; a
            :class:`numpy.random.Generator` draws with the NumPy set's own ``sample`` (the stream
            :mod:`minmax.maxfunc` uses, so both give the same points) and copies them over; ``None`` uses
            torch's global generator.

        Raises
        ------
        TypeError
            ``n`` not an int, ``rng`` of another kind.
        ValueError
            ``n`` negative, a generator on another device type.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be non-negative, got {n}")
        n = int(n)
        if isinstance(rng, np.random.Generator):
            return torch.as_tensor(self.set.sample(n, rng), dtype=self.dtype, device=self.device)
        if rng is not None and not isinstance(rng, torch.Generator):
            raise TypeError(
                f"rng must be a torch.Generator, a numpy.random.Generator or None, got {type(rng).__name__}"
            )
        if rng is not None and rng.device.type != self.device.type:
            raise ValueError(f"rng is a generator on {rng.device}, but the set's points live on "
                             f"{self.device}")
        S = self.set
        kw = {"dtype": self.dtype, "device": self.device, "generator": rng}
        if isinstance(S, Box):
            return self._lower + (self._upper - self._lower) * torch.rand(n, self.dim, **kw)
        if isinstance(S, L2Ball):
            z = torch.randn(n, self.dim, **kw)
            norm = torch.linalg.vector_norm(z, dim=1, keepdim=True)
            direction = z / torch.where(norm > 0, norm, 1.0)  # a zero draw has probability 0
            rho = S.radius * torch.rand(n, 1, **kw) ** (1.0 / self.dim)
            return self._center + rho * direction
        if isinstance(S, Simplex):
            e = torch.empty(n, self.dim, dtype=self.dtype, device=self.device).exponential_(generator=rng)
            return e / e.sum(dim=1, keepdim=True)
        if isinstance(S, FiniteSet):
            idx = torch.randint(len(S), (n,), device=self.device, generator=rng)
            return self._points[idx]
        seed = int(torch.randint(2**62, (1,), device=self.device, generator=rng))
        return torch.as_tensor(S.sample(n, np.random.default_rng(seed)), dtype=self.dtype, device=self.device)

    # -- membership ---------------------------------------------------------------------------------------

    def distance(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of every row of ``x`` (k, dim) to S, shape (k,)."""
        return torch.linalg.vector_norm(x - self.project(x), dim=1)
