r"""A max-function :math:`\varphi(\theta) = \max_{\delta \in S} g(\theta, \delta)` from a torch callable.

:class:`MaxProblem` takes :math:`g(\theta, \delta)` written in PyTorch for *one* :math:`\delta` and gives
its values and gradients :math:`\nabla_\theta g`, :math:`\nabla_\delta g` by automatic differentiation,
for one point or for a batch of points :math:`\delta_1, \dots, \delta_k` at once
(:func:`torch.func.vmap`: one pass of :math:`g` for the whole batch). It is the problem type of
:func:`minmax.torch.maximize`, :func:`minmax.torch.ddi` and :func:`minmax.torch.single_adversary`.

References
----------
.. [1] Latorre, Krawczuk, Dadi, Pethick, Cevher. "Finding Actual Descent Directions for Adversarial
   Training." ICLR 2023.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import grad, vmap

from minmax.sets import CompactSet
from minmax.torch.sets import TorchSet, check_dtype

__all__ = ["MaxProblem"]


class MaxProblem:
    r"""The max-function of a torch callable :math:`g(\theta, \delta)` over a compact set S.

    Parameters
    ----------
    g : callable
        ``g(theta, delta) -> Tensor``: a 0-d (scalar) floating tensor in ``dtype``, for ``theta`` of shape
        (n,) and ``delta`` of shape (p,) (``p = set.dim``), built from torch operations that
        :func:`torch.func.vmap` can batch over ``delta``: no ``.item()``, no Python ``if`` on tensor values,
        no in-place changes to its inputs. Constants it closes over must be in ``dtype`` on ``device``.
    set : minmax.sets.CompactSet
        S (a box or interval, an l∞ or l2 ball, the simplex, a finite set, or any other
        :class:`~minmax.sets.CompactSet`, whose own NumPy projection is then used through the host).
    dtype : torch.dtype, default torch.float64
        ``torch.float64`` or ``torch.float32``: the dtype of every point, value and gradient.
    device : torch.device or str, optional
        Where the computations run (default: the CPU).
    maximizers : callable, optional
        ``maximizers(theta) -> CompactSet``: the exact :math:`S^*(\theta)` when known in closed form (a
        :class:`~minmax.sets.FiniteSet`, an interval :class:`~minmax.sets.Box`, or an array of points),
        for ``radius="exact"`` of the outer loops.
    phi : callable, optional
        ``phi(theta) -> float``: the exact :math:`\varphi(\theta)` when known, recorded by the outer loops.
    theta_dim : int, optional
        The length n of ``theta``, checked at every call when given.
    name : str, optional
        Names the problem in error messages (default: ``g``'s qualified name).

    Raises
    ------
    TypeError
        ``g``, ``maximizers`` or ``phi`` not callable, ``set`` not a :class:`~minmax.sets.CompactSet`, a
        ``dtype`` other than float64 or float32.
    ValueError
        ``theta_dim`` not a positive int.

    Notes
    -----
    The gradients in :math:`\delta` take one :func:`torch.func.vmap` pass of ``g`` over the k points and one
    reverse pass: since :math:`g(\theta, \delta_i)` depends only on its own :math:`\delta_i`,
    :math:`\nabla_{\delta_i}\sum_j g(\theta, \delta_j) = \nabla_\delta g(\theta, \delta_i)`. The gradients
    in :math:`\theta` are ``vmap(grad(g))`` with :math:`\theta` unbatched, so work on :math:`\theta` alone
    (such as :math:`B^\top\theta`) is done once for the k points. What ``g`` returns is checked once
    per shape of ``theta`` (a 0-d tensor of ``dtype`` on ``device``, and batchable by ``vmap``); the loops
    check finiteness of values and gradients.

    Examples
    --------
    :math:`g = \delta(\theta_1^2 + (\theta_2 + 1)^2) + (1 - \delta)(\theta_1^2 + (\theta_2 - 1)^2)` on
    [0, 1], the function of Figure 1 of [1]_:

    >>> import torch
    >>> from minmax.sets import Box
    >>> from minmax.torch import MaxProblem
    >>> def g(theta, delta):
    ...     d = delta[0]
    ...     return d * (theta[0]**2 + (theta[1] + 1)**2) + (1 - d) * (theta[0]**2 + (theta[1] - 1)**2)
    >>> p = MaxProblem(g, Box(0.0, 1.0))
    >>> theta = torch.tensor([1.0, 0.5], dtype=torch.float64)
    >>> p.value(theta, [1.0])
    tensor(3.2500, dtype=torch.float64)
    >>> p.grad_theta(theta, [1.0]), p.grad_delta(theta, [1.0])
    (tensor([2., 3.], dtype=torch.float64), tensor([2.], dtype=torch.float64))

    All three points of a batch in one pass:

    >>> deltas = torch.tensor([[0.0], [0.5], [1.0]], dtype=torch.float64)
    >>> grads, values = p.grad_delta_and_value(theta, deltas)
    >>> values
    tensor([1.2500, 2.2500, 3.2500], dtype=torch.float64)
    """

    def __init__(self, g, set: CompactSet, *, dtype: torch.dtype = torch.float64, device=None,  # noqa: A002
                 maximizers=None, phi=None, theta_dim: int | None = None, name: str | None = None):
        if not callable(g):
            raise TypeError(f"g must be a callable g(theta, delta) -> 0-d tensor, got {type(g).__name__}")
        if not isinstance(set, CompactSet):
            raise TypeError(f"set must be a minmax.sets.CompactSet, got {type(set).__name__}")
        for what, fn in (("maximizers", maximizers), ("phi", phi)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{what} must be a callable of theta or None, got {type(fn).__name__}")
        if theta_dim is not None and (isinstance(theta_dim, bool) or not isinstance(theta_dim, int)
                                      or theta_dim < 1):
            raise ValueError(f"theta_dim must be a positive int or None, got {theta_dim!r}")
        self.g = g
        self.set = set
        self.dtype = check_dtype(dtype)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.maximizers = maximizers
        self.phi = phi
        self.theta_dim = theta_dim
        self.name = name if name is not None else getattr(g, "__qualname__", type(g).__name__)
        self.torch_set = TorchSet(set, dtype=self.dtype, device=self.device)
        # atol of the membership check of a single delta: projections are exact up to round-off
        self.delta_atol = float(np.sqrt(torch.finfo(self.dtype).eps)) * max(1.0, set.diameter)
        self._batched = vmap(g, in_dims=(None, 0))
        # theta unbatched: work on theta alone is done once for the k points, not k times
        self._grads_theta_batched = vmap(grad(g, argnums=0), in_dims=(None, 0))
        self._checked: dict = {}

    def __repr__(self):
        return f"MaxProblem({self.name}, set={self.set!r}, dtype={self.dtype}, device={self.device})"

    # -- input checks -------------------------------------------------------------------------------------

    def _tensor(self, x, what: str) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point() or x.is_complex():
                raise TypeError(f"{self!r}: {what} must be a real floating tensor, got dtype {x.dtype}")
            if x.dtype != self.dtype:
                raise TypeError(
                    f"{self!r}: {what} has dtype {x.dtype}, but the problem computes in {self.dtype}; "
                    f"convert it (x.to({self.dtype})) or build the problem with dtype={x.dtype}"
                )
            if x.device != self.device:
                raise ValueError(f"{self!r}: {what} is on {x.device}, but the problem runs on {self.device}")
            return x.detach()
        try:
            arr = np.array(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{self!r}: {what} must be a tensor or an array of real numbers") from exc
        return torch.as_tensor(arr, dtype=self.dtype, device=self.device)

    def _finite(self, x: torch.Tensor, what: str) -> torch.Tensor:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{self!r}: {what} contains NaN or infinite entries")
        return x

    def check_theta(self, theta) -> torch.Tensor:
        """``theta`` as a finite 1-D tensor of the problem's dtype and device (a scalar becomes shape (1,)).

        Raises
        ------
        TypeError
            Not real numbers, a tensor of another dtype.
        ValueError
            Not 1-D (or of length other than ``theta_dim``), empty, non-finite, on another device.
        """
        t = self._tensor(theta, "theta")
        if t.dim() == 0:
            t = t.reshape(1)
        if t.dim() != 1 or t.numel() == 0:
            raise ValueError(f"{self!r}: theta must be a scalar or a non-empty 1-D vector, got shape "
                             f"{tuple(t.shape)}")
        if self.theta_dim is not None and t.shape[0] != self.theta_dim:
            raise ValueError(f"{self!r}: theta must have shape ({self.theta_dim},), got shape "
                             f"{tuple(t.shape)}")
        return self._finite(t, "theta")

    def check_deltas(self, deltas, what: str = "deltas") -> torch.Tensor:
        """``deltas`` as a finite (k, p) tensor, ``k >= 1`` (a (k,) vector is accepted when p = 1)."""
        t = self._tensor(deltas, what)
        p = self.set.dim
        if t.dim() == 1 and p == 1:
            t = t[:, None]
        if t.dim() != 2 or t.shape[1] != p or t.shape[0] == 0:
            raise ValueError(f"{self!r}: {what} must have shape (k, {p}) with k >= 1, got shape "
                             f"{tuple(t.shape)}")
        return self._finite(t, what)

    def _delta(self, delta) -> torch.Tensor:
        t = self._tensor(delta, "delta")
        p = self.set.dim
        if t.dim() == 0 and p == 1:
            t = t.reshape(1)
        if tuple(t.shape) != (p,):
            raise ValueError(f"{self!r}: delta must have shape ({p},), got shape {tuple(t.shape)}")
        self._finite(t, "delta")
        if float(self.torch_set.distance(t[None, :])[0]) > self.delta_atol:
            raise ValueError(f"{self!r}: delta = {t.tolist()} lies outside S = {self.set!r}")
        return t

    def probe(self, theta: torch.Tensor, delta: torch.Tensor) -> None:
        """Check once per shape of ``theta`` that ``g`` returns a 0-d tensor of the problem's dtype and device
        and can be batched by :func:`torch.func.vmap` (``theta`` (n,) and ``delta`` (p,) already checked).

        Raises
        ------
        TypeError
            ``g`` returns something other than a tensor, a tensor of another dtype, or fails under ``vmap``.
        ValueError
            ``g`` fails on these shapes (a ``RuntimeError`` or ``IndexError`` of torch: ``theta`` or ``delta``
            of the wrong size for ``g``), or returns a tensor that is not 0-d or on another device.
        """
        key = tuple(theta.shape)
        if key in self._checked:
            return
        try:
            with torch.no_grad():
                out = self.g(theta, delta)
        except (RuntimeError, IndexError) as exc:  # torch's shape errors: theta or delta of the wrong size
            raise ValueError(
                f"{self!r}: g(theta, delta) failed for theta of shape {tuple(theta.shape)} and delta of "
                f"shape {tuple(delta.shape)}: {exc}"
            ) from exc
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"{self!r}: g must return a torch.Tensor, got {type(out).__name__}")
        if out.dim() != 0:
            raise ValueError(f"{self!r}: g must return a 0-d tensor (a scalar), got shape {tuple(out.shape)}")
        if out.dtype != self.dtype:
            raise TypeError(
                f"{self!r}: g returned dtype {out.dtype}, expected {self.dtype} (the problem's dtype): "
                "build the constants g uses in that dtype"
            )
        if out.device != self.device:
            raise ValueError(f"{self!r}: g returned a tensor on {out.device}, expected {self.device}")
        try:
            with torch.no_grad():
                self._batched(theta, delta[None, :])
        except RuntimeError as exc:
            raise TypeError(
                f"{self!r}: g cannot be batched over delta with torch.func.vmap (no .item(), no Python "
                f"control flow on tensor values, no in-place changes to the inputs): {exc}"
            ) from exc
        self._checked[key] = True

    # -- batched evaluations -----------------------------------------------------------------------------

    def _batch(self, theta, deltas):
        theta, deltas = self.check_theta(theta), self.check_deltas(deltas)
        outside = self.torch_set.distance(deltas) > self.delta_atol
        if bool(outside.any()):
            i = int(torch.nonzero(outside)[0, 0])
            raise ValueError(f"{self!r}: deltas[{i}] = {deltas[i].tolist()} lies outside S = {self.set!r}")
        self.probe(theta, deltas[0])
        return theta, deltas

    def values(self, theta, deltas) -> torch.Tensor:
        r""":math:`g(\theta, \delta_i)` for the k rows of ``deltas`` (k, p), shape (k,): one ``vmap`` pass."""
        return self._values(*self._batch(theta, deltas))

    def grad_delta_and_value(self, theta, deltas):
        r""":math:`(\nabla_\delta g(\theta, \delta_i), g(\theta, \delta_i))` for the k rows of ``deltas``
        (k, p): shapes (k, p) and (k,), from one ``vmap`` pass of ``g`` and one reverse pass."""
        return self._grad_delta_and_value(*self._batch(theta, deltas))

    def grads_theta(self, theta, deltas) -> torch.Tensor:
        r""":math:`\nabla_\theta g(\theta, \delta_i)` for the k rows of ``deltas`` (k, p), shape (k, n): one
        ``vmap`` of :func:`torch.func.grad` over the k points, :math:`\theta` shared."""
        return self._grads_theta(*self._batch(theta, deltas))

    # The loops call these on checked tensors (no validation, no device synchronization).

    def _values(self, theta: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._batched(theta, deltas)

    def _grad_delta_and_value(self, theta: torch.Tensor, deltas: torch.Tensor):
        d = deltas.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self._batched(theta.detach(), d)
            return self._reverse(out, d), out.detach()

    def _grads_theta(self, theta: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        return self._grads_theta_batched(theta.detach(), deltas.detach())

    @staticmethod
    def _reverse(out: torch.Tensor, wrt: torch.Tensor) -> torch.Tensor:
        if not out.requires_grad:  # g does not depend on its inputs at all
            return torch.zeros_like(wrt)
        (g,) = torch.autograd.grad(out.sum(), wrt, allow_unused=True)
        return torch.zeros_like(wrt) if g is None else g

    # -- one point (checked) ------------------------------------------------------------------------------

    def _point(self, theta, delta):
        theta, delta = self.check_theta(theta), self._delta(delta)
        self.probe(theta, delta)
        return theta, delta

    def value(self, theta, delta) -> torch.Tensor:
        r""":math:`g(\theta, \delta)`, a 0-d tensor."""
        theta, delta = self._point(theta, delta)
        with torch.no_grad():
            return self.g(theta, delta)

    def grad_theta(self, theta, delta) -> torch.Tensor:
        r""":math:`\nabla_\theta g(\theta, \delta)` by autograd (:func:`torch.func.grad`), shape (n,)."""
        theta, delta = self._point(theta, delta)
        return grad(self.g, argnums=0)(theta, delta)

    def grad_delta(self, theta, delta) -> torch.Tensor:
        r""":math:`\nabla_\delta g(\theta, \delta)` by autograd (:func:`torch.func.grad`), shape (p,)."""
        theta, delta = self._point(theta, delta)
        return grad(self.g, argnums=1)(theta, delta)
