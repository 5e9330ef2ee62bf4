"""Datasets: CIFAR10 on disk, Fashion-MNIST idx files, the generated set, the validation split."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from experiments.common import data as D


def write_cifar(root, per_batch=4, test=5, seed=0):
    """A miniature CIFAR10 in the layout of cifar-10-python.tar.gz (pickled dicts, rows of 3072 uint8)."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder)
    truth = {}
    for name, n in [*[(f"data_batch_{i}", per_batch) for i in range(1, 6)], ("test_batch", test)]:
        images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        entry = {"batch_label": f"{name} of 5", "labels": labels, "data": images,
                 "filenames": [f"img_{i}.png" for i in range(n)]}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(entry, f, protocol=2)
        truth[name] = (images.reshape(n, 3, 32, 32), labels)
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                            "truck"], "num_cases_per_batch": per_batch, "num_vis": 3072}
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return truth


def test_cifar10_reads_the_on_disk_format(tmp_path):
    truth = write_cifar(str(tmp_path))
    train = D.load_cifar10(str(tmp_path), train=True)
    test = D.load_cifar10(str(tmp_path), train=False)
    expect = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    np.testing.assert_array_equal(train.images.numpy(), expect)
    assert train.labels.tolist() == sum((truth[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    np.testing.assert_array_equal(test.images.numpy(), truth["test_batch"][0])
    assert test.labels.tolist() == truth["test_batch"][1]
    assert train.num_classes == 10 and train.mean == D.CIFAR10_MEAN
    # a pixel read back in [0, 1] is the byte / 255, channel-major like the file
    x, _ = train.batch([0])
    assert float(x[0, 1, 0, 0]) == pytest.approx(expect[0, 1, 0, 0] / 255)


def test_cifar10_torchvision_path_agrees(tmp_path, monkeypatch):
    """With torchvision's MD5 checks bypassed, torchvision itself reads the miniature: same tensors."""
    write_cifar(str(tmp_path))
    ours = D.load_cifar10(str(tmp_path), train=True)
    import torchvision.datasets.cifar as tv

    monkeypatch.setattr(tv, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv.CIFAR10, "_check_integrity", lambda self: True)
    theirs = D.load_cifar10(str(tmp_path), train=True)
    assert torch.equal(ours.images, theirs.images) and torch.equal(ours.labels, theirs.labels)


def test_cifar10_missing_folder_names_it(tmp_path):
    with pytest.raises(D.DataError, match="cifar-10-batches-py") as info:
        D.load_cifar10(str(tmp_path / "nowhere"), train=True)
    assert str(tmp_path / "nowhere") in str(info.value)


def test_cifar10_missing_batch_file(tmp_path):
    write_cifar(str(tmp_path))
    os.unlink(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(D.DataError, match="data_batch_3"):
        D.load_cifar10(str(tmp_path), train=True)


def write_idx(path, array, *, compress):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(
        int(s).to_bytes(4, "big") for s in array.shape)
    payload = header + array.tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    path = str(tmp_path / ("x.idx" + (".gz" if compress else "")))
    write_idx(path, images, compress=compress)
    np.testing.assert_array_equal(D.read_idx(path), images)
    ints = rng.integers(-5, 5, size=(3, 2)).astype(">i4")
    write_idx(str(tmp_path / "i.idx"), ints, compress=False)
    np.testing.assert_array_equal(D.read_idx(str(tmp_path / "i.idx")), ints)


def test_read_idx_refuses_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(D.DataError, match="magic"):
        D.read_idx(str(tmp_path / "bad"))
    write_idx(str(tmp_path / "short"), np.zeros((4, 5), np.uint8), compress=False)
    raw = (tmp_path / "short").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-3])
    with pytest.raises(D.DataError, match="truncated"):
        D.read_idx(str(tmp_path / "short"))
    with pytest.raises(D.DataError, match="not found"):
        D.read_idx(str(tmp_path / "absent"))


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_from_idx_files(tmp_path, compress):
    rng = np.random.default_rng(2)
    sets = {}
    for prefix, n in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        suffix = ".gz" if compress else ""
        write_idx(str(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}"), images, compress=compress)
        write_idx(str(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}"), labels, compress=compress)
        sets[prefix] = (images, labels)
    train, test = D.load_dataset("fashion-mnist", root=str(tmp_path))
    assert train.input_shape == (1, 28, 28) and len(test) == 5
    np.testing.assert_array_equal(train.images[:, 0].numpy(), sets["train"][0])
    assert train.labels.tolist() == sets["train"][1].tolist()
    np.testing.assert_array_equal(test.images[:, 0].numpy(), sets["t10k"][0])


def test_fashion_mnist_missing_folder(tmp_path):
    with pytest.raises(D.DataError, match="train-images-idx3-ubyte"):
        D.load_fashion_mnist(str(tmp_path / "nowhere"), train=True)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(D.DataError, match="dataset-fashion-mnist"):
        D.load_fashion_mnist(str(tmp_path / "empty"), train=True)


def test_generated_is_deterministic_and_learnable():
    a = D.make_generated(200, shape=(1, 12, 12), seed=3)
    b = D.make_generated(200, shape=(1, 12, 12), seed=3)
    c = D.make_generated(200, shape=(1, 12, 12), seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    assert sorted(set(a.labels.tolist())) == list(range(10))
    # learnable: nearest class mean (from the first half) classifies the second half well above chance
    x = a.images.float().flatten(1) / 255
    means = torch.stack([x[:100][a.labels[:100] == k].mean(0) for k in range(10)])
    pred = torch.cdist(x[100:], means).argmin(1)
    assert (pred == a.labels[100:]).float().mean() > 0.6


def test_validation_split_partitions_the_data():
    data = D.make_generated(100, shape=(1, 4, 4))
    train, val = D.split_validation(data, 10, seed=0)
    assert len(train) == 90 and len(val) == 10
    both = torch.cat([train.images.flatten(1), val.images.flatten(1)])
    assert torch.unique(both, dim=0).shape[0] == torch.unique(data.images.flatten(1), dim=0).shape[0]
