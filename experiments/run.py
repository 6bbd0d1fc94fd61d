"""Run directories: manifest, atomic resumable steps, sharded task grids, tables, figures, report.

Layout of a run directory::

    manifest.json        config, model (name, weights hash, source), data hashes, package versions,
                         git sha, seed, timings per step, status
    log.txt              what happened, with times
    steps/<step>/        one directory per finished step: its tables (CSV + Parquet), figures (PNG +
                         PDF) and report section, built in a temporary directory and renamed into
                         place when complete, so a step is either entirely there or not at all
    shards/<grid>/       one file per finished task of a grid (written atomically as it finishes)
    results/, figures/   every step's tables and figures, gathered when the run completes
    report.html          self-contained report (figures embedded), one section per result

``resume=True`` reuses finished steps and shards, so killing the process at any moment and
resuming gives the same final results as an uninterrupted run (steps are deterministic given the
config and seed; nothing finished is recomputed or written twice).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from workbench.results import data_hash, to_jsonable
from workbench.store import ShardSet, atomic_write_bytes, atomic_write_json, atomic_write_text

from .config import config_to_dict

__all__ = ["RunContext", "Section", "RunExistsError", "package_versions", "git_sha"]


class RunExistsError(FileExistsError):
    pass


@dataclasses.dataclass
class Section:
    """One result in the report: what was measured, the numbers, the verdict, tables and figures."""

    title: str
    summary: str = ""
    verdict: str | None = None        # "agree" | "disagree" | "inconclusive" | None
    verdict_detail: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    tables: list[str] = dataclasses.field(default_factory=list)   # file names within the step
    figures: list[str] = dataclasses.field(default_factory=list)  # file names (PNG) within the step
    notes: list[str] = dataclasses.field(default_factory=list)
    order: int = 0


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("interp-workbench", "torch", "transformers", "transformer-lens", "nnsight", "numpy", "scikit-learn",
                 "pandas", "safetensors", "gguf", "ray"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


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


def _slug(name: str) -> str:
    s = re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-")
    if not s:
        raise ValueError(f"cannot make a file name from {name!r}")
    return s


class RunContext:
    """What an experiment's ``run(ctx, config)`` works through.

    Methods: :meth:`model` (load once), :meth:`step` (a resumable unit of work producing tables,
    figures and a report section), :meth:`map` (a grid of tasks through the executor, one shard per
    task), :meth:`record_data` (data hashes for the manifest), :meth:`log`.
    """

    def __init__(self, out: str | Path, experiment: str, config: Any, *, resume: bool = False,
                 overwrite: bool = False, executor: Any = None, progress: bool = True,
                 argv: Sequence[str] | None = None):
        from .executors import LocalExecutor

        self.out = Path(out)
        self.experiment = experiment
        self.config = config
        self.resume = resume
        self.executor = executor or LocalExecutor()
        self.progress = progress
        self._models: dict[tuple, Any] = {}
        self._data: dict[str, str] = {}
        self._timings: dict[str, float] = {}
        self._t0 = time.time()
        cfg = to_jsonable(config_to_dict(config))
        self.fingerprint = data_hash({"experiment": experiment, "config": cfg})
        manifest = self.out / "manifest.json"
        if self.out.exists() and any(self.out.iterdir()):
            if overwrite:
                shutil.rmtree(self.out)
            elif not resume:
                raise RunExistsError(
                    f"run directory {self.out} already holds a run; pass --resume to continue it, --overwrite to "
                    "replace it, or choose another --out"
                )
            elif manifest.exists():
                old = json.loads(manifest.read_text())
                if old.get("fingerprint") != self.fingerprint:
                    raise RunExistsError(
                        f"{self.out} holds a run of a different experiment or config ({old.get('experiment')}, "
                        f"fingerprint {old.get('fingerprint')} != {self.fingerprint}); resume only continues the same "
                        "run: use another --out or --overwrite"
                    )
                self._timings = dict(old.get("timings", {}))
                self._data = dict(old.get("data_hashes", {}))
        for d in ("steps", "shards"):
            (self.out / d).mkdir(parents=True, exist_ok=True)
        self.manifest: dict = {
            "experiment": experiment, "config": cfg, "fingerprint": self.fingerprint,
            "seed": getattr(config, "seed", None), "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "packages": package_versions(), "git_sha": git_sha(), "argv": list(argv or sys.argv),
            "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
            "model": None, "data_hashes": self._data, "timings": self._timings, "steps": [],
        }
        self._write_manifest()
        self.log(f"{'resuming' if resume else 'starting'} {experiment} in {self.out}")

    # -- bookkeeping ------------------------------------------------------------------
    def _write_manifest(self) -> None:
        atomic_write_json(self.out / "manifest.json", self.manifest)

    def log(self, msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}\n"
        with open(self.out / "log.txt", "a") as f:
            f.write(line)
        if self.progress:
            print(line, end="", file=sys.stderr, flush=True)

    def record_data(self, name: str, *objs: Any) -> str:
        """Record the hash of a dataset used by the run (in the manifest)."""
        h = data_hash(*objs)
        self._data[name] = h
        self._write_manifest()
        return h

    # -- model ------------------------------------------------------------------------
    def model(self, name: str | None = None, backend: str | None = None) -> Any:
        """The configured model (loaded once per (name, backend))."""
        from workbench.models import load

        sec = self.config.model
        key = (name or sec.name, backend or sec.backend)
        if key not in self._models:
            t = time.time()
            m = load(key[0], backend=key[1], device=sec.device, dtype=sec.dtype)
            self._models[key] = m
            self.log(f"loaded {m!r} in {time.time() - t:.1f} s")
            self.manifest.setdefault("models", {})[m.name] = {"weights_hash": m.weights_hash,
                                                              "source_hash": m.source_hash, "backend": m.backend_name}
            if self.manifest["model"] is None:
                self.manifest["model"] = {"name": m.name, "weights_hash": m.weights_hash, "source": m.source,
                                          "source_hash": m.source_hash,
                                          "backend": m.backend_name, "facts": m.facts.to_dict(), "notes": m.notes}
                self._write_manifest()
        return self._models[key]

    def unload(self, name: str | None = None, backend: str | None = None) -> bool:
        """Forget a model loaded by :meth:`model` (its memory is freed once nothing else holds it); returns whether
        one was loaded. Experiments that visit several models in turn call it between them."""
        sec = self.config.model
        return self._models.pop((name or sec.name, backend or sec.backend), None) is not None

    # -- steps ------------------------------------------------------------------------
    def step_dir(self, name: str) -> Path:
        return self.out / "steps" / _slug(name)

    def step_done(self, name: str) -> bool:
        return (self.step_dir(name) / "_done.json").exists()

    def step(self, name: str, fn: Callable[["StepWriter"], Any]) -> dict:
        """Run ``fn(writer)`` unless the step is already done; return its stored payload.

        ``fn`` writes tables/figures/section through the :class:`StepWriter` and returns a JSON-able
        payload (numbers later steps need). Everything lands in the step directory at once.
        """
        d = self.step_dir(name)
        if self.step_done(name):
            self.log(f"step {name}: done already, reusing")
            payload = json.loads((d / "_done.json").read_text())["payload"]
        else:
            tmp = d.with_name(f".{d.name}.partial-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            t = time.time()
            self.log(f"step {name}: running")
            writer = StepWriter(tmp, name)
            payload = fn(writer)
            writer._finish(payload)
            shutil.rmtree(d, ignore_errors=True)
            os.replace(tmp, d)
            self._timings[name] = round(time.time() - t, 2)
            self.log(f"step {name}: finished in {self._timings[name]:.1f} s")
        if name not in self.manifest["steps"]:
            self.manifest["steps"].append(name)
        self._write_manifest()
        return payload

    # -- grids ------------------------------------------------------------------------
    def map(self, name: str, fn: Callable[[dict], Any], tasks: Sequence[dict]) -> list[Any]:
        """Run ``fn(task)`` for every task (JSON-able dicts) through the executor, one shard per task.

        Finished shards are reused on resume; results come back in task order. ``fn`` must be a
        module-level function (it may run in another process).
        """
        shards = ShardSet(self.out / "shards" / _slug(name), {"fingerprint": self.fingerprint, "tasks": list(tasks)},
                          resume=True)
        todo = [i for i in range(len(tasks)) if not shards.done(i)]
        if len(todo) < len(tasks):
            self.log(f"grid {name}: {len(tasks) - len(todo)}/{len(tasks)} shards done already")
        t = time.time()
        it = self.executor.map(fn, [tasks[i] for i in todo])
        if self.progress and todo:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(todo), desc=name, unit="task")
        for j, result in it:
            shards.write_json(todo[j], {"task": tasks[todo[j]], "result": to_jsonable(result)})
        if todo:
            self._timings[f"grid:{name}"] = round(self._timings.get(f"grid:{name}", 0) + time.time() - t, 2)
            self._write_manifest()
        return [shards.read_json(i)["result"] for i in range(len(tasks))]

    # -- finishing --------------------------------------------------------------------
    def finish(self) -> Path:
        """Gather tables and figures, write the report, mark the run complete."""
        from .report import write_report

        for sub in ("results", "figures"):
            shutil.rmtree(self.out / sub, ignore_errors=True)
            (self.out / sub).mkdir()
        for name in self.manifest["steps"]:
            d = self.step_dir(name)
            for f in sorted(d.iterdir()):
                if f.name.startswith("_"):
                    continue
                sub = "figures" if f.suffix in (".png", ".pdf", ".svg") else "results"
                shutil.copy2(f, self.out / sub / f"{_slug(name)}__{f.name}")
        self.manifest["status"] = "complete"
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._timings["total_this_session"] = round(time.time() - self._t0, 2)
        self._write_manifest()
        path = write_report(self.out)
        self.log(f"report: {path}")
        return path


class StepWriter:
    """Where a step writes its tables, figures and report section (inside its temporary directory)."""

    def __init__(self, directory: Path, step: str):
        self.dir = directory
        self.step = step
        self.sections: list[Section] = []

    def table(self, name: str, df: Any) -> str:
        """Write a DataFrame as CSV and Parquet; returns the CSV file name."""
        import io

        base = _slug(name)
        atomic_write_text(self.dir / f"{base}.csv", df.to_csv(index=False))
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(self.dir / f"{base}.parquet", buf.getvalue())
        return f"{base}.csv"

    def figure(self, name: str, fig: Any) -> str:
        """Save a matplotlib Figure as PNG (embedded in the report) and PDF; returns the PNG name."""
        import io

        base = _slug(name)
        for ext in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=110, bbox_inches="tight", metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
            atomic_write_bytes(self.dir / f"{base}.{ext}", buf.getvalue())
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except Exception:  # pragma: no cover
            pass
        return f"{base}.png"

    def section(self, section: Section) -> None:
        section.order = len(self.sections)
        self.sections.append(section)

    def json(self, name: str, obj: Any) -> str:
        base = _slug(name)
        atomic_write_json(self.dir / f"{base}.json", obj)
        return f"{base}.json"

    def _finish(self, payload: Any) -> None:
        atomic_write_json(self.dir / "_sections.json", [dataclasses.asdict(s) for s in self.sections])
        atomic_write_json(self.dir / "_done.json", {"step": self.step, "payload": to_jsonable(payload)})
