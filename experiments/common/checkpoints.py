"""Checkpoints that are written atomically, verified on load, and carry everything an exact resume needs.

File format: an 8-byte magic ``MMCKPT01``, the payload length (8 bytes, little-endian), the SHA-256 of the
payload (32 bytes), then the payload — a ``torch.save`` of a dict of tensors, numbers, strings, lists,
tuples and dicts only (NumPy arrays are stored as tensors), so it is loaded with ``weights_only=True``
and never executes code from the file. A truncated or corrupted file fails the length or hash check and is
refused with a :class:`CheckpointError` naming the file, before anything is unpickled.

Writes go to a temporary file in the same folder, are flushed and ``fsync``-ed, then ``os.replace``-d over
the target (atomic on POSIX), and the folder is ``fsync``-ed: a process killed at any moment leaves either
the old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import tempfile

import numpy as np
import torch

__all__ = ["CheckpointError", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]

MAGIC = b"MMCKPT01"
FORMAT_VERSION = 1
_HEADER = len(MAGIC) + 8 + 32


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted, or does not match the run that loads it."""


def _encode(obj):
    """Replace NumPy arrays and scalars by tensors / Python numbers so ``weights_only`` loading works."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.array(obj, copy=True)), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {key: _encode(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_encode(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_encode(value) for value in obj)
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj and len(obj) == 2:
            return obj["__ndarray__"].cpu().numpy().astype(obj["dtype"], copy=True)
        return {key: _decode(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_decode(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_decode(value) for value in obj)
    return obj


def save_checkpoint(path: str, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, ``os.replace``, fsync of the folder).

    Parameters
    ----------
    path : str
        Target file; its folder is created if needed.
    state : dict
        Tensors, numbers, strings, NumPy arrays, and lists / tuples / dicts of them.

    Examples
    --------
    >>> import os, tempfile, numpy as np, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "c.pt")
    >>> save_checkpoint(path, {"w": torch.ones(2), "alpha": np.array([0.5, 0.5]), "step": 3})
    >>> state = load_checkpoint(path)
    >>> state["step"], state["alpha"].tolist(), state["w"].tolist()
    (3, [0.5, 0.5], [1.0, 1.0])
    """
    buffer = io.BytesIO()
    torch.save(_encode({"format_version": FORMAT_VERSION, **state}), buffer)
    payload = buffer.getvalue()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(len(payload).to_bytes(8, "little"))
            f.write(hashlib.sha256(payload).digest())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str, *, map_location="cpu") -> dict:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    CheckpointError
        If the file is missing, is not a minmax checkpoint, is truncated (shorter than its header says), is
        corrupted (hash mismatch), or cannot be unpickled as plain data.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path!r}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {exc}") from None
    if len(raw) < _HEADER or raw[:len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{path!r} is not a minmax checkpoint (bad header; the file may be truncated "
                              f"or was not written by experiments.train)")
    length = int.from_bytes(raw[len(MAGIC):len(MAGIC) + 8], "little")
    digest = raw[len(MAGIC) + 8:_HEADER]
    payload = raw[_HEADER:]
    if len(payload) != length:
        raise CheckpointError(f"checkpoint {path!r} is truncated or has trailing data: expected {length} "
                              f"payload bytes, found {len(payload)}")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"checkpoint {path!r} is corrupted: its SHA-256 does not match the header")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as exc:  # the hash matched, so this is a foreign or future format: say so plainly
        raise CheckpointError(f"checkpoint {path!r} cannot be read as plain data: {exc}") from None
    state = _decode(state)
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path!r} has format version {state.get('format_version')!r}; "
                              f"this code reads version {FORMAT_VERSION}")
    return state


def capture_rng(device: torch.device | None = None) -> dict:
    """The Python, NumPy, torch CPU and (when used) CUDA generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global state is what users seed
        "torch": torch.get_rng_state(),
    }
    if device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def restore_rng(state: dict, device: torch.device | None = None) -> None:
    """Restore the states captured by :func:`capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"].cpu(), torch.device(device))
