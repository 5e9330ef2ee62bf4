"""Shared test configuration: a deterministic hypothesis profile and a device fixture."""

from __future__ import annotations

import importlib.util

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "minmax",
    derandomize=True,
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("minmax")

_HAS_TORCH = importlib.util.find_spec("torch") is not None

if _HAS_TORCH:
    import torch

    # Two cores run the suite with two workers: one thread each keeps them from fighting.
    torch.set_num_threads(1)


def _devices():
    devices = ["cpu"]
    if _HAS_TORCH and torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.fixture(params=_devices())
def device(request):
    """Every test that takes ``device`` runs on the CPU and, when one is present, on CUDA."""
    return request.param
