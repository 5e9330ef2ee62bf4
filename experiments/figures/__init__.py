"""Figures: the paper's figures and the plots that compare runs, each from a command line.

=======================  ====================================  ====================================
module                   figure                                command (``python -m experiments.``)
=======================  ====================================  ====================================
:mod:`.synthetic`        Figure 1 (DDi vs one adversary)       ``synthetic``
:mod:`.optima`           Figures 2 and 6 (the PGD optima)      ``optima``
:mod:`.classify2d`       Figure 3 (2-D classification)         ``classify2d``
:mod:`.curves`           Figures 4, 5, 8 (accuracy curves)     ``plot``
:mod:`.final`            clean vs AutoAttack accuracy          ``plot --final``
=======================  ====================================  ====================================

:mod:`~experiments.figures.drawing` holds the matplotlib set-up they share (the file backend, imported only
when a figure is drawn). Figures read what the other jobs wrote (run directories, robustness reports) and may
use :func:`experiments.train.model.restore_model`; nothing outside ``figures`` imports them, except the thin
command modules named above and the demo.
"""
