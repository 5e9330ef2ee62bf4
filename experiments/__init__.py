"""The paper's experiments: one folder per job, imports flowing one way.

::

    common/    data, batches, seeds, checkpoints, logs, option types    imports nothing else from experiments
    train/     python -m experiments.train: config, Trainer, schedule   imports common
    evaluate/  python -m experiments.evaluate: attacks, checks, report  imports common, train
    figures/   Figures 1, 2/6, 3, the curves, the final comparison      imports common, train
    directions/ python -m experiments.directions: do the directions     imports common, train
               descend the robust loss of a trained network?
    study/     python -m experiments.study: variants x seeds, one       imports common, train
               budget, curves against steps and time (Figures 4, 5, 8)
    plot.py, optima.py, synthetic.py, classify2d.py                     the figures' commands (thin)
    demo.py    make demo                                                uses figures and train

A module imports only from its own folder and the folders above it in the list, never back, and
package ``__init__`` files import nothing: ``tests/experiments/test_layout.py`` checks that the import graph
has no cycle, that importing any module never meets a module that is still being imported, and that no file
is longer than 350 lines. This is reproduction code run from a checkout; the installed package is
:mod:`minmax` alone (see the README).
"""
