"""Models: ``load(spec, backend=...) -> HookedModel``, the registry, tiny test models."""

from .cache import ActivationCache
from .gguf import DEFAULT_GGUF, GGUFHashError, ModelFileError, cache_root
from .hooked import ContextLengthError, Generation, GradientResult, HookedModel, ModelFacts, PaddingError
from .loading import HubUnreachableError, ModelLoadError, check_local_dir, hub_reachable, load
from .registry import DEFAULT_MODEL, ModelEntry, UnknownModelError, get_entry, list_models, register_model
from .tokens import PositionError, Tokens, resolve_positions

__all__ = [
    "load", "HookedModel", "ModelFacts", "Generation", "GradientResult", "Tokens", "ActivationCache",
    "resolve_positions", "DEFAULT_MODEL", "DEFAULT_GGUF", "ModelEntry", "register_model", "get_entry",
    "list_models", "cache_root", "check_local_dir", "hub_reachable",
    "ModelLoadError", "HubUnreachableError", "ModelFileError", "GGUFHashError", "UnknownModelError",
    "ContextLengthError", "PaddingError", "PositionError",
]
