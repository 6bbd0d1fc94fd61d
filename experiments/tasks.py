"""Task functions for grids: module-level, JSON in and out, so they run in any executor.

A task names its model; each worker process loads it once (:func:`task_model`) and reuses it. A Ray executor
given :func:`model_key` as the key runs every task of one model on one worker (an actor), so a model loads once
per worker however many tasks it runs.

:func:`study_task` runs one study on one model (a (model, study) unit of a batch job): JSON in (the study, its
config section, the model, the seed, the step name), and out its step's files (tables, figures, the report
section) as bytes with its payload, which :meth:`experiments.run.RunContext.units` commits as the step.
"""

from __future__ import annotations

from typing import Any

__all__ = ["task_model", "model_key", "loaded_keys", "study_units", "model_info", "model_info_task", "release_models", "study_task",
           "TaskContext", "StepTaskContext", "step_task", "residual_norm_task", "probe_sweep_task", "PROBE_DATASETS"]

_MODELS: dict[tuple, Any] = {}


def task_model(task: dict) -> Any:
    """The model a task names (``model``, ``backend``, ``device``, ``dtype``), loaded once per process."""
    from workbench.models import load

    key = (task["model"], task.get("backend", "tl"), task.get("device", "auto"), task.get("dtype", "float32"))
    if key not in _MODELS:
        _MODELS[key] = load(key[0], backend=key[1], device=key[2], dtype=key[3])
    return _MODELS[key]


def model_key(task: dict) -> str:
    """The model a task needs, as one string (``name@backend/device/dtype``): the Ray executor keys its model
    workers by it."""
    return f"{task['model']}@{task.get('backend', 'tl')}/{task.get('device', 'auto')}/{task.get('dtype', 'float32')}"


def loaded_keys() -> set[str]:
    """The :func:`model_key` of every model :func:`task_model` holds in this process."""
    return {model_key(dict(zip(("model", "backend", "device", "dtype"), k))) for k in _MODELS}


def release_models(keep: str | None = None) -> None:
    """Forget the models loaded by :func:`task_model` in this process (all but the one ``keep`` names, a
    :func:`model_key`), so their memory can be freed."""
    for key in list(_MODELS):
        if keep is None or model_key(dict(zip(("model", "backend", "device", "dtype"), key))) != keep:
            del _MODELS[key]


def model_info(m: Any) -> dict:
    """What a run's manifest records of a model (name, weights hash, source, backend, facts, notes)."""
    return {"name": m.name, "weights_hash": m.weights_hash, "source": m.source, "source_hash": m.source_hash,
            "backend": m.backend_name, "facts": m.facts.to_dict(), "notes": list(m.notes)}


def model_info_task(task: dict) -> dict:
    """:func:`model_info` of the model a task names (loads it in this worker, where its studies then run)."""
    return model_info(task_model(task))


class TaskContext:
    """What a study's ``compute`` sees of the run inside a task: :meth:`record_data` (the hashes go back to the
    driver's manifest), ``out`` (the run directory) and ``progress`` (off: a worker has no terminal)."""

    progress = False

    def __init__(self, out: str | None = None) -> None:
        import tempfile
        from pathlib import Path

        self.data: dict[str, str] = {}
        #: the run directory (``_out`` of the task), for a study's cache (on several machines: storage they
        #: share); without it, the temporary directory
        self.out = Path(out) if out else Path(tempfile.gettempdir())

    def record_data(self, name: str, *objs: Any) -> str:
        from workbench.results import data_hash

        self.data[name] = h = data_hash(*objs)
        return h


def study_units(cfg: Any, names: list[str], studies: list[tuple[str, Any, dict]], *, out: Any = None
                ) -> list[tuple[str, dict]]:
    """(step name, task) of :func:`study_task` per (model, enabled study), model by model. ``studies``: (config
    section attribute of ``cfg``, study module, more JSON keyword arguments of its ``compute``). With one model
    the steps keep the studies' own names (``STEP``); with several, a step is ``<STEP>@<model>`` and its section
    title names the model. ``out``: the run directory, for studies that cache there."""
    from dataclasses import asdict

    sec = cfg.model
    units = []
    for name in names:
        for attr, study, kwargs in studies:
            section = getattr(cfg, attr)
            if not section.enabled:
                continue
            step = study.STEP if len(names) == 1 else f"{study.STEP}@{name}"
            units.append((step, {"study": study.__name__.rsplit(".", 1)[1], "config": asdict(section),
                                 "config_class": f"{type(section).__module__}:{type(section).__qualname__}",
                                 "model": name, "backend": sec.backend, "device": sec.device, "dtype": sec.dtype,
                                 "seed": cfg.seed, "step": step, "title_suffix": f" [{name}]" if len(names) > 1 else "",
                                 **({"kwargs": kwargs} if kwargs else {}),
                                 **({"_out": str(out)} if out is not None else {})}))
    return units


def study_task(task: dict) -> dict:
    """Run one study on one model and return its step: ``{"payload", "files": {name: bytes}, "data", "model"}``.

    ``task``: ``study`` (a module of :mod:`experiments.studies`), ``config`` (its section as a dict) and
    ``config_class`` (``module:Class``), ``model`` / ``backend`` / ``device`` / ``dtype``, ``seed``, ``step``
    (the step name), ``title_suffix`` (appended to the section title, e.g. the model's name) and ``kwargs``
    (more keyword arguments of the study's ``compute``, JSON: what earlier tasks of a grid computed). The study
    computes in this process and is written by :meth:`experiments.writer.StepWriter.study` into a scratch
    directory whose files come back as bytes, so the same files land in the run directory whichever executor
    (and machine) ran it."""
    import importlib
    import tempfile
    import time
    from pathlib import Path

    import torch

    from .config import config_from_dict
    from .writer import StepWriter

    t0 = time.time()
    mod = importlib.import_module(f"experiments.studies.{task['study']}")
    cls_mod, cls_name = task["config_class"].split(":")
    cfg = config_from_dict(getattr(importlib.import_module(cls_mod), cls_name), task["config"])
    seed = int(task.get("seed", 0))
    torch.manual_seed(seed)
    m = task_model(task)
    tctx = TaskContext(task.get("_out"))
    res = mod.compute(tctx, m, cfg, seed=seed, **task.get("kwargs", {}))
    if task.get("title_suffix"):
        res.title = f"{res.title}{task['title_suffix']}"
    with tempfile.TemporaryDirectory(prefix="workbench-task-") as tmp:
        w = StepWriter(Path(tmp), task["step"])
        payload = w.study(res)
        w._write_sections()
        files = {f.name: f.read_bytes() for f in sorted(Path(tmp).iterdir()) if f.is_file()}
    return {"payload": payload, "files": files, "data": tctx.data, "model": model_info(m),
            "seconds": time.time() - t0}


class StepTaskContext(TaskContext):
    """What a step's writer function sees of the run inside a :func:`step_task`: the :class:`TaskContext`
    (``record_data``, ``out``, ``progress`` off) and :meth:`model` (the driver's ``RunContext.model``: loaded once
    per worker process by :func:`task_model`, the default being the task's ``default_model``)."""

    def __init__(self, task: dict) -> None:
        super().__init__(task.get("_out"))
        self._task = task
        #: :func:`model_info` of every model the writer asked for, by name
        self.used: dict[str, dict] = {}

    def model(self, name: str | None = None, backend: str | None = None) -> Any:
        t = {**self._task, "model": name or self._task["default_model"]}
        if backend:
            t["backend"] = backend
        m = task_model(t)
        self.used.setdefault(m.name, model_info(m))
        return m

    def log(self, msg: str) -> None:  # a worker has no log file; the driver logs the step's start and end
        pass


def step_task(task: dict) -> dict:
    """Run one step of an experiment in this process and return it like :func:`study_task` does (``{"payload",
    "files": {name: bytes}, "data", "model", "models", "seconds"}``), for :meth:`experiments.run.RunContext.units`.

    ``task``: ``writer`` (``module:function``, module-level, called as ``fn(ctx, cfg, w, **kwargs)`` with a
    :class:`StepTaskContext`, the experiment's config and a :class:`experiments.writer.StepWriter`; it returns the
    step's payload), ``config`` / ``config_class`` (the experiment's whole config), ``model`` (the worker key: the
    tasks of one ``model`` share a worker), ``models`` (every model the step reads, for its deps),
    ``default_model`` (what ``ctx.model()`` loads), ``backend`` / ``device`` / ``dtype``, ``seed`` (torch's RNG is
    seeded with it first, so a step does not depend on what ran before it in the process), ``threads`` (torch
    intra-op threads, 0: leave), ``step``, ``kwargs`` (JSON) and ``unload`` (models to release afterwards, when no
    later task of this worker needs them). The same writer run by ``RunContext.step`` in the driver writes the
    same files."""
    import importlib
    import tempfile
    import time
    from pathlib import Path

    import torch

    from .config import config_from_dict
    from .writer import StepWriter

    t0, c0 = time.time(), time.process_time()
    mod_name, fn_name = task["writer"].split(":")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    cls_mod, cls_name = task["config_class"].split(":")
    cfg = config_from_dict(getattr(importlib.import_module(cls_mod), cls_name), task["config"])
    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    torch.manual_seed(int(task.get("seed", 0)))
    tctx = StepTaskContext(task)
    with tempfile.TemporaryDirectory(prefix="workbench-task-") as tmp:
        w = StepWriter(Path(tmp), task["step"])
        payload = fn(tctx, cfg, w, **task.get("kwargs", {}))
        w._write_sections()
        files = {f.name: f.read_bytes() for f in sorted(Path(tmp).iterdir()) if f.is_file()}
    info = tctx.used.get(task["model"]) or next(iter(tctx.used.values()), None) or model_info(task_model(task))
    for name in task.get("unload", []):
        key = model_key({**task, "model": name})
        for k in [k for k in _MODELS if model_key(dict(zip(("model", "backend", "device", "dtype"), k))) == key]:
            del _MODELS[k]
    return {"payload": payload, "files": files, "data": tctx.data, "data_prefix": "", "model": info,
            "models": list(tctx.used.values()), "seconds": time.time() - t0, "cpu_seconds": time.process_time() - c0}


def residual_norm_task(task: dict) -> dict:
    """Mean residual-stream norm (``resid_post``) at one layer over the task's prompts, per prompt."""
    import torch

    torch.manual_seed(task.get("seed", 0))
    m = task_model(task)
    site = f"resid_post.{task['layer']}"
    _, cache = m.run_with_cache(task["prompts"], [site], logits=None)
    toks = cache.tokens
    norms = cache[site].norm(dim=-1)
    per_prompt = [float(norms[i][toks.attention_mask[i].bool()].mean()) for i in range(len(toks))]
    return {"layer": task["layer"], "seed": task.get("seed", 0), "per_prompt": per_prompt}


#: the labelled sets :func:`probe_sweep_task` probes: the project's test-vs-deploy framing set, HH-RLHF pairs
PROBE_DATASETS = ("framing", "harmlessness")


def probe_sweep_task(task: dict) -> dict:
    """A logistic probe at every layer of one model on one labelled set (a probe batch job's unit).

    ``task``: the model (as :func:`task_model`), ``dataset`` (one of :data:`PROBE_DATASETS`), ``n`` (topics of
    the framing set / pairs of the harmlessness set), ``seed``, optional ``threads`` (torch threads in this
    worker) and ``activation_cache`` (a directory shared by the workers: activations are collected once per
    model weights, data, read position and layers, :func:`probe.activations.collect_cached`). Returns the
    AUROC (held-out groups) per layer with its interval."""
    import torch

    from probe.activations import collect_cached
    from probe.eval_awareness import framing_set
    from probe.preference import build_preference_set
    from probe.sweep import layer_sweep

    from .study import fits_context

    if task.get("threads"):
        torch.set_num_threads(int(task["threads"]))
    seed = int(task.get("seed", 0))
    torch.manual_seed(seed)
    m = task_model(task)
    name = task["dataset"]
    if name == "framing":
        ds = framing_set(n_topics=int(task.get("n", 8)), seed=seed)
    elif name == "harmlessness":
        ds = build_preference_set("harmlessness", "easy", seed=seed, limit=int(task.get("n", 40)))
    else:
        raise ValueError(f"unknown probe dataset {name!r}; use one of {PROBE_DATASETS}")
    chat = bool(m.facts.has_chat_template) if ds.chat is None else bool(ds.chat)
    fit = fits_context(m, [e.prompt for e in ds.examples], chat=chat, system=ds.system,
                       continuations=[e.output for e in ds.examples])
    if not all(fit):  # a small-context model reads only what fits
        ds = ds.subset([i for i, ok in enumerate(fit) if ok])
    acts = collect_cached(m, ds, task.get("activation_cache"), layers="all")
    sw = layer_sweep(acts, methods=("logistic",), controls=False, C=1.0, seed=seed, n_resamples=200,
                     device="cpu")
    est = sw.estimates("logistic")
    return {"model": task["model"], "dataset": name, "n_examples": len(ds), "n_dropped": fit.count(False),
            "layers": list(sw.layers),
            "auroc": [e.to_dict() for e in est]}
