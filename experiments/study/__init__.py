"""``python -m experiments.study``: variants × seeds of ``experiments.train`` with one budget, aggregated.

A study is a list of training variants, a list of seeds and the ``experiments.train`` options they share
(data, network, attack, ``--max-steps``, ``--eval-every``). Every run gets the same data (``--train-size``
draws its subset with ``--data-seed``, not ``--seed``), the same number of optimizer steps and the same
evaluation: PGD robust accuracy on the same test examples every ``--eval-every`` steps. The study then draws
robust accuracy against optimizer steps, training wall-clock time and training CPU time, with the mean over
seeds and a band of ± one standard deviation (the form of the paper's Figures 4, 5 and 8), and writes
``study.json`` and ``study.md`` with the final numbers and each variant's paired difference to the first
variant (same seed: same initialization, data order and evaluation examples).

Layout of ``OUT``::

    OUT/study-config.json       the study as run
    OUT/runs/<variant>/seed-<s>/ one experiments.train run directory each
    OUT/study.json, study.md    aggregated numbers
    OUT/study.png               robust accuracy against steps, wall-clock and CPU time

A study is resumable: finished runs are kept, interrupted ones continue with ``--resume``.
"""
