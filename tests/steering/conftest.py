"""Steering tests: one torch thread while they run.

On the shared 2-core machine a second intra-op thread makes SmolLM2 forwards ~10x slower under
contention (measured: a 4x576 @ 576x1536 matmul takes 0.3 ms with 1 thread, 2-24 ms with 2);
the setting is restored afterwards so other packages' tests keep the root conftest's choice.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
