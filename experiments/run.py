"""Run directories: manifest, atomic resumable steps, sharded task grids, tables, figures, report.

Layout of a run directory::

    manifest.json        config, model (name, weights hash, source), data hashes, package versions,
                         git sha, seed, timings per step, status
    log.txt              what happened, with times
    steps/<step>/        one directory per finished step: its tables (CSV + Parquet), figures (PNG +
                         PDF) and report section, built in a temporary directory and renamed into
                         place when complete, so a step is either entirely there or not at all.
                         ``_done.json`` records what the step depended on and a sha256 of each file
    shards/<grid>/       one file per finished task of a grid (written atomically as it finishes)
    results/, figures/   every step's tables and figures, gathered when the run completes
    report.html          self-contained report (figures embedded), one section per result

``resume=True`` reuses a finished step only when everything it depended on is unchanged: the
experiment and its config (seed included), the weights hash of every model loaded, the shipped data
and any data file the config names, and the versions of the locked packages; and only when its
files are all there and intact. Otherwise the step is recomputed, and the log says why. So killing
the process at any moment and resuming gives the same final results as an uninterrupted run, and a
resume after an upgrade or with other weights never reuses a result they would change.

A directory is only ever replaced (``overwrite=True``) or continued when it holds a run; one that
holds anything else is refused. A run that fails before finishing any step (say the model does
not load) removes the directory it created; a later failure marks the manifest ``failed`` and keeps
the finished steps for ``--resume``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from workbench.errors import WorkbenchError
from workbench.results import data_hash, to_jsonable
from workbench.store import ShardSet, StoreMismatchError, atomic_write_json, clean_stale_partials, partial_path

from .config import ConfigError, config_to_dict, model_names
from .progress import GridProgress, _duration  # noqa: F401 - GridProgress is part of the run API
from .provenance import (  # noqa: F401 - re-exported
    LOCKED_PACKAGES,
    _config_files,
    _diff_dicts,
    _shipped_data_hash,
    git_sha,
    locked_versions,
    package_versions,
)
from .writer import Section, StepWriter, _file_sha, _slug

__all__ = ["RunContext", "Section", "StepWriter", "RunExistsError", "RunDirectoryError", "package_versions",
           "locked_versions", "git_sha"]

class RunExistsError(WorkbenchError, FileExistsError):
    pass


class RunDirectoryError(WorkbenchError, ValueError):
    """The run directory is not one the workbench may use as asked."""


class RunContext:
    """What an experiment's ``run(ctx, config)`` works through.

    Methods: :meth:`model` (load once), :meth:`step` (a resumable unit of work producing tables,
    figures and a report section), :meth:`map` (a grid of tasks through the executor, one shard per
    task), :meth:`record_data` (data hashes for the manifest), :meth:`log`. Call :meth:`finish`
    when the experiment returns, or :meth:`fail` when it raises.
    """

    def __init__(self, out: str | Path, experiment: str, config: Any, *, resume: bool = False,
                 overwrite: bool = False, executor: Any = None, progress: bool = True,
                 argv: Sequence[str] | None = None, preset: str | None = None):
        from .executors import LocalExecutor

        self.out = Path(out)
        self.experiment = experiment
        self.config = config
        self.resume = resume
        self.executor = executor or LocalExecutor()
        self.progress = progress
        self._models: dict[tuple, Any] = {}
        self._hashes: dict[tuple, str] = {}  # (name, backend) -> weights hash, of models loaded in tasks
        self._data: dict[str, str] = {}
        self._timings: dict[str, float] = {}
        self._t0 = time.time()
        self._pending_log: list[str] = []
        self._scope: str | None = None  # the model :meth:`per_model` is visiting
        cfg = to_jsonable(config_to_dict(config))
        self.fingerprint = data_hash({"experiment": experiment, "config": cfg})
        if self.out.exists() and not self.out.is_dir():
            raise RunDirectoryError(f"--out {self.out} is a file, not a directory; choose another --out")
        nonempty = self.out.is_dir() and any(self.out.iterdir())
        self._created = not nonempty
        if nonempty:
            if not self._looks_like_run(self.out):
                raise RunDirectoryError(
                    f"{self.out} is not empty and holds no workbench run (no manifest.json or steps/); refusing to "
                    f"{'delete' if overwrite else 'write into'} it. Choose another --out, or empty it yourself."
                )
            self._check_not_in_use()
            if overwrite:
                shutil.rmtree(self.out)
                self._created = True
            elif not resume:
                raise RunExistsError(
                    f"run directory {self.out} already holds a run; pass --resume to continue it, --overwrite to "
                    "replace it, or choose another --out"
                )
            else:
                old = self._read_old_manifest()
                if old is not None and old.get("fingerprint") != self.fingerprint:
                    changes = _diff_dicts({"experiment": old.get("experiment"), "config": old.get("config")},
                                          {"experiment": experiment, "config": cfg})
                    raise RunExistsError(
                        f"{self.out} holds a run of a different experiment or config, so --resume cannot continue it "
                        f"(changed: {'; '.join(changes[:6]) or 'fingerprint'}{' ...' if len(changes) > 6 else ''}); use "
                        "another --out, or --overwrite to replace it"
                    )
                if old is not None:
                    self._timings = dict(old.get("timings", {}))
                    self._data = dict(old.get("data_hashes", {}))
        for d in ("steps", "shards"):
            (self.out / d).mkdir(parents=True, exist_ok=True)
        self._lock = self.out / ".lock"
        atomic_write_json(self._lock, {"pid": os.getpid(), "host": socket.gethostname()})
        for d in [self.out / "steps", self.out] + [x for x in (self.out / "shards").iterdir() if x.is_dir()]:
            for removed in clean_stale_partials(d):
                self._pending_log.append(f"removed {removed}, left by an interrupted run")
        self._shipped = _shipped_data_hash()
        self._files = _config_files(cfg)
        self.manifest: dict = {
            "experiment": experiment, "preset": preset, "config": cfg, "fingerprint": self.fingerprint,
            "seed": getattr(config, "seed", None), "status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "packages": package_versions(), "git_sha": git_sha(), "argv": list(argv or sys.argv),
            "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
            "model": None, "data_hashes": self._data, "timings": self._timings, "steps": [],
        }
        self._write_manifest()
        self.log(f"{'resuming' if resume else 'starting'} {experiment} in {self.out}")
        for line in self._pending_log:
            self.log(line)

    # -- the directory ----------------------------------------------------------------
    @staticmethod
    def _looks_like_run(d: Path) -> bool:
        return (d / "manifest.json").is_file() or (d / "steps").is_dir()

    def _check_not_in_use(self) -> None:
        lock = self.out / ".lock"
        try:
            info = json.loads(lock.read_text())
        except (OSError, ValueError):
            return
        pid, host = info.get("pid"), info.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            except PermissionError:
                pass
            raise RunDirectoryError(
                f"{self.out} is in use by another workbench process (pid {pid}); wait for it to finish or stop it"
            )

    def _read_old_manifest(self) -> dict | None:
        mf = self.out / "manifest.json"
        if not mf.exists():
            self._pending_log.append("manifest.json is missing; it is rewritten, and each finished step is checked "
                                     "against what it recorded")
            return None
        try:
            old = json.loads(mf.read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
            return old
        except (OSError, ValueError) as e:
            self._pending_log.append(f"manifest.json is unreadable ({type(e).__name__}: {e}); it is rewritten, and "
                                     "each finished step is checked against what it recorded")
            return None

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
    def model_names(self) -> list[str]:
        """The models this run visits (``model.models``, else ``[model.name]``; see :func:`config.model_names`)."""
        return model_names(self.config.model)

    def model_name(self) -> str:
        """The one model a single-model experiment runs (inside :meth:`per_model`: the model it is visiting; else a
        clear error when several are configured)."""
        if self._scope is not None:
            return self._scope
        names = self.model_names()
        if len(names) > 1:
            raise ConfigError(f"experiment {self.experiment!r} runs one model, but model.models names {len(names)} "
                              f"({', '.join(names)}); give one --model (experiments that compare models, such as "
                              "cross-check, take several)")
        return names[0]

    def model(self, name: str | None = None, backend: str | None = None) -> Any:
        """The configured model (loaded once per (name, backend))."""
        from workbench.models import load

        from .tasks import model_info

        sec = self.config.model
        key = (name or self.model_name(), backend or sec.backend)
        if key not in self._models:
            t = time.time()
            m = load(key[0], backend=key[1], device=sec.device, dtype=sec.dtype)
            self._models[key] = m
            self.log(f"loaded {m!r} in {time.time() - t:.1f} s")
            self._record_model(model_info(m))
        return self._models[key]

    def per_model(self, fn: Callable[[str], Any]) -> dict[str, Any]:
        """Run ``fn(name)`` once per configured model, in order, and return ``{name: its return}``.

        Inside ``fn`` the run is scoped to that model: :meth:`model` and :meth:`model_name` mean it, and with several
        models every :meth:`step` is named ``<step>@<model>``, its report sections' titles end with ``[<model>]``,
        and it depends on that model's weights alone (so one model's changed weights recompute its steps, nobody
        else's). The model is unloaded before the next one loads. With one model nothing changes: steps keep their
        names. Experiments whose steps run in this process use it to visit several models
        (``--model A --model B``); a comparison step over the returned payloads follows."""
        names = self.model_names()
        out: dict[str, Any] = {}
        for n in names:
            self._scope = n
            try:
                out[n] = fn(n)
            finally:
                self._scope = None
                if len(names) > 1:
                    self.unload(n)
        return out

    def step_name(self, name: str) -> str:
        """The name step ``name`` is stored under: inside :meth:`per_model` with several models
        ``<name>@<model>``, else ``name`` (for reading a finished step's files with :meth:`step_dir`)."""
        if self._scope is not None and len(self.model_names()) > 1:
            return f"{name}@{self._scope}"
        return name

    def _record_model(self, info: dict) -> None:
        """Record a model in the manifest (``models``: every model by name; ``model``: the first one)."""
        self._hashes[(info["name"], info["backend"])] = info["weights_hash"]
        self.manifest.setdefault("models", {})[info["name"]] = {
            "weights_hash": info["weights_hash"], "source_hash": info["source_hash"], "backend": info["backend"],
            "n_layers": info["facts"].get("n_layers")}
        if self.manifest["model"] is None:
            self.manifest["model"] = {k: info[k] for k in ("name", "weights_hash", "source", "source_hash", "backend",
                                                           "facts", "notes")}
        self._write_manifest()

    def _weights_hash(self, name: str, backend: str) -> str:
        """The current weights hash of a model: from a loaded model, one a task reported, else by loading it."""
        if (name, backend) in self._models:
            return self._models[(name, backend)].weights_hash
        if (name, backend) in self._hashes:
            return self._hashes[(name, backend)]
        return self.model(name, backend).weights_hash

    def unload(self, name: str | None = None, backend: str | None = None) -> bool:
        """Forget a model loaded by :meth:`model` (its memory is freed once nothing else holds it); returns whether
        one was loaded. Experiments that visit several models in turn call it between them."""
        sec = self.config.model
        return self._models.pop((name or self.model_name(), backend or sec.backend), None) is not None

    # -- steps ------------------------------------------------------------------------
    def step_dir(self, name: str) -> Path:
        return self.out / "steps" / _slug(name)

    def _deps(self) -> dict:
        """What a step finished now depends on."""
        return {"fingerprint": self.fingerprint, "seed": getattr(self.config, "seed", None),
                "models": {f"{n}@{b}": m.weights_hash for (n, b), m in sorted(self._models.items())},
                "data": {"shipped": self._shipped, "files": self._files}, "versions": locked_versions()}

    def _why_not_reusable(self, name: str) -> str | None:
        """None when the finished step ``name`` may be reused; else why it must be recomputed
        (``""`` when it simply has not finished)."""
        d = self.step_dir(name)
        done = d / "_done.json"
        if not done.exists():
            return ""
        try:
            rec = json.loads(done.read_text())
            deps, files = rec["deps"], rec["files"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return f"its record {done} is unreadable or from an older workbench ({type(e).__name__}: {e})"
        changed = []
        if deps.get("fingerprint") != self.fingerprint:
            changed.append("the experiment or its config changed")
        for key, h in deps.get("models", {}).items():
            n, b = key.rsplit("@", 1)
            cur = self._weights_hash(n, b)
            if cur != h:
                changed.append(f"model {n}'s weights changed ({h} -> {cur})")
        now = {"data": {"shipped": self._shipped, "files": self._files}, "versions": locked_versions()}
        changed += _diff_dicts({"data": deps.get("data"), "versions": deps.get("versions")}, now)
        for f, sha in files.items():
            p = d / f
            if not p.is_file():
                changed.append(f"its file {p} is missing")
            elif _file_sha(p) != sha:
                changed.append(f"its file {p} was changed or truncated")
        return "; ".join(changed) if changed else None

    def step_done(self, name: str) -> bool:
        """Whether ``name`` finished and may be reused as it is."""
        return self._why_not_reusable(name) is None

    def step(self, name: str, fn: Callable[["StepWriter"], Any], *,
             models: Sequence[tuple[str, str]] | None = None) -> dict:
        """Run ``fn(writer)`` unless the step finished with the same inputs; return its stored payload.

        ``fn`` writes tables/figures/section through the :class:`StepWriter` and returns a JSON-able
        payload (numbers later steps need). Everything lands in the step directory at once. ``models``
        ((name, backend) pairs): the models the step's numbers come from, when it does not load them itself
        (a comparison of steps that ran as tasks); default: the models this process loaded (inside
        :meth:`per_model` with several models: the model visited, named in the step's name and section titles).
        """
        scoped = self.step_name(name)
        suffix = f" [{self._scope}]" if scoped != name else ""
        name = scoped
        why = self._why_not_reusable(name)
        if why is None:
            payload = self._reuse(name)
        else:
            if why:
                self.log(f"step {name}: recomputing: {why}")
            t = time.time()
            self.log(f"step {name}: running")
            payload = self._commit(name, fn, self._deps if models is None else lambda: self.deps_for(models),
                                   title_suffix=suffix)
            self._timings[name] = round(time.time() - t, 2)
            self.log(f"step {name}: finished in {self._timings[name]:.1f} s")
        self._add_step(name)
        return payload

    def _reuse(self, name: str) -> Any:
        self.log(f"step {name}: done already, reusing")
        return json.loads((self.step_dir(name) / "_done.json").read_text())["payload"]

    def _add_step(self, name: str) -> None:
        if name not in self.manifest["steps"]:
            self.manifest["steps"].append(name)
        self._write_manifest()

    def _commit(self, name: str, fn: Callable[["StepWriter"], Any], deps: Callable[[], dict], *,
                sections: bool = True, title_suffix: str = "") -> Any:
        """Build step ``name`` in its temporary directory (``fn(writer)`` writes it and returns the payload), record
        ``deps()`` and the files' hashes in ``_done.json``, and rename it into place."""
        d = self.step_dir(name)
        tmp = partial_path(d)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            writer = StepWriter(tmp, name, title_suffix=title_suffix)
            payload = fn(writer)
            writer._finish(payload, deps(), sections=sections)
            shutil.rmtree(d, ignore_errors=True)
            os.replace(tmp, d)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return payload

    def deps_for(self, models: Sequence[tuple[str, str]]) -> dict:
        """What a step that used exactly ``models`` ((name, backend) pairs) depends on: like a step's, with only
        those models' weights (so a model's steps survive a change to another model's weights)."""
        deps = self._deps()
        deps["models"] = {f"{n}@{b}": self._weights_hash(n, b) for n, b in sorted(models)}
        return deps

    def units(self, grid: str, fn: Callable[[dict], dict], units: Sequence[tuple[str, dict]]) -> list[dict]:
        """Run (step name, task) units through the executor, each as one resumable step; returns their payloads in
        order.

        ``fn(task)`` (module-level; :func:`experiments.tasks.study_task`) returns ``{"payload", "files": {name:
        bytes}, "data": {name: hash}, "model": info}``; each result is committed as its step the moment it arrives
        (files written atomically, ``_done.json`` with the deps of its model alone). A unit is reused when its
        step finished with the same inputs: its model's weights hash is then checked by a model-info task on the
        executor (the driver never loads a model). Tasks of one model share one worker (``key``:
        :func:`experiments.tasks.model_key`). A unit that fails does not stop the others; the first failure is
        raised at the end, and ``--resume`` reruns only the failed units."""
        from .tasks import model_key

        names = [s for s, _ in units]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"grid {grid}: step {dup!r} is named twice")
        # the models a unit's numbers come from: ``models`` (a step task that reads several), else its ``model``
        keyof = {s: [(n, t.get("backend", "tl")) for n in t.get("models") or [t["model"]]] for s, t in units}
        self._check_weights(grid, [t for s, t in units if (self.step_dir(s) / "_done.json").exists()],
                            " with finished steps")
        payloads: dict[str, Any] = {}
        todo: list[tuple[str, dict]] = []
        for s, t in units:
            why = self._why_not_reusable(s)
            if why is None:
                payloads[s] = self._reuse(s)
                self._add_step(s)
            else:
                if why:
                    self.log(f"step {s}: recomputing: {why}")
                todo.append((s, t))
        if len(todo) < len(units):
            self.log(f"grid {grid}: {len(units) - len(todo)}/{len(units)} units done already")
        failures: list[tuple[str, Any]] = []
        t0 = time.time()
        for j, out in self._run_grid(grid, fn, [t for _, t in todo], key=model_key, total=len(units),
                                     done=len(units) - len(todo), failures=failures, names=[s for s, _ in todo]):
            s = todo[j][0]
            if "models" in out:  # a step task: every model it read, by its own name
                for info in out["models"]:
                    self._record_model(info)
            else:
                self._record_model(out["model"])
                self._hashes[keyof[s][0]] = out["model"]["weights_hash"]  # by the name the config gives (a path, ...)
            prefix = out.get("data_prefix", f"{out['model']['name']}/")
            for k, h in out["data"].items():
                self._data[f"{prefix}{k}"] = h

            def write(w: StepWriter, files: dict = out["files"]) -> Any:
                from workbench.store import atomic_write_bytes

                for f, b in files.items():
                    atomic_write_bytes(w.dir / f, b)
                return out["payload"]
            self._commit(s, write, lambda s=s: self.deps_for(keyof[s]), sections=False)
            payloads[s] = json.loads(json.dumps(to_jsonable(out["payload"])))
            self._timings[s] = round(float(out.get("seconds", 0.0)), 2)
            cpu = f" ({out['cpu_seconds']:.1f} CPU s in its worker)" if "cpu_seconds" in out else ""
            self.log(f"step {s}: finished in {self._timings[s]:.1f} s{cpu}")
            self._add_step(s)
        if todo:
            self._timings[f"grid:{grid}"] = round(self._timings.get(f"grid:{grid}", 0) + time.time() - t0, 2)
            self._write_manifest()
        # the report keeps the units' order, whatever order they finished in
        self.manifest["steps"] = [x for x in self.manifest["steps"] if x not in names] + \
            [s for s in names if s in payloads]
        self._write_manifest()
        if failures:
            raise failures[0][1].error
        return [payloads[s] for s in names]

    def _check_weights(self, grid: str, tasks: Sequence[dict], why: str = "") -> None:
        """Learn the weights hash of every model the tasks name that this run has not loaded or heard of, by a
        model-info task per model on the executor (the driver never loads a model for it)."""
        from .tasks import model_info_task, model_key

        unknown: dict[str, dict] = {}
        for task in tasks:
            for name in task.get("models") or [task["model"]]:
                t = {**task, "model": name}
                k = (name, t.get("backend", "tl"))
                if k not in self._hashes and k not in self._models:
                    unknown.setdefault(model_key(t), {x: t[x] for x in ("model", "backend", "device", "dtype") if x in t})
        if not unknown:
            return
        self.log(f"grid {grid}: checking the weights of {len(unknown)} model(s){why}")
        checks = list(unknown.values())
        for j, info in self._run_grid(f"{grid} (model check)", model_info_task, checks, key=model_key):
            self._record_model(info)
            self._hashes[(checks[j]["model"], checks[j].get("backend", "tl"))] = info["weights_hash"]

    def grid(self, name: str, fn: Callable[[dict], Any], tasks: Sequence[dict], *, keyed: bool = True,
             check: Callable[[Any], str | None] | None = None) -> list[Any]:
        """Run tasks that each name a model (``model``, ``backend``, ``device``, ``dtype``) through the executor,
        one shard per task; returns their results (JSON) in task order.

        The shards of one model are a :class:`workbench.store.ShardSet` of their own
        (``shards/<name>/<model key>/``), whose job is the run's config fingerprint, that model's weights hash
        (from a model-info task on the executor when this run has not seen it), the shipped data and package
        versions, and its tasks: on resume a finished shard is reused only when all of these are unchanged (a
        changed model recomputes its own shards, nobody else's), and a shard that does not read back (truncated,
        corrupt) is recomputed. Task keys that start with ``_`` say where to find things (a directory on shared
        storage) and are left out of the job, so a run directory that moves keeps its shards. ``check(result)``: why a finished shard's result cannot be trusted any more (say
        the activation file it names is gone), or None; such a shard is recomputed too.

        ``keyed``: the tasks of one model share one worker, which loads the model once (tasks that need the
        model); ``keyed=False`` spreads them over every worker (tasks that only read what earlier tasks wrote,
        such as probes on stored activations). ``fn`` must be module-level (it may run in another process). A
        task that fails does not stop the others; the first failure is raised at the end, after every other
        shard is written."""
        from .tasks import model_key

        tasks = list(tasks)
        self._check_weights(name, tasks)
        by_model: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            by_model.setdefault(model_key(t), []).append(i)
        where: dict[int, tuple[ShardSet, int]] = {}
        for k, idx in by_model.items():
            t0 = tasks[idx[0]]
            deps = self.deps_for([(t0["model"], t0.get("backend", "tl"))])
            deps.pop("fingerprint")
            job = {"fingerprint": self.fingerprint, "deps": deps,
                   "tasks": [{x: v for x, v in tasks[i].items() if not x.startswith("_")} for i in idx]}
            d = self.out / "shards" / _slug(name) / _slug(k)
            try:
                shards = ShardSet(d, job, resume=True, on_corrupt=self.log)
            except StoreMismatchError:
                self.log(f"grid {name}: the shards of {t0['model']} were computed with other inputs (model weights, "
                         "config, data or package versions); recomputing them")
                shards = ShardSet(d, job, resume=False, on_corrupt=self.log)
            for j, i in enumerate(idx):
                where[i] = (shards, j)
        todo = []
        for i in range(len(tasks)):
            shards, j = where[i]
            why = None
            if shards.done(j) and check is not None:
                why = check(shards.read_json(j)["result"])
                if why:
                    self.log(f"grid {name}: shard {shards.path(j)} is recomputed: {why}")
                    shards.path(j).unlink(missing_ok=True)
            if not shards.done(j):
                todo.append(i)
        if len(todo) < len(tasks):
            self.log(f"grid {name}: {len(tasks) - len(todo)}/{len(tasks)} shards done already")
        failures: list[tuple[str, Any]] = []
        t = time.time()
        for j, result in self._run_grid(name, fn, [tasks[i] for i in todo], key=model_key if keyed else None,
                                        total=len(tasks), done=len(tasks) - len(todo), failures=failures,
                                        names=[f"task {i}" for i in todo]):
            shards, k = where[todo[j]]
            shards.write_json(k, {"task": tasks[todo[j]], "result": to_jsonable(result)})
        if todo:
            self._timings[f"grid:{name}"] = round(self._timings.get(f"grid:{name}", 0) + time.time() - t, 2)
            self._write_manifest()
        if failures:
            raise failures[0][1].error
        return [where[i][0].read_json(where[i][1])["result"] for i in range(len(tasks))]

    def _run_grid(self, grid: str, fn: Callable[[dict], Any], tasks: Sequence[dict], *, key: Any = None,
                  total: int | None = None, done: int = 0, failures: list | None = None,
                  names: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
        """``executor.map`` with progress (done, running, failed, ETA) in the log and the terminal; failed tasks
        are logged and, with ``failures`` (a list), collected there (``(name, TaskFailed)``) instead of raised."""
        from .executors import TaskFailed

        prog = GridProgress(self, grid, total if total is not None else len(tasks), done=done,
                            parallelism=getattr(self.executor, "parallelism", 1))
        if not tasks:
            return
        prog.show(force=True)
        for j, out in self.executor.map(fn, list(tasks), key=key, return_failures=failures is not None):
            if isinstance(out, TaskFailed):
                what = names[j] if names else f"task {j}"
                self.log(f"grid {grid}: {what} failed: {out}")
                assert failures is not None
                failures.append((what, out))
                prog.update(failed=True)
                continue
            yield j, out
            prog.update()

    def study(self, name: str, compute: Callable[[], Any]) -> dict:
        """Run a study as the step ``name``: ``compute()`` returns a :class:`experiments.study.StudyResult`,
        written by :meth:`StepWriter.study`; returns its payload (with its verdict and correlation)."""
        return self.step(name, lambda w: w.study(compute()))

    # -- grids ------------------------------------------------------------------------
    def map(self, name: str, fn: Callable[[dict], Any], tasks: Sequence[dict]) -> list[Any]:
        """Run ``fn(task)`` for every task (JSON-able dicts) through the executor, one shard per task.

        Finished shards are reused on resume (a corrupt one is recomputed); results come back in task
        order. ``fn`` must be a module-level function (it may run in another process).
        """
        job = {"fingerprint": self.fingerprint, "tasks": list(tasks), "deps": self._grid_deps()}
        try:
            shards = ShardSet(self.out / "shards" / _slug(name), job, resume=True, on_corrupt=self.log)
        except StoreMismatchError:
            self.log(f"grid {name}: its shards were computed with other inputs (model weights, data or package "
                     "versions); recomputing them")
            shards = ShardSet(self.out / "shards" / _slug(name), job, resume=False, on_corrupt=self.log)
        todo = [i for i in range(len(tasks)) if not shards.done(i)]
        if len(todo) < len(tasks):
            self.log(f"grid {name}: {len(tasks) - len(todo)}/{len(tasks)} shards done already")
        t = time.time()
        for j, result in self._run_grid(name, fn, [tasks[i] for i in todo], total=len(tasks),
                                        done=len(tasks) - len(todo)):
            shards.write_json(todo[j], {"task": tasks[todo[j]], "result": to_jsonable(result)})
        if todo:
            self._timings[f"grid:{name}"] = round(self._timings.get(f"grid:{name}", 0) + time.time() - t, 2)
            self._write_manifest()
        return [shards.read_json(i)["result"] for i in range(len(tasks))]

    def _grid_deps(self) -> dict:
        """A grid's shards depend on the same inputs as a step."""
        deps = self._deps()
        deps.pop("fingerprint")
        return deps

    # -- finishing --------------------------------------------------------------------
    def finish(self) -> Path:
        """Gather tables and figures, write the report, mark the run complete."""
        from .report import write_report

        gather = partial_path(self.out / "gathered")
        shutil.rmtree(gather, ignore_errors=True)
        for sub in ("results", "figures"):
            (gather / sub).mkdir(parents=True)
        for name in self.manifest["steps"]:
            d = self.step_dir(name)
            for f in sorted(d.iterdir()):
                if f.name.startswith("_"):
                    continue
                sub = "figures" if f.suffix in (".png", ".pdf", ".svg") else "results"
                shutil.copy2(f, gather / sub / f"{_slug(name)}__{f.name}")
        for sub in ("results", "figures"):  # each folder is swapped in with one rename
            old = partial_path(self.out / f"{sub}-old")
            if (self.out / sub).exists():
                os.replace(self.out / sub, old)
            os.replace(gather / sub, self.out / sub)
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(gather, ignore_errors=True)
        self.manifest["status"] = "complete"
        self.manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._timings["total_this_session"] = round(time.time() - self._t0, 2)
        self._write_manifest()
        path = write_report(self.out)
        self.log(f"report: {path}")
        self._release()
        return path

    def fail(self, error: BaseException) -> None:
        """Record a failed run: a directory this run created and that holds no finished work is removed;
        otherwise the manifest says ``failed`` (with the error) and ``--resume`` continues it."""
        finished = bool(self.manifest["steps"]) or any(
            p.name.startswith("shard-") for p in (self.out / "shards").rglob("*"))
        if self._created and not finished:
            shutil.rmtree(self.out, ignore_errors=True)
            return
        self.manifest["status"] = "failed"
        self.manifest["error"] = f"{type(error).__name__}: {error}"[:2000]
        self._write_manifest()
        self.log(f"failed: {type(error).__name__}: {error}; --resume continues from the finished steps")
        self._release()

    def _release(self) -> None:
        try:
            self._lock.unlink()
        except FileNotFoundError:
            pass
