"""``load(spec, backend=...)``: one entry point for every way a user names a model.

``spec`` may be

- a registered name (``"smollm2-135m-instruct"``, ``"tiny-llama"``...; see ``workbench models``),
- a local directory in Hugging Face layout (``config.json``, weights, tokenizer files),
- a ``.gguf`` file (dequantised once to float32 and cached as safetensors),
- a Hugging Face model object, with ``tokenizer=``,
- a hub id ``"org/name"``: loaded from the local HF cache if present, otherwise downloaded where
  the hub is reachable. Where it is not, the call fails within seconds with a clear message
  (a 3-second connection check runs first; transformers alone retries for about 30 s).

Attention is always the eager implementation (attention patterns are observable, and results
match a plain HF forward to 1e-5). ``trust_remote_code`` is off unless you turn it on.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from .arch import arch_for_config
from .gguf import ModelFileError, cache_root, dequantised_dir
from .hooked import HookedModel
from .registry import UnknownModelError, get_entry

__all__ = ["load", "ModelLoadError", "HubUnreachableError"]


class ModelLoadError(RuntimeError):
    pass


class HubUnreachableError(ModelLoadError):
    pass


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _resolve_dtype(dtype: Any) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(table)}")
    return table[dtype]


def _resolve_device(device: Any) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def check_local_dir(path: Path) -> None:
    """Raise :class:`ModelFileError` naming what is missing from an HF-layout directory."""
    if not path.exists():
        raise ModelFileError(f"model directory not found: {path}")
    if not path.is_dir():
        raise ModelFileError(f"{path} is a file, not a model directory (for a GGUF file the name must end in .gguf)")
    cfg = path / "config.json"
    if not cfg.exists():
        raise ModelFileError(
            f"{path} has no config.json, so it is not a Hugging Face model directory. Save one with "
            "model.save_pretrained(dir) and tokenizer.save_pretrained(dir)."
        )
    try:
        json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{cfg} is corrupt (not valid JSON: {e}); re-save the model with save_pretrained") from e
    if not any((path / f).exists() for f in _WEIGHT_FILES) and not list(path.glob("*.safetensors")):
        raise ModelFileError(
            f"{path} has a config.json but no weights ({' / '.join(_WEIGHT_FILES)}); the directory is "
            "incomplete. Re-save it with model.save_pretrained(dir)."
        )


def _has_tokenizer(path: Path) -> bool:
    return any((path / f).exists() for f in _TOKENIZER_FILES)


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the HF endpoint accepts a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False, "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    u = urlparse(endpoint)
    host, port = u.hostname or "huggingface.co", u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, f"{host}:{port}: {e}"


def _in_hub_cache(repo_id: str, revision: str | None) -> bool:
    """Whether ``repo_id``'s config.json is in the local Hugging Face cache (read from the environment
    now, so ``HF_HOME`` / ``HF_HUB_CACHE`` set after import count)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a transformers dependency
        return True
    cache = os.environ.get("HF_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json", cache_dir=cache, revision=revision), str)
    except Exception:  # a malformed id or cache: let the loader report it
        return True


def _load_hf(path_or_id: str, dtype: torch.dtype, device: str, *, local_only: bool, trust_remote_code: bool,
             revision: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = dict(local_files_only=local_only, trust_remote_code=trust_remote_code)
    if revision is not None:
        kw["revision"] = revision
    model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=dtype, attn_implementation="eager", **kw)
    tok = AutoTokenizer.from_pretrained(path_or_id, **kw)
    return model.to(device).eval(), tok


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or spec.count("/") > 1 \
        or os.sep in spec and not _looks_like_hub_id(spec)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def load(spec: Any, backend: str = "tl", *, tokenizer: Any = None, device: Any = None, dtype: Any = torch.float32,
         cache_dir: str | Path | None = None, trust_remote_code: bool = False, revision: str | None = None,
         prepend_bos: bool | None = None, name: str | None = None) -> HookedModel:
    """Load a model and wrap it in a :class:`HookedModel` on ``backend`` (``"tl"`` or ``"nnsight"``).

    Args:
        spec: registered name, local HF directory, ``.gguf`` file, hub id, or HF model object.
        backend: ``"tl"`` (TransformerLens ``TransformerBridge``) or ``"nnsight"``.
        tokenizer: required with a model object; optional override otherwise.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (default: CUDA if available).
        dtype: parameter dtype (default float32).
        cache_dir: where dequantised / tiny models are cached (default :func:`cache_root`).
        trust_remote_code: allow repository code to run (off by default).
        prepend_bos: BOS policy for raw text (default: the registry's, else the tokenizer's behaviour).
        name: display name recorded in results.

    With ``backend="tl"`` the bridge wraps the HF modules *in place*; pass a copy of a model object
    you want to keep unwrapped.
    """
    if backend not in ("tl", "nnsight"):
        raise ValueError(f"backend must be 'tl' or 'nnsight', got {backend!r}")
    dt, dev = _resolve_dtype(dtype), _resolve_device(device)
    cache = cache_root(cache_dir)
    notes, source_hash, tl_name = "", None, None
    if isinstance(spec, torch.nn.Module):
        if tokenizer is None:
            raise ValueError("loading a model object needs its tokenizer: load(model, tokenizer=tok)")
        model = spec.to(dev).eval()
        if getattr(model.config, "_attn_implementation", "eager") != "eager":
            model.config._attn_implementation = "eager"
        tok = tokenizer
        source = f"object:{type(model).__name__}"
        display = name or getattr(model.config, "name_or_path", None) or type(model).__name__
        # The bridge needs a tokenizer loaded from a directory (an in-memory one breaks it).
        tmp = Path(tempfile.mkdtemp(prefix="workbench-tok-"))
        tok.save_pretrained(tmp)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tmp)
        tl_name = str(tmp)
    elif isinstance(spec, (str, Path)):
        s = str(spec)
        path = Path(s).expanduser()
        entry = None
        if not path.exists() and not _looks_like_path(s) and not _looks_like_hub_id(s):
            entry = get_entry(s)  # raises with close matches for unknown names
            path = entry.resolve(cache)
            notes = entry.notes
            prepend_bos = entry.prepend_bos if prepend_bos is None else prepend_bos
            source_hash = entry.source_hash(cache) if entry.source_hash else None
        display = name or (entry.name if entry else s)
        if path.exists():
            if path.is_file() and path.suffix == ".gguf":
                path = dequantised_dir(path, expected_sha256=None, cache=cache)
                notes = notes or "dequantised from a GGUF file: quantised weights"
            check_local_dir(path)
            if tokenizer is None and not _has_tokenizer(path):
                raise ModelFileError(
                    f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); save one there with "
                    "tokenizer.save_pretrained(dir) or pass tokenizer=..."
                )
            try:
                model, tok = _load_hf(str(path), dt, dev, local_only=True, trust_remote_code=trust_remote_code)
            except Exception as e:  # safetensors, json, torch and config errors all mean a bad directory
                raise ModelLoadError(
                    f"could not load the model in {path}: {type(e).__name__}: {str(e)[:300]}. The directory "
                    "looks corrupt or incomplete; re-save it with model.save_pretrained(dir)."
                ) from e
            source = str(path)
        elif _looks_like_hub_id(s):
            model = None
            # only a repo with its config in the local cache is tried offline: for one that is not,
            # transformers' local_files_only load still asked the hub for an adapter config and retried
            # with backoff (23 s on an air-gapped GPU node) before failing
            if _in_hub_cache(s, revision):
                try:
                    model, tok = _load_hf(s, dt, dev, local_only=True, trust_remote_code=trust_remote_code,
                                          revision=revision)
                except OSError:
                    model = None
            if model is None:
                ok, why = hub_reachable()
                if not ok:
                    raise HubUnreachableError(
                        f"{s!r} is not in the local Hugging Face cache and the hub cannot be reached ({why}). "
                        "Download it where the hub is reachable (huggingface-cli download ...) and pass the "
                        "local directory, or use a registered model (workbench models), e.g. "
                        "'smollm2-135m-instruct', which needs no hub."
                    ) from None
                model, tok = _load_hf(s, dt, dev, local_only=False, trust_remote_code=trust_remote_code,
                                      revision=revision)
            source = f"hub:{s}" + (f"@{revision}" if revision else "")
        else:
            raise ModelFileError(f"no such file or directory: {s}")
        if tokenizer is not None:
            tok = tokenizer
        tl_name = str(path) if path.exists() else s
    else:
        raise TypeError(f"cannot load a model from {type(spec).__name__}; pass a name, path, hub id or model object")
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    arch = arch_for_config(model.config, model)
    if not isinstance(spec, torch.nn.Module):  # a user's own object keeps its requires_grad flags
        model.requires_grad_(False)
    return HookedModel(model, tok, backend=backend, arch=arch, name=display, source=source,
                       prepend_bos=prepend_bos, notes=notes, tl_model_name=tl_name, source_hash=source_hash)


__all__ += ["UnknownModelError", "check_local_dir", "hub_reachable"]
