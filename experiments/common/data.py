"""Datasets for the experiments: CIFAR10, Fashion-MNIST, and a generated dataset that needs nothing.

Every dataset is held in memory as a :class:`ImageSet`: ``uint8`` images ``(N, C, H, W)`` and ``int64``
labels. Pixels are scaled to [0, 1] per batch (the adversarial convention: ε is given in pixel units and
normalization is the model's first layer), so the whole of CIFAR10 costs 150 MB and no data-loader workers.

The validation split and the training subset are functions of the data seed only
(:mod:`experiments.common.seeds`); the order of the examples, the batches and their augmentation are in
:mod:`experiments.common.batches`.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass

import numpy as np
import torch

from experiments.common.seeds import GENERATED, SUBSET, VALIDATION, derive_seed

__all__ = [
    "DATASETS",
    "DataError",
    "ImageSet",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "make_generated",
    "read_idx",
    "split_validation",
    "training_subset",
]

DATASETS = ("generated", "cifar10", "fashion-mnist")

#: Per-channel statistics given to ``nets.Normalize`` (the model's first layer).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2471, 0.2435, 0.2616)
FASHION_MEAN = (0.2860,)
FASHION_STD = (0.3530,)

FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"


class DataError(ValueError):
    """A dataset is missing or malformed; the message names the file or folder and what was expected."""


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, C, H, W)`` as ``uint8`` and labels ``(N,)`` as ``int64``, with the normalization stats."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple | None = None
    std: tuple | None = None

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} "
                            f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"labels must have shape ({self.images.shape[0]},), got "
                            f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])

    def subset(self, index) -> ImageSet:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.num_classes, self.mean, self.std)

    def batch(self, index, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` for the given indices: ``x`` float32 in [0, 1] on ``device``."""
        index = torch.as_tensor(index, dtype=torch.long)
        x = self.images[index].to(device=device, dtype=torch.float32).div_(255.0)
        return x, self.labels[index].to(device)


def split_validation(data: ImageSet, size: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Hold ``size`` examples out of ``data`` (a seeded random subset): return ``(train, validation)``."""
    if not 0 <= size < len(data):
        raise ValueError(f"validation size must be in [0, {len(data)}), got {size}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(derive_seed(seed, VALIDATION)))
    val, train = perm[:size].sort().values, perm[size:].sort().values
    return data.subset(train), data.subset(val)


def training_subset(data: ImageSet, size: int, seed: int = 0) -> ImageSet:
    """A fixed random subset of ``size`` examples (``size = 0``: all of ``data``), in the original order.

    The subset depends on ``seed`` only (the data seed), never on the training seed, so every variant and
    seed of a study trains on the same examples.
    """
    if size == 0:
        return data
    if not 0 < size <= len(data):
        raise ValueError(f"training subset size must be in [1, {len(data)}], got {size}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(derive_seed(seed, SUBSET)))
    return data.subset(perm[:size].sort().values)


# --------------------------------------------------------------------------------------------------- CIFAR10

def load_cifar10(root: str, *, train: bool, download: bool = False) -> ImageSet:
    """CIFAR10 from ``root/cifar-10-batches-py`` (the standard pickled format), through torchvision.

    Raises
    ------
    DataError
        If the folder is missing (and ``download`` is False) or its files are incomplete or malformed.
    """
    folder = os.path.join(root, "cifar-10-batches-py")
    if not download and not os.path.isdir(folder):
        raise DataError(
            f"CIFAR10 not found: expected the folder {os.path.abspath(folder)!r} (the extracted "
            f"cifar-10-python.tar.gz, with data_batch_1..5, test_batch and batches.meta). Pass --data-root "
            f"to the folder that contains cifar-10-batches-py, or --download to fetch it.")
    try:
        from torchvision.datasets import CIFAR10
    except ImportError as exc:  # pragma: no cover - torchvision is in the [torch] extra
        raise DataError("CIFAR10 needs torchvision: pip install 'minmax[torch]'") from exc
    if download:
        try:
            CIFAR10(root, train=train, download=True)
        except Exception as exc:  # network errors come in many types; all mean the same to the user
            raise DataError(f"downloading CIFAR10 into {root!r} failed: {exc}") from None
    try:
        dataset = CIFAR10(root, train=train, download=False)
        images, labels = dataset.data, dataset.targets
    except RuntimeError:
        # torchvision checks the files' MD5 sums and refuses any other copy in the same format (e.g. a
        # miniature made by a test, or a re-pickled copy); read the standard format directly then.
        images, labels = _read_cifar_batches(folder, train)
    images = torch.from_numpy(np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2)))
    return ImageSet(images, torch.as_tensor(labels, dtype=torch.long), 10, CIFAR10_MEAN, CIFAR10_STD)


def _read_cifar_batches(folder: str, train: bool):
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        path = os.path.join(folder, name)
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            target = entry["labels"] if "labels" in entry else entry["fine_labels"]
        except FileNotFoundError:
            message = f"CIFAR10 file missing: {path!r} (expected data_batch_1..5 and test_batch)"
            raise DataError(message) from None
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
            raise DataError(f"CIFAR10 file {path!r} is not a CIFAR10 batch: {exc}") from None
        images.append(data.transpose(0, 2, 3, 1))
        labels.extend(int(t) for t in target)
    return np.concatenate(images), labels


# --------------------------------------------------------------------------------------------- Fashion-MNIST

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str) -> np.ndarray:
    """Read an idx file (the MNIST format: magic ``0 0 type ndim``, big-endian dims, data), gzipped or not.

    Parameters
    ----------
    path : str
        The file; a name ending in ``.gz`` is decompressed.

    Returns
    -------
    numpy.ndarray
        With the file's dtype (big-endian for multi-byte types) and shape.

    Raises
    ------
    DataError
        If the file is missing, has a bad magic number, or is shorter than its header says.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"idx file not found: {path!r}") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read idx file {path!r}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path!r} is not an idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path!r}: idx header truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header < count * dtype.itemsize:
        raise DataError(f"{path!r}: idx data truncated (shape {shape} needs {count * dtype.itemsize} bytes, "
                        f"found {len(raw) - header})")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)


def _find_idx(root: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    raise DataError(f"Fashion-MNIST file {stem}[.gz] not found in {root!r} (install the Debian package "
                    f"dataset-fashion-mnist, which puts it in {FASHION_MNIST_DEFAULT_ROOT}, or pass "
                    f"--data-root)")


def load_fashion_mnist(root: str, *, train: bool) -> ImageSet:
    """Fashion-MNIST from the original idx files in ``root`` (``train-images-idx3-ubyte[.gz]`` etc.)."""
    if not os.path.isdir(root):
        raise DataError(f"Fashion-MNIST folder not found: {root!r} (expected train-images-idx3-ubyte[.gz], "
                        f"train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                        f"t10k-labels-idx1-ubyte[.gz])")
    prefix = "train" if train else "t10k"
    images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0] or images.dtype != np.uint8:
        raise DataError(f"Fashion-MNIST in {root!r}: expected uint8 images (N, 28, 28) and labels (N,), got "
                        f"{images.dtype} {images.shape} and {labels.shape}")
    return ImageSet(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                    10, FASHION_MEAN, FASHION_STD)


# ------------------------------------------------------------------------------------------------- generated

def make_generated(n: int, *, shape=(3, 32, 32), num_classes: int = 10, seed: int = 0, noise: float = 0.12,
                   amplitude: float = 0.25) -> ImageSet:
    """A learnable image dataset made from nothing: class patterns plus noise, deterministic in ``seed``.

    Each class has a smooth random pattern (a 4×4 grid of random values upsampled bilinearly); an example is
    ``0.5 + amplitude·pattern·s + noise·N(0, 1)``, with a per-example contrast ``s ∈ [0.6, 1.4]``, clipped to
    [0, 1] and quantized to 8 bits like a real image. Patterns differ by much more than ε = 8/255 in l∞, so
    robust training can succeed, while the noise makes clean training not instant.

    Examples
    --------
    >>> data = make_generated(20, shape=(1, 8, 8), seed=1)
    >>> len(data), data.input_shape, data.images.dtype
    (20, (1, 8, 8), torch.uint8)
    """
    if n < num_classes:
        raise ValueError(f"the generated dataset needs at least {num_classes} examples, got {n}")
    generator = torch.Generator().manual_seed(derive_seed(seed, GENERATED))
    c, h, w = shape
    coarse = torch.rand(num_classes, c, 4, 4, generator=generator) * 2 - 1
    patterns = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    patterns = patterns / patterns.abs().amax(dim=(1, 2, 3), keepdim=True)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=generator)]
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)
    x = 0.5 + amplitude * contrast * patterns[labels] + noise * torch.randn(n, c, h, w, generator=generator)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels, num_classes, None, None)


def load_dataset(name: str, *, root: str | None = None, download: bool = False, generated_size: int = 6000,
                 generated_shape=(3, 32, 32), data_seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Return ``(train, test)`` for ``name`` in :data:`DATASETS`.

    Raises
    ------
    DataError
        If the files are missing or malformed (the message names the expected folder).
    ValueError
        If ``name`` is unknown.
    """
    if name == "generated":
        test_size = max(generated_size // 6, 10)
        full = make_generated(generated_size + test_size, shape=tuple(generated_shape), seed=data_seed)
        return full.subset(range(generated_size)), full.subset(range(generated_size, len(full)))
    if name == "cifar10":
        root = root or "data"
        return load_cifar10(root, train=True, download=download), load_cifar10(root, train=False)
    if name == "fashion-mnist":
        root = root or FASHION_MNIST_DEFAULT_ROOT
        return load_fashion_mnist(root, train=True), load_fashion_mnist(root, train=False)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
