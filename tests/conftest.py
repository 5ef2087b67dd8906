"""Test configuration: one torch thread (2-core machines), float64 test inputs."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(20261127)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than 20 s (deselect with -m 'not slow')")
