r""""Evaluation: ``python -m experiments.evaluate CHECKPOINT``, the robustness evaluation reviewers ask for.

PGD-20 during training is a progress signal; a robustness claim needs a strong, standard attack. For any
checkpoint of ``experiments.train`` (``best.pt`` or ``last.pt``) this measures, on the first
``--n-examples`` examples of the run's test split:

- clean accuracy;
- PGD-K with R nested restarts (per-sample worst case), with the cross-entropy and the Carlini-Wagner
  margin loss (:func:`experiments.evaluate.attacks.cw_margin_loss`);
- AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square; Croce and Hein, 2020), l∞ or l2, through
  the optional package ``pyautoattack`` (``pip install 'minmax[autoattack]'``);
- three checks against gradient masking, reported as warnings (see Notes).

It writes ``CHECKPOINT_STEM.robustness-NORM.json`` (RobustBench-style) and ``.md`` beside the checkpoint (see
:mod:`experiments.evaluate.report`) and prints the Markdown table. Long evaluations are resumable: finished
batches are saved atomically, and rerunning the same command skips them. The package: -
:mod:`~experiments.evaluate.command`: the options, ``main``, the report's assembly; -
:mod:`~experiments.evaluate.suite`: the attacks' settings, run batch by batch, resumable; -
:mod:`~experiments.evaluate.attacks`: PGD with restarts (CE and CW losses), AutoAttack, the large-ε PGD and
the black-box search, each as per-sample robustness flags; - :mod:`~experiments.evaluate.blackbox`: the score-
based random search; - :mod:`~experiments.evaluate.report`: the partial results, the checks, the JSON and
Markdown report.

Notes
-----
The checks (Carlini et al., "On evaluating adversarial robustness", 2019):

1. **More steps and restarts must not raise robust accuracy.** A weaker PGD (K/5 steps, one restart, its
   own random start) runs beside the main PGD-K×R (cross-entropy); if the stronger attack reports the
   higher accuracy, or more than 1% of the examples (and more than one) fall to the weaker attack only,
   the attack is not converging. The accuracy after each restart is also reported; a last restart that
   still removes more than 1% of the examples (and more than one) means R is too small.
2. **A large ε must break everything.** PGD at ε = 0.5 (l∞; every image is within 0.5 of the uniform grey
   image) or ε = 0.5·√n (l2, whose ball holds that cube) must bring the accuracy to at most 1%.
3. **A black-box attack must not beat the white-box ones.** A score-based random search
   (:class:`experiments.evaluate.blackbox.RandomSearch`, which never uses a gradient) must not reach a lower
   accuracy than the white-box attacks together, nor break more than 1% of the examples (and more than
   one) that they all missed.

AutoAttack's own checks (randomized defense, zero gradients, Square beating APGD) are added to the
warnings. Any warning marks the report ``"unreliable": true``.

References
----------
.. [1] Croce, Hein. "Reliable evaluation of adversarial robustness with an ensemble of diverse
   parameter-free attacks." ICML 2020.
.. [2] Croce, Andriushchenko, Sehwag, Debenedetti, Flammarion, Chiang, Mittal, Hein. "RobustBench: a
   standardized adversarial robustness benchmark." NeurIPS Datasets and Benchmarks 2021.
.. [3] Carlini, Athalye, Papernot, Brendel, Rauber, Tsipras, Goodfellow, Madry, Kurakin. "On evaluating
   adversarial robustness." arXiv:1902.06705, 2019.
.. [4] Carlini, Wagner. "Towards evaluating the robustness of neural networks." IEEE S&P 2017.
"""
