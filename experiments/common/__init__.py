"""Pieces shared by every job of the experiments; they import nothing else from :mod:`experiments`.

- :mod:`~experiments.common.data`: the datasets (CIFAR10, Fashion-MNIST, a generated one) as in-memory
  :class:`~experiments.common.data.ImageSet`, the validation split, the training subset;
- :mod:`~experiments.common.batches`: the order of an epoch, one rank's share of a global batch, augmentation;
- :mod:`~experiments.common.seeds`: :func:`~experiments.common.seeds.derive_seed` and the purpose of every
  random stream;
- :mod:`~experiments.common.checkpoints`: atomic, verified checkpoints and the RNG states;
- :mod:`~experiments.common.logs`: a run directory's logs (metrics, steps, evaluations, log.txt);
- :mod:`~experiments.common.options`: option types of the command lines.
"""
