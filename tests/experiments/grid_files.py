"""What the grid tests compare: a run directory's result files and its shards' modification times."""

from __future__ import annotations

from pathlib import Path


def result_files(out: Path, pattern: str = "*") -> dict[str, bytes]:
    """``{name: bytes}`` of the run's ``results/`` files matching ``pattern``."""
    return {p.name: p.read_bytes() for p in sorted((out / "results").glob(pattern))}


def shard_mtimes(out: Path) -> dict[str, int]:
    """``{shard path relative to the run: mtime in ns}`` of every shard the run wrote (a rewrite changes it)."""
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in (out / "shards").rglob("shard-*.json")}
