"""The shipped 2-layer attention-only induction model (see :mod:`circuits.train_induction`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["induction_model_dir", "load_induction_model", "induction_model_info", "INDUCTION_MODEL_NAME"]

INDUCTION_MODEL_NAME = "induction-2l"


def induction_model_dir() -> Path:
    """The HF directory of the shipped model (``circuits/assets/induction-2l``)."""
    d = Path(__file__).resolve().parent / "assets" / INDUCTION_MODEL_NAME
    if not (d / "config.json").exists():
        raise FileNotFoundError(
            f"the induction model is missing from this checkout ({d}); it is shipped with the package and can be "
            f"regenerated with `python -m circuits.train_induction --out {d}` (3-8 minutes on one CPU thread)"
        )
    return d


def load_induction_model(backend: str = "tl", **kw: Any):
    """``workbench.models.load`` of the shipped model (any backend)."""
    from workbench.models import load

    return load(str(induction_model_dir()), backend=backend, name=INDUCTION_MODEL_NAME, **kw)


def induction_model_info() -> dict:
    """The training record (``training.json``: seed, steps, settings, evaluation losses, torch version)."""
    return json.loads((induction_model_dir() / "training.json").read_text())
