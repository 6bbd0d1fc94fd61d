"""Low-rank adapters (LoRA, Hu et al. 2021) in plain torch: attach, train, save, load, merge.

A LoRA adapter adds ``scale * B @ A`` to a frozen weight ``W`` (``W: [out, in]``, ``A: [r, in]``,
``B: [out, r]``, ``scale = alpha / r``), so a target layer computes ``y = x W^T + scale * (x A^T) B^T``.
``B`` starts at zero, so a fresh adapter leaves the model unchanged.

- :func:`attach`: forward hooks on the target modules of a Hugging Face model (``torch.nn.Linear``, or GPT-2's
  ``Conv1D`` whose weight is stored ``[in, out]``) that add the low-rank term; returns the trainable
  :class:`Adapter` (its tensors) and a handle to detach them.
- :func:`save_adapter` / :func:`load_adapter`: one safetensors file (``<module path>.lora_A`` /
  ``.lora_B``; the config and the training recipe as string metadata, so they are part of the file's
  sha256). Stored as float16 by default (an adapter for SmolLM2-135M is 1-2 MB).
- :func:`merge`: ``W += scale * B @ A`` in place (float32 arithmetic), after which the model is a plain
  model that every backend loads unchanged. A test checks merged == base + hooks.

No peft: these are the few dozen lines it takes.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["LoRAConfig", "Adapter", "AdapterError", "target_modules", "init_adapter", "attach", "merge",
           "save_adapter", "load_adapter", "adapter_bytes"]

FORMAT = "interp-workbench-lora-1"


class AdapterError(ValueError):
    """A LoRA config, file or target that cannot be used."""


@dataclass(frozen=True)
class LoRAConfig:
    """Which modules get an adapter, and its shape.

    Attributes:
        rank: ``r``, the inner dimension.
        alpha: ``scale = alpha / rank``.
        targets: module paths relative to each decoder layer (e.g. ``"self_attn.q_proj"``,
            ``"mlp.down_proj"``).
        layers: ``(start, stop)`` as fractions of depth (``(0.0, 1.0)``: every layer). Layer ``L`` gets
            adapters when ``start * n_layers <= L < stop * n_layers``.
    """

    rank: int = 4
    alpha: float = 8.0
    targets: tuple[str, ...] = ("self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.up_proj",
                                "mlp.down_proj")
    layers: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "layers", tuple(float(x) for x in self.layers))
        if self.rank < 1:
            raise AdapterError(f"LoRA rank must be >= 1, got {self.rank}")
        if not self.targets:
            raise AdapterError("LoRAConfig.targets is empty: name at least one module per layer (e.g. 'mlp.down_proj')")
        lo, hi = self.layers
        if not 0.0 <= lo < hi <= 1.0:
            raise AdapterError(f"LoRAConfig.layers must be fractions 0 <= start < stop <= 1, got {self.layers}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"], d["layers"] = list(self.targets), list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LoRAConfig":
        return cls(int(d["rank"]), float(d["alpha"]), tuple(d["targets"]), tuple(d["layers"]))


@dataclass
class Adapter:
    """LoRA tensors by module path (``{path: (A [r, in], B [out, r])}``), its config and metadata."""

    config: LoRAConfig
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    meta: dict = field(default_factory=dict)

    def parameters(self) -> list[torch.Tensor]:
        return [t for path in sorted(self.tensors) for t in self.tensors[path]]

    def n_parameters(self) -> int:
        return sum(t.numel() for t in self.parameters())

    def delta(self, path: str) -> torch.Tensor:
        """``scale * B @ A`` for one module, ``[out, in]`` in float32."""
        a, b = self.tensors[path]
        return self.config.scale * (b.float() @ a.float())


def _layers_of(model: torch.nn.Module) -> tuple[str, list[torch.nn.Module]]:
    from workbench.models.arch import arch_for_config

    arch = arch_for_config(model.config, model)
    return arch.layers, list(arch.get(model, arch.layers))


def _in_out(mod: torch.nn.Module) -> tuple[int, int, bool]:
    """(in, out, is_conv1d) of a target module."""
    if isinstance(mod, torch.nn.Linear):
        return mod.in_features, mod.out_features, False
    if type(mod).__name__ == "Conv1D" and hasattr(mod, "weight") and mod.weight.ndim == 2:  # GPT-2: weight [in, out]
        return mod.weight.shape[0], mod.weight.shape[1], True
    raise AdapterError(f"LoRA targets must be torch.nn.Linear (or GPT-2 Conv1D); got {type(mod).__name__}")


def target_modules(model: torch.nn.Module, config: LoRAConfig) -> dict[str, torch.nn.Module]:
    """``{full module path: module}`` of every adapter target, in a fixed order."""
    prefix, layers = _layers_of(model)
    n = len(layers)
    lo, hi = config.layers
    chosen = [L for L in range(n) if lo * n <= L < hi * n]
    if not chosen:
        raise AdapterError(f"LoRAConfig.layers={config.layers} selects no layer of a {n}-layer model")
    out: dict[str, torch.nn.Module] = {}
    for L in chosen:
        for rel in config.targets:
            mod = layers[L]
            try:
                for part in rel.split("."):
                    mod = getattr(mod, part)
            except AttributeError:
                have = sorted(name for name, m in layers[L].named_modules() if isinstance(m, torch.nn.Linear)
                              or type(m).__name__ == "Conv1D")
                raise AdapterError(f"layer {L} has no module {rel!r}; its linear modules are: {', '.join(have)}") \
                    from None
            _in_out(mod)
            out[f"{prefix}.{L}.{rel}"] = mod
    return out


def init_adapter(model: torch.nn.Module, config: LoRAConfig, *, seed: int = 0) -> Adapter:
    """A fresh float32 adapter: ``A`` uniform in +-1/sqrt(in) (Kaiming-uniform with a = sqrt(5), as
    ``torch.nn.Linear`` initialises), ``B = 0``; drawn from a generator seeded with ``seed`` in module order."""
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for path, mod in target_modules(model, config).items():
        d_in, d_out, _ = _in_out(mod)
        bound = 1.0 / math.sqrt(d_in)
        a = (torch.rand(config.rank, d_in, generator=g) * 2 - 1) * bound
        tensors[path] = (a, torch.zeros(d_out, config.rank))
    return Adapter(config, tensors)


class _Attached:
    def __init__(self, handles: list) -> None:
        self.handles = handles

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def __enter__(self) -> "_Attached":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def attach(model: torch.nn.Module, adapter: Adapter) -> _Attached:
    """Add the adapter's low-rank terms to ``model``'s outputs through forward hooks (the weights stay
    as they are). Returns a handle: ``.remove()``, or use it as a context manager. The adapter's
    tensors are used as they are (set ``requires_grad`` on them to train)."""
    mods = target_modules(model, adapter.config)
    missing = sorted(set(adapter.tensors) - set(mods))
    if missing:
        raise AdapterError(f"the adapter has modules this model lacks: {missing[:4]}")
    scale = adapter.config.scale
    handles = []
    for path, (a, b) in adapter.tensors.items():
        mod = mods[path]

        def hook(m: torch.nn.Module, inp: tuple, out: torch.Tensor, a: torch.Tensor = a, b: torch.Tensor = b):
            x = inp[0]
            return out + scale * ((x @ a.to(x.dtype).t()) @ b.to(x.dtype).t())

        handles.append(mod.register_forward_hook(hook))
    return _Attached(handles)


@torch.no_grad()
def merge(model: torch.nn.Module, adapter: Adapter) -> torch.nn.Module:
    """``W += scale * B @ A`` for every target, in place (float32 arithmetic, cast to the weight's dtype)."""
    mods = target_modules(model, adapter.config)
    missing = sorted(set(adapter.tensors) - set(mods))
    if missing:
        raise AdapterError(f"the adapter has modules this model lacks: {missing[:4]}")
    for path, _ in adapter.tensors.items():
        mod = mods[path]
        d_in, d_out, conv = _in_out(mod)
        delta = adapter.delta(path)
        if tuple(delta.shape) != (d_out, d_in):
            raise AdapterError(f"{path}: adapter delta {tuple(delta.shape)} does not fit the weight ({d_out}, {d_in})")
        w = mod.weight
        upd = (delta.t() if conv else delta).to(w.device)
        w.copy_((w.float() + upd).to(w.dtype))
    return model


def adapter_bytes(adapter: Adapter, *, dtype: torch.dtype = torch.float16) -> bytes:
    """The safetensors bytes of an adapter (deterministic: sorted keys, metadata as sorted JSON)."""
    from safetensors.torch import save

    tensors = {}
    for path in sorted(adapter.tensors):
        a, b = adapter.tensors[path]
        tensors[f"{path}.lora_A"] = a.detach().to("cpu", dtype).contiguous()
        tensors[f"{path}.lora_B"] = b.detach().to("cpu", dtype).contiguous()
    # one metadata key: safetensors writes its metadata map in no fixed order, which would make the bytes (and the
    # sha256) of the same adapter differ from save to save
    doc = {"format": FORMAT, "config": adapter.config.to_dict(), "meta": adapter.meta}
    return save(tensors, metadata={"workbench_lora": json.dumps(doc, sort_keys=True, default=str)})


def save_adapter(path: str | Path, adapter: Adapter, *, dtype: torch.dtype = torch.float16) -> str:
    """Write the adapter as safetensors (atomically); returns the file's sha256."""
    import hashlib

    from workbench.store import atomic_write_bytes

    data = adapter_bytes(adapter, dtype=dtype)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_adapter(path: str | Path) -> Adapter:
    """Read an adapter written by :func:`save_adapter` (tensors as stored, e.g. float16)."""
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise AdapterError(f"adapter file not found: {p}")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            names = list(f.keys())
            raw = {k: f.get_tensor(k) for k in names}
    except Exception as e:  # a truncated or foreign file
        raise AdapterError(f"{p} is not a readable safetensors adapter ({type(e).__name__}: {e}); rebuild it") from e
    try:
        doc = json.loads(meta["workbench_lora"])
    except (KeyError, json.JSONDecodeError):
        doc = {}
    if doc.get("format") != FORMAT:
        raise AdapterError(f"{p} is not an interp-workbench LoRA adapter (no {FORMAT!r} metadata); LoRA files from "
                           "other tools need converting to A/B tensors named '<module path>.lora_A' / '.lora_B'")
    config = LoRAConfig.from_dict(doc["config"])
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for k in names:
        if k.endswith(".lora_A"):
            path = k[: -len(".lora_A")]
            if f"{path}.lora_B" not in raw:
                raise AdapterError(f"{p}: {path} has lora_A but no lora_B")
            tensors[path] = (raw[k], raw[f"{path}.lora_B"])
    return Adapter(config, tensors, doc.get("meta", {}))

