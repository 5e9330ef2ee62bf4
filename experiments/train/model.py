"""The model and the data splits a training configuration names; a trained model rebuilt from its checkpoint.

:func:`restore_model` is what the other jobs (the robustness evaluation, Figures 2/6) use to get a trained
network back: it reads a checkpoint of ``python -m experiments.train``, rebuilds the model its configuration
names, loads the weights and returns the run's own train / validation / test splits.
"""

from __future__ import annotations

from experiments.common import data as D
from experiments.common.checkpoints import CheckpointError, load_checkpoint

__all__ = ["CHECKPOINT_KIND", "build_model_from_config", "load_splits", "restore_model"]

#: The ``kind`` of a training checkpoint (other files are refused).
CHECKPOINT_KIND = "minmax-train"


def build_model_from_config(config: dict, input_shape, num_classes: int, mean=None, std=None):
    """``nets.build_model`` with the configuration's net, activation, norm (hidden widths of mlp, channels of
    cnn)."""
    import nets

    kwargs = {"hidden": tuple(config["hidden"])} if config["net"] == "mlp" else {}
    if config["net"] == "cnn":
        kwargs = {"channels": tuple(config.get("channels", (32, 64)))}
    return nets.build_model(config["net"], num_classes=num_classes, input_shape=tuple(input_shape),
                            activation=config["activation"], norm=config["norm"], mean=mean, std=std,
                            **kwargs)


def load_splits(config: dict, *, root: str | None = None, download: bool = False):
    """The run's ``(train, validation, test)`` splits: the dataset, less the held-out validation examples.

    The validation split holds ``min(val_size, len(train) // 10)`` examples drawn with ``data_seed``. The
    ``--train-size`` subset is not applied here (it is a choice of training, not of the splits).

    Raises
    ------
    DataError
        If the dataset cannot be found or read.
    """
    train, test = D.load_dataset(config["dataset"], root=root or config["data_root"], download=download,
                                 generated_size=config["generated_size"],
                                 generated_shape=config["generated_shape"], data_seed=config["data_seed"])
    val_size = min(config["val_size"], len(train) // 10)
    train, val = D.split_validation(train, val_size, seed=config["data_seed"])
    return train, val, test


def restore_model(path: str, *, device="cpu", data_root: str | None = None):
    """Rebuild a trained model and its data splits from a checkpoint of ``experiments.train``.

    Returns ``(model, config, splits)`` with ``model`` in eval mode on ``device`` and ``splits`` a dict of
    :class:`experiments.common.data.ImageSet` with keys ``train``, ``val``, ``test`` (the run's own split).
    ``data_root`` overrides the dataset folder saved in the configuration (e.g. on another machine).

    Raises
    ------
    CheckpointError
        If the file is not a readable training checkpoint or does not fit the model its configuration names.
    DataError
        If the run's dataset cannot be found.
    """
    state = load_checkpoint(path, map_location=device)
    config = state.get("config")
    if state.get("kind") != CHECKPOINT_KIND or not isinstance(config, dict):
        raise CheckpointError(f"{path!r} is not a training checkpoint of experiments.train")
    train, val, test = load_splits(config, root=data_root)
    model = build_model_from_config(config, train.input_shape, train.num_classes, train.mean, train.std)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(f"{path!r}: the weights do not fit the model of its configuration: "
                              f"{' '.join(lines[:3])}") from None
    return model.to(device).eval(), config, {"train": train, "val": val, "test": test}
