"""What a run records about where it ran and what it depended on: package versions (installed and locked), the git
sha, the shipped data's hash, the files a config names, and the differences between two configs (for the log)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

from .writer import _file_sha

# Packages whose versions a finished step depends on (a change recomputes the step on resume).
LOCKED_PACKAGES = ("interp-workbench", "torch", "transformers", "transformer-lens", "nnsight", "numpy",
                   "scikit-learn", "numba", "safetensors", "gguf", "accelerate", "tokenizers")



def _versions(names: Sequence[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    out.update(_versions(("interp-workbench", "torch", "transformers", "transformer-lens", "nnsight", "numpy",
                          "scikit-learn", "pandas", "safetensors", "gguf", "ray", "numba")))
    return out


def locked_versions() -> dict[str, str]:
    """Python and the versions of the packages results depend on (see :data:`LOCKED_PACKAGES`)."""
    return {"python": platform.python_version(), **_versions(LOCKED_PACKAGES)}


def git_sha(path: Path | None = None) -> str | None:
    root = path or Path(__file__).resolve().parents[1]
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _shipped_data_hash() -> str:
    """One hash over every data file the packages ship (datasets, prompt sets, assets)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for d in ("workbench/datasets", "probe/data", "steering/data", "circuits/assets"):
        base = root / d
        if not base.is_dir():
            continue
        for f in sorted(x for x in base.rglob("*") if x.is_file() and "__pycache__" not in x.parts and x.suffix != ".py"):
            h.update(str(f.relative_to(root)).encode())
            h.update(_file_sha(f).encode())
    return h.hexdigest()[:16]


def _config_files(cfg: Any) -> dict[str, str]:
    """sha256 of every existing file a config value names (a user's data file is part of the run's input)."""
    out: dict[str, str] = {}

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, str) and len(v) < 4096 and ("/" in v or "." in v):
            try:
                p = Path(v).expanduser()
                if p.is_file():
                    out[str(p.resolve())] = _file_sha(p)
            except (OSError, ValueError):
                pass
    walk(cfg)
    return out


def _diff_dicts(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two JSON-like dicts (``key: old -> new``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff_dicts(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]
