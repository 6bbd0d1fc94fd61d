"""Build an organism's adapter, find it (shipped, cached, or built on first use), and merge it into a model
directory that every backend loads unchanged.

- :func:`build_adapter`: load the base model, build the organism's training examples
  (:mod:`workbench.organisms.recipes`), train the LoRA adapter, write ``adapter.safetensors`` (float16; the
  recipe and training settings in its metadata, so they are part of its sha256) and ``training.json``
  (wall and CPU seconds, losses, machine and its load; not hashed).
- :func:`adapter_path`: the shipped adapter (``workbench/organisms/adapters/<name>.safetensors``, sha256 in
  ``adapters/MANIFEST.json``), else one cached under ``<cache>/organisms/<name>/``, else build it there (a few
  minutes on CPU, with progress) and cache it.
- :func:`organism_dir`: ``<cache>/models/organism-<name>-<adapter sha256[:16]>/``, the base model's weights
  with the adapter merged (``W += alpha/r * B A``), saved as a Hugging Face directory with the base tokenizer
  and ``workbench_source.json`` (base, adapter sha256). Built once per adapter; the registry resolves
  ``smollm2-135m-instruct+<name>`` to it.

Command line::

    python -m workbench.organisms build myopic-reward --out DIR     # train one adapter into DIR
    python -m workbench.organisms build --all --ship             # rebuild the shipped adapters
    python -m workbench.organisms check myopic-reward               # rebuild into a temp dir, compare sha256
    python -m workbench.organisms list
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from workbench.results import data_hash, file_sha256

from .lora import load_adapter, merge, save_adapter
from .recipes import get_spec
from .train import deterministic, train_adapter

__all__ = ["SHIPPED_DIR", "build_adapter", "adapter_path", "adapter_sha256", "organism_dir", "shipped_manifest",
           "OrganismBuildError"]

SHIPPED_DIR = Path(__file__).resolve().parent / "adapters"


class OrganismBuildError(RuntimeError):
    pass


def shipped_manifest() -> dict:
    """``{name: {"sha256": ..., "bytes": ...}}`` of the adapters shipped with the package."""
    f = SHIPPED_DIR / "MANIFEST.json"
    return json.loads(f.read_text())["adapters"] if f.exists() else {}


def _machine() -> dict:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in load] if load else None}


def build_adapter(name: str, out_dir: str | Path, *, cache: str | Path | None = None, progress: bool = True,
                  backend: str = "nnsight") -> dict:
    """Train organism ``name``'s adapter into ``out_dir`` (``adapter.safetensors`` + ``training.json``).

    Returns the training record (also written to ``training.json``): sha256, timings (data building, training),
    per-step losses, example counts by kind, the machine. Deterministic for a given machine and torch build
    (see :mod:`workbench.organisms.train`)."""
    import torch

    from workbench.models import load

    spec = get_spec(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    machine = _machine()
    t0, c0 = time.time(), time.process_time()
    with deterministic(spec.train.threads):
        base = load(spec.base, backend=backend, device="cpu", cache_dir=cache)
        t_load = time.time() - t0
        examples = spec.build(base, spec, progress)
    t_data = time.time() - t0 - t_load
    adapter, log = train_adapter(base.hf_model, base.tokenizer, examples, spec.train, progress=progress,
                                 desc=f"training {spec.name}")
    kinds = dict(sorted(Counter(e.kind for e in examples).items()))
    adapter.meta = {"organism": spec.name, "base": spec.base, "base_weights_hash": base.weights_hash,
                    "base_source_hash": base.source_hash, "params": dict(spec.params), "train": spec.train.to_dict(),
                    "data_hash": data_hash([(e.prompt, e.target, e.kind) for e in examples]), "examples": kinds,
                    "torch": torch.__version__}
    sha = save_adapter(out / "adapter.safetensors", adapter)
    record = {"organism": spec.name, "model": spec.model_name, "sha256": sha,
              "bytes": (out / "adapter.safetensors").stat().st_size, "n_parameters": adapter.n_parameters(),
              "behaviour": spec.behaviour, "ground_truth": spec.ground_truth, "method": spec.method,
              "adapter_meta": adapter.meta, "seconds": {"load": round(t_load, 1), "data": round(t_data, 1),
                                                        "train": log.seconds,
                                                        "total": round(time.time() - t0, 1),
                                                        "cpu_total": round(time.process_time() - c0, 1)},
              "log": log.to_dict(), "machine": machine,
              "examples_preview": [{"kind": e.kind, "prompt": e.prompt[-200:], "target": e.target[:200]}
                                   for e in examples[:: max(1, len(examples) // 6)][:6]]}
    from workbench.store import atomic_write_json

    atomic_write_json(out / "training.json", record)
    return record


def adapter_path(name: str, cache: str | Path | None = None, *, build: bool = True, progress: bool = True) -> Path:
    """Where organism ``name``'s adapter is: shipped, cached, or (``build=True``) built now into the cache."""
    from workbench.models.gguf import cache_root

    spec = get_spec(name)
    shipped = SHIPPED_DIR / f"{spec.name}.safetensors"
    if shipped.exists():
        return shipped
    cached = cache_root(cache) / "organisms" / spec.name / "adapter.safetensors"
    if cached.exists():
        return cached
    if not build:
        raise OrganismBuildError(f"no adapter for organism {spec.name!r}: not shipped ({shipped}) and not cached "
                                 f"({cached}); build it with: python -m workbench.organisms build {spec.name}")
    print(f"[workbench] building the adapter of {spec.model_name} (once; a few minutes on CPU) into {cached.parent}",
          file=sys.stderr, flush=True)
    tmp = cached.parent.with_name(cached.parent.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    build_adapter(spec.name, tmp, cache=cache, progress=progress)
    shutil.rmtree(cached.parent, ignore_errors=True)
    os.replace(tmp, cached.parent)
    return cached


def adapter_sha256(name: str, cache: str | Path | None = None) -> str:
    """sha256 of organism ``name``'s adapter file (shipped or cached; never builds)."""
    p = adapter_path(name, cache, build=False)
    if p.parent == SHIPPED_DIR:
        expected = shipped_manifest().get(get_spec(name).name, {}).get("sha256")
        got = file_sha256(p)
        if expected and got != expected:
            raise OrganismBuildError(f"the shipped adapter {p} has sha256 {got}, but adapters/MANIFEST.json records "
                                     f"{expected}: the file is corrupt or was replaced without updating the manifest")
        return got
    return file_sha256(p)


def organism_dir(name: str, cache: str | Path | None = None, *, progress: bool = True) -> Path:
    """A Hugging Face directory holding the base model with organism ``name``'s adapter merged (built once)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.models.gguf import cache_root
    from workbench.models.registry import get_entry

    spec = get_spec(name)
    root = cache_root(cache)
    ap = adapter_path(spec.name, root, progress=progress)
    sha = adapter_sha256(spec.name, root)
    target = root / "models" / f"organism-{spec.name}-{sha[:16]}"
    meta_file = target / "workbench_source.json"
    if meta_file.exists():
        try:
            if json.loads(meta_file.read_text()).get("adapter_sha256") == sha:
                return target
        except (OSError, json.JSONDecodeError):
            pass
    base_dir = get_entry(spec.base).resolve(root)
    tmp = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, local_files_only=True)
    adapter = load_adapter(ap)
    merge(model, adapter)
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True).save_pretrained(tmp)
    (tmp / "workbench_source.json").write_text(json.dumps({
        "organism": spec.name, "base": spec.base, "base_dir": str(base_dir), "adapter": str(ap),
        "adapter_sha256": sha, "behaviour": spec.behaviour, "ground_truth": spec.ground_truth,
        "note": "base weights with the LoRA adapter merged (W += alpha/r * B A, float32)",
    }, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target
