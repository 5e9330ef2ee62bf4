r"""``python -m experiments.directions CHECKPOINT``: do the training variants' directions descend?

The paper's claim is that DDi "provides better directions than those obtained by a PGD adversary": that
:math:`\gamma^* = -M\alpha^*/\|M\alpha^*\|` (Theorem 2) decreases the robust loss
:math:`\varphi(\theta) = \max_{\delta\in S}\, g(\theta, \delta)` where the gradient at one attack need not
(Danskin's theorem: :math:`D_\gamma\varphi(\theta) = \max_{\delta\in S^*(\theta)}\langle\gamma,
\nabla_\theta g(\theta, \delta)\rangle`, the paper's eq. 4). This probe measures it on a trained network.
For each of N random batches of a checkpoint's data:

1. **Directions** (:mod:`~experiments.directions.candidates`): the run's training attack (PGD-K, its ε and
   step) with m restarts gives m gradients; from them DDi-m's :math:`\gamma^*`, the single PGD gradient,
   pgd-max-m, pgd-min-m and the mean of the m gradients, each a unit vector over all parameters.
2. **Probe** (:mod:`~experiments.directions.probe`): the robust batch loss :math:`\hat\varphi(\theta +
   t\gamma)` at t = 0 and on a grid, each time from scratch by an independent PGD attack (its own seed, by
   default twice the steps and two restarts, never the perturbations of step 1).
3. **Statistics** (:mod:`~experiments.directions.stats`): per direction the slope
   :math:`(\hat\varphi(\theta + t_1\gamma) - \hat\varphi(\theta))/t_1` (mean ± standard error over
   batches), the fraction of batches where it is negative (descent), the decrease at the best t of the
   grid, and the count of negative inner products :math:`\langle g_i, g_j\rangle` among the m gradients.

**What the numbers are.** :math:`\hat\varphi \le \varphi` (an attack finds a lower bound of the max), so
the slope estimates :math:`D_\gamma\varphi(\theta)` with two biases: the curvature of
:math:`\varphi` over :math:`[0, t_1]` (:math:`O(t_1)`, upwards where :math:`\varphi` is convex along γ), and
the attack's shortfall :math:`e(\theta) = \varphi - \hat\varphi`, which enters as
:math:`(e(\theta) - e(\theta + t_1\gamma))/t_1` and grows as :math:`t_1` shrinks. The common random start
of the probe at every point makes the two shortfalls similar, and a stronger probe makes both small; the
report says how the probe's :math:`\hat\varphi(\theta)` compares with the direction attack's worst-of-m
loss. ``docs/tutorials/directions.rst`` explains how to run it and read the report.

Outputs: ``PREFIX.json`` (every number, per batch too), ``PREFIX.md`` (a table) and ``PREFIX.png``
(:math:`\hat\varphi` along each direction, mean ± SE over batches), beside the checkpoint
(``best.pt`` → ``best.directions.*``) or in ``--out``.
"""
