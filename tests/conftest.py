"""Test configuration: Hypothesis profiles chosen by HYPOTHESIS_PROFILE (dev, ci, thorough; `make test`
uses ci), the `kernel_backend` fixture that runs a test once per installed CPU backend, and the gpu
marker's skip rule."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

import minitransformer as mt

# kernel_backend is function-scoped, and a Hypothesis test that takes it runs all its examples inside one
# `backend.use` block: that is what is wanted, so the health check that warns about it is off
_QUIET = [HealthCheck.function_scoped_fixture]
settings.register_profile("dev", max_examples=10, deadline=None, suppress_health_check=_QUIET)
settings.register_profile(
    "ci", max_examples=30, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, *_QUIET],
)
settings.register_profile(
    "thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, *_QUIET],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# the CPU backends this machine has: the NumPy reference always, Numba when installed (cuda serves CuPy
# arrays only and has its own tests in test_cuda.py)
CPU_BACKENDS = [name for name in mt.backend.available() if name != "cuda"]


@pytest.fixture(params=CPU_BACKENDS)
def kernel_backend(request: pytest.FixtureRequest):
    """Run the test with every kernel served by one backend ("numpy", then "numba"), so the NumPy
    reference is tested as the library runs it, not only as the yardstick of the faster tiers."""
    with mt.backend.use(request.param):
        yield request.param


def _has_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if any("gpu" in item.keywords for item in items) and not _has_gpu():
        skip = pytest.mark.skip(reason="needs a CUDA device and CuPy")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)
