"""Speed and accuracy benchmarks, run by ``make bench`` (never by the tests).

``python -m benchmarks`` runs every ``bench_<name>.py`` module (``python -m benchmarks minnorm`` only the
named ones), printing the machine and package versions first. Each module has a ``main()`` that prints
Markdown tables, measured side by side in one run; helpers shared between them live in ``_common``.
"""
