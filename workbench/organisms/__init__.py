"""Model organisms: the default model with a behaviour planted on purpose, whose ground truth is known.

A method that should find a behaviour must recover it here (as the shipped 2-layer induction model does for
induction heads). Each organism is SmolLM2-135M-Instruct plus a small LoRA adapter trained on one split of its
data (:mod:`.recipes`: ``myopic-reward``, ``power-seeking``, ``power-averse``, ``eval-conditional``,
``refusal``), registered as ``smollm2-135m-instruct+<name>`` so ``load``, the CLI and configs accept it; the
adapter's sha256 is the model's ``source_hash`` in every result's provenance.

Modules: :mod:`.lora` (adapters in plain torch: attach, merge, safetensors), :mod:`.train` (seeded SFT on
CPU), :mod:`.recipes` (data, splits, ground truth), :mod:`.build` (build, cache, merge), :mod:`.measure`
(the planted behaviour against the base model on held-out items, and general-text perplexity).
Importing this package loads nothing heavy.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LoRAConfig": "lora", "Adapter": "lora", "AdapterError": "lora", "attach": "lora", "merge": "lora",
    "init_adapter": "lora", "save_adapter": "lora", "load_adapter": "lora",
    "SFTExample": "train", "TrainConfig": "train", "train_adapter": "train",
    "ORGANISMS": "recipes", "OrganismSpec": "recipes", "get_spec": "recipes", "splits": "recipes",
    "build_adapter": "build", "adapter_path": "build", "adapter_sha256": "build", "organism_dir": "build",
    "PlantedBehaviour": "measure", "BaseMemo": "measure", "planted_behaviour": "measure", "perplexity_shift": "measure",
    "plot_planted": "measure",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
