"""``load(spec, backend=...)``: one entry point for every way a user names a model.

``spec`` may be

- a registered name (``"smollm2-135m-instruct"``, ``"tiny-llama"``...; see ``workbench models``),
- a local directory in Hugging Face layout (``config.json``, weights, tokenizer files),
- a ``.gguf`` file (dequantised once to float32 and cached as safetensors),
- a Hugging Face model object, with ``tokenizer=``,
- a hub id ``"org/name"``: loaded from the local HF cache if present, otherwise downloaded where
  the hub is reachable. Where it is not, the call fails within seconds with a clear message
  (a 3-second connection check runs first; transformers alone retries for about 30 s).

Attention: models load with eager attention; on the nnsight backend ``attn_implementation="auto"`` then
switches to SDPA where the family supports it, and back to eager for any run that reads or writes attention
patterns (TransformerLens computes attention itself). ``trust_remote_code`` is off unless you turn it on.
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

from workbench.errors import WorkbenchError

from . import compat
from .arch import UnsupportedArchitecture, arch_for_config
from .gguf import ModelFileError, cache_root, dequantised_dir
from .hooked import HookedModel
from .registry import UnknownModelError, get_entry

__all__ = ["load", "ModelLoadError", "HubUnreachableError", "DeviceError"]


class ModelLoadError(WorkbenchError, RuntimeError):
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


class DeviceError(WorkbenchError, ValueError):
    pass


def _resolve_device(device: Any) -> str:
    """``"auto"`` -> CUDA when available, else CPU; an explicit device is checked against this machine."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceError(f"unknown device {device!r} ({e}); use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise DeviceError(
                f"device {device!r} was asked for, but CUDA is not available (torch {torch.__version__} is {build}, or "
                "no GPU is visible). Use --device cpu, or install a CUDA build of torch (see the README)."
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise DeviceError(f"device {device!r} does not exist: this machine has {n} GPU(s) (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError(f"device {device!r} was asked for, but MPS is not available on this machine; use --device cpu")
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
             revision: str | None = None, placement: dict | None = None):
    """Config first (an unsupported family is refused before any weights are read or downloaded), then the
    weights and the tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = dict(local_files_only=local_only, trust_remote_code=trust_remote_code)
    if revision is not None:
        kw["revision"] = revision
    config = AutoConfig.from_pretrained(path_or_id, **kw)
    spec = arch_for_config(config)
    mkw = dict(kw)
    if placement:
        mkw.update(placement)
        if isinstance(placement.get("device_map"), dict):
            mkw["device_map"] = _tie_placement(dict(placement["device_map"]), spec, config)
    model = AutoModelForCausalLM.from_pretrained(path_or_id, config=config, dtype=dtype, attn_implementation="eager",
                                                 **mkw)
    tok = AutoTokenizer.from_pretrained(path_or_id, **kw)
    return compat.text_decoder(model).eval(), tok


def _tie_placement(device_map: dict, spec: Any, config: Any) -> dict:
    """With tied embeddings the unembedding *is* the embedding matrix: place it where the embedding goes
    (accelerate keeps one copy with the embedding; TransformerLens refuses a map that says otherwise)."""
    from .arch import text_config

    if getattr(text_config(config), "tie_word_embeddings", False) and spec.embed in device_map \
            and spec.lm_head in device_map:
        device_map[spec.lm_head] = device_map[spec.embed]
    return device_map


def check_support(spec: Any, *, trust_remote_code: bool = False, revision: str | None = None) -> dict:
    """Whether the workbench supports a model, from its config alone (no weights read or downloaded):
    ``{"supported", "family", "architecture", "quirks", "missing", "source"}``. ``spec``: a local
    directory, a ``.gguf`` file (its metadata only), a hub id (the config from the local cache, or the hub
    where reachable), a registered name, or a config object."""
    from transformers import AutoConfig

    from .arch import support_report

    if not isinstance(spec, (str, Path)):
        return {**support_report(spec), "source": type(spec).__name__}
    s = str(spec)
    path = Path(s).expanduser()
    if not path.exists() and not _looks_like_path(s) and not _looks_like_hub_id(s):
        path = get_entry(s).resolve(cache_root(None))
    if path.is_file() and path.suffix == ".gguf":
        try:
            config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
        except Exception as e:  # noqa: BLE001 - gguf metadata errors of every kind
            raise ModelFileError(f"cannot read the metadata of {path} (truncated or corrupt?): {type(e).__name__}: "
                                 f"{str(e)[:200]}; download it again or pass a Hugging Face directory") from e
        return {**support_report(config), "source": str(path)}
    if path.exists():
        check_local_dir(path)
        return {**support_report(AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)),
                "source": str(path)}
    if not _in_hub_cache(s, revision):
        ok, why = hub_reachable()
        if not ok:
            raise HubUnreachableError(f"{s!r}: its config is not in the local Hugging Face cache and the hub cannot "
                                      f"be reached ({why})")
    config = AutoConfig.from_pretrained(s, trust_remote_code=trust_remote_code, revision=revision)
    return {**support_report(config), "source": f"hub:{s}"}


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or spec.count("/") > 1 \
        or os.sep in spec and not _looks_like_hub_id(spec)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def load(spec: Any, backend: str = "tl", *, tokenizer: Any = None, device: Any = None, dtype: Any = torch.float32,
         cache_dir: str | Path | None = None, trust_remote_code: bool = False, revision: str | None = None,
         prepend_bos: bool | None = None, name: str | None = None, check: bool = True,
         attn_implementation: str = "auto", device_map: Any = None, max_memory: dict | None = None,
         offload_folder: str | Path | None = None) -> HookedModel:
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
        attn_implementation: ``"auto"`` (SDPA on the nnsight backend where the family supports it, eager for
            any run that reads or writes attention patterns; TransformerLens computes attention itself),
            ``"eager"``, ``"sdpa"`` or ``"flash_attention_2"``. Recorded in every result's provenance.
        device_map: for a model larger than one device: ``"auto"`` or a dict (module -> device, ``"cpu"`` or
            ``"disk"``), passed to transformers (accelerate places and offloads the weights; one copy of them).
            Inputs go to the embedding's device; activations, caches and results come back there.
        max_memory: per-device memory caps for ``device_map="auto"`` (``{0: "70GiB", "cpu": "200GiB"}``).
        offload_folder: where weights offloaded to ``"disk"`` are kept.
        check: run :meth:`HookedModel.self_check` (cached decoding and the stack runner against an
            uncached forward on six tokens; milliseconds on small models) and refuse a model whose
            paths disagree, e.g. under an untested transformers release.

    With ``backend="tl"`` the bridge wraps the HF modules *in place*; pass a copy of a model object
    you want to keep unwrapped.
    """
    if backend not in ("tl", "nnsight"):
        raise ValueError(f"backend must be 'tl' or 'nnsight', got {backend!r}")
    dt, dev = _resolve_dtype(dtype), _resolve_device(device)
    placement = None
    if device_map is not None:
        if device is not None:
            raise ValueError("give device= or device_map=, not both (device_map places every module itself)")
        placement = {"device_map": device_map}
        if max_memory is not None:
            placement["max_memory"] = max_memory
        if offload_folder is not None:
            placement["offload_folder"] = str(offload_folder)
    elif max_memory is not None or offload_folder is not None:
        raise ValueError("max_memory= and offload_folder= go with device_map= (e.g. device_map='auto')")
    cache = cache_root(cache_dir)
    notes, source_hash, tl_name = "", None, None
    if isinstance(spec, torch.nn.Module):
        if tokenizer is None:
            raise ValueError("loading a model object needs its tokenizer: load(model, tokenizer=tok)")
        model = compat.text_decoder(spec).to(dev).eval()
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
                from ..store import clean_stale_partials

                clean_stale_partials(cache / "models")  # builds a dead process left half-made
                report = check_support(path)  # from its metadata: no minute of dequantising for a refusal
                if not report["supported"]:
                    raise UnsupportedArchitecture(f"{path}: {'; '.join(report['missing'])}")
                path = dequantised_dir(path, expected_sha256=None, cache=cache)
                notes = notes or "dequantised from a GGUF file: quantised weights"
            check_local_dir(path)
            if tokenizer is None and not _has_tokenizer(path):
                raise ModelFileError(
                    f"{path} has no tokenizer files ({', '.join(_TOKENIZER_FILES)}); save one there with "
                    "tokenizer.save_pretrained(dir) or pass tokenizer=..."
                )
            try:
                model, tok = _load_hf(str(path), dt, dev, local_only=True, trust_remote_code=trust_remote_code,
                                      placement=placement)
            except WorkbenchError:
                raise
            except Exception as e:  # safetensors, json, torch and config errors all mean a bad directory
                msg = str(e)
                hint = ("check device_map / max_memory / offload_folder" if placement and "device" in msg.lower()
                        else "the directory looks corrupt or incomplete; re-save it with model.save_pretrained(dir)")
                raise ModelLoadError(
                    f"could not load the model in {path}: {type(e).__name__}: {msg[:300]}. {hint[0].upper()}{hint[1:]}."
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
                                          revision=revision, placement=placement)
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
                                      revision=revision, placement=placement)
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
    if placement is None and not getattr(model, "hf_device_map", None):
        model = model.to(dev)
    if not isinstance(spec, torch.nn.Module):  # a user's own object keeps its requires_grad flags
        model.requires_grad_(False)
    hooked = HookedModel(model, tok, backend=backend, arch=arch, name=display, source=source,
                         prepend_bos=prepend_bos, notes=notes, tl_model_name=tl_name, source_hash=source_hash,
                         attn_implementation=attn_implementation)
    if check:
        hooked.self_check()
    return hooked


__all__ += ["UnknownModelError", "check_local_dir", "hub_reachable", "check_support"]
