"""What the grid tests compare: a run directory's result files and its shards' modification times."""

from __future__ import annotations

from pathlib import Path


def result_files(out: Path, pattern: str = "*") -> dict[str, bytes]:
    """``{name: bytes}`` of the run's ``results/`` files matching ``pattern``."""
    return {p.name: p.read_bytes() for p in sorted((out / "results").glob(pattern))}


def shard_mtimes(out: Path) -> dict[str, int]:
    """``{shard path relative to the run: mtime in ns}`` of every shard the run wrote (a rewrite changes it)."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "shards").rglob("shard-*.json")}


def step_dir(out: Path, step: str) -> Path:
    """The directory of the finished step named ``step`` (a name such as ``runs@tiny-llama`` is stored under a
    file-safe slug), found by the name its ``_done.json`` records."""
    import json

    for p in (out / "steps").glob("*/_done.json"):
        if json.loads(p.read_text())["step"] == step:
            return p.parent
    raise FileNotFoundError(f"no finished step {step!r} in {out}")
