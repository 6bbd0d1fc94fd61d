"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ../shared/data, a sibling of the repository root (read-only reference data).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared data directory; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared reference data not found at {SHARED_DATA} (expected a 'shared/data' "
            f"directory next to the repository root); these tests need it."
        )
    return SHARED_DATA
