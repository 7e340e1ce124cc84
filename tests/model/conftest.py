"""Fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch

from tests.model.tiny import tiny_batch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs on a shared CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    return tiny_batch()
