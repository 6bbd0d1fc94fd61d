"""Executors: where the tasks of a grid run.

An executor has one method, ``map(fn, tasks, key=None, return_failures=False)``, yielding ``(index, result)``
pairs as tasks finish (in any order). The run context writes each result as its own shard (or step) the
moment it arrives, so a killed job loses only the tasks in flight. ``key(task)`` (e.g.
:func:`experiments.tasks.model_key`) groups tasks that should share one worker process: the tasks of one
model, so that it loads once. With ``return_failures`` a task that raised yields a :class:`TaskFailed`
instead of stopping the grid.

- :class:`LocalExecutor`: in this process, one task after another (the default).
- :class:`RayExecutor`: Ray tasks on a cluster (``address="ray://host:10001"`` or ``"auto"``) or on
  a local Ray started for the run (``address=None``). Use it to spread grids of (model, layer,
  persona, seed) over GPU nodes; ``num_gpus`` reserves GPUs per task (or per model worker). Keyed
  tasks run on one Ray actor per key (a model worker), restarted with its tasks retried when its
  process dies; plain tasks are retried by Ray (``max_retries``). Ray is an optional dependency
  (``pip install "interp-workbench[ray]"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from workbench.errors import WorkbenchError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RayConnectionError", "TaskFailed", "make_executor"]


@dataclass
class TaskFailed:
    """What ``map(..., return_failures=True)`` yields for a task that raised (after any retries)."""

    error: BaseException

    def __str__(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class Executor:
    name = "executor"
    #: how many tasks run at once (for progress and ETA)
    parallelism = 1

    def map(self, fn: Callable[[dict], Any], tasks: Sequence[dict], *, key: Callable[[dict], str] | None = None,
            return_failures: bool = False) -> Iterator[tuple[int, Any]]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """In this process, one task after another. Keyed tasks run grouped by key in order of first appearance (the
    key of a model still loaded first); moving to the next key releases the models the previous one loaded
    (:func:`experiments.tasks.release_models`). Results come back in that order; the run writes each where its
    task belongs, so what is written does not depend on it."""

    name = "local"

    def map(self, fn, tasks, *, key=None, return_failures=False):
        order = list(range(len(tasks)))
        if key is not None:
            from .tasks import loaded_keys

            first: dict[str, int] = {}
            for i, t in enumerate(tasks):
                first.setdefault(key(t), i)
            held = loaded_keys()  # a model still loaded from the last grid goes first (it is not loaded again)
            order.sort(key=lambda i: (key(tasks[i]) not in held, first[key(tasks[i])]))
        for i in order:
            if key is not None:
                from .tasks import release_models

                release_models(keep=key(tasks[i]))
            try:
                out = fn(tasks[i])
            except Exception as e:
                if not return_failures:
                    raise
                out = TaskFailed(e)
            yield i, out

    def close(self) -> None:
        from .tasks import release_models

        release_models()


class RayExecutor(Executor):
    """Run tasks as Ray remote functions.

    Args:
        address: a Ray cluster address; ``None`` starts a local Ray for the run (stopped by
            :meth:`close`).
        num_cpus: CPUs for a local Ray (default: all) and per task ``cpus_per_task``.
        num_gpus: GPUs reserved per task or model worker (0 on CPU machines).
        max_retries: how often a task whose worker process died is run again (a model worker is restarted as
            often, its unfinished tasks retried); a task that raises is not retried.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, cpus_per_task: float = 1.0,
                 num_gpus: float = 0.0, runtime_env: dict | None = None, connect_timeout: float = 25.0,
                 max_retries: int = 3):
        try:
            import ray
        except ImportError as e:
            raise ImportError('the Ray executor needs Ray: pip install "interp-workbench[ray]"') from e
        self._ray = ray
        self._started = False
        self._actors: dict[str, list[Any]] = {}  # model workers by key
        if not ray.is_initialized():
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            if address is None:
                kw["num_cpus"] = num_cpus
            else:
                _check_reachable(address)
                kw["address"] = address
            import os
            from pathlib import Path

            root = str(Path(__file__).resolve().parents[1])  # workers import experiments/workbench from here
            env = dict(runtime_env or {})
            env.setdefault("env_vars", {})["PYTHONPATH"] = os.pathsep.join(
                [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
            kw["runtime_env"] = env
            _init_with_timeout(ray, kw, connect_timeout, address)
            self._started = address is None
        self._opts = dict(num_cpus=cpus_per_task, num_gpus=num_gpus)
        self._retries = int(max_retries)
        self._worker_cls: Any = None
        res = ray.cluster_resources()
        if num_gpus > 0 and res.get("GPU", 0.0) < num_gpus:
            self.close()
            raise RayConnectionError(
                f"--num-gpus {num_gpus:g} reserves GPUs per task, but the Ray cluster has {res.get('GPU', 0.0):g}; "
                "give --num-gpus 0 on CPU machines, or join a cluster with GPUs (--ray-address)")
        per = num_gpus if num_gpus > 0 else cpus_per_task
        have = res.get("GPU", 0.0) if num_gpus > 0 else res.get("CPU", 1.0)
        self.parallelism = max(1, int(have // per)) if per > 0 else 1

    def _get(self, ref: Any, return_failures: bool) -> Any:
        try:
            return self._ray.get(ref)
        except Exception as e:
            if not return_failures:
                raise
            return TaskFailed(e)

    def map(self, fn, tasks, *, key=None, return_failures=False):
        if key is not None:
            yield from self._map_keyed(fn, tasks, key, return_failures)
            return
        ray = self._ray
        for k in list(self._actors):  # model workers kept for a later grid hold the CPUs (GPUs) these tasks need
            self._drop(k)
        remote = ray.remote(max_retries=self._retries, **self._opts)(fn)
        refs = {remote.remote(t): i for i, t in enumerate(tasks)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                yield refs[r], self._get(r, return_failures)

    def _worker(self, k: str) -> Any:
        """A new model worker (actor) for key ``k``."""
        if self._worker_cls is None:
            self._worker_cls = self._ray.remote(max_restarts=self._retries, max_task_retries=self._retries,
                                                **self._opts)(_ModelWorker)
        actor = self._worker_cls.remote()
        self._actors.setdefault(k, []).append(actor)
        return actor

    def _drop(self, k: str) -> None:
        """Stop every model worker of key ``k``."""
        for actor in self._actors.pop(k, []):
            self._ray.kill(actor, no_restart=True)

    def _retire(self, k: str, actor: Any) -> None:
        """Stop one model worker of key ``k``."""
        acts = self._actors.get(k, [])
        if actor in acts:
            acts.remove(actor)
            if not acts:
                del self._actors[k]
        self._ray.kill(actor, no_restart=True)

    def _map_keyed(self, fn, tasks, key, return_failures):
        """Model workers (actors) keyed by model, at most ``parallelism`` alive, each given one task at a time.

        A worker runs the next task of its model while there is one; then it is stopped and its place goes to a
        model no worker holds yet, or, when none waits, to the model with the most tasks not yet started (a second
        worker loads it too: the tail of a grid uses every worker instead of leaving them idle behind the last
        model's queue); with nothing left to start it stays alive for the next grid (its model stays loaded).
        Workers kept from an earlier grid for a model of this one are used first."""
        ray = self._ray
        queue: dict[str, list[int]] = {}
        for i, t in enumerate(tasks):
            queue.setdefault(key(t), []).append(i)
        for k in [k for k in self._actors if k not in queue]:
            self._drop(k)
        refs: dict[Any, tuple[int, str, Any]] = {}

        def submit(k: str, actor: Any) -> None:
            i = queue[k].pop(0)
            refs[actor.run.remote(fn, tasks[i])] = (i, k, actor)

        def next_key() -> str | None:
            waiting = [k for k in queue if queue[k] and k not in self._actors]
            if waiting:
                return waiting[0]
            return max((k for k in queue if queue[k]), key=lambda k: len(queue[k]), default=None)

        kept = [(k, a) for k, acts in list(self._actors.items()) for a in acts]
        for k, a in kept[self.parallelism:]:  # (never more than fit; kept for safety)
            self._retire(k, a)
        slots = kept[: self.parallelism]
        for k, a in slots:
            if queue[k]:
                submit(k, a)
        for k, a in slots:  # a kept worker whose model has nothing to start here makes room
            if not any(x is a for _, _, x in refs.values()):
                nk = next_key()
                if nk is not None:
                    self._retire(k, a)
                    submit(nk, self._worker(nk))
        while len({id(a) for _, _, a in refs.values()}) < self.parallelism:
            nk = next_key()
            if nk is None:
                break
            submit(nk, self._worker(nk))
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            r = done[0]
            i, k, actor = refs.pop(r)
            out = self._get(r, return_failures)
            if queue[k]:
                submit(k, actor)
            else:
                nk = next_key()
                if nk is not None:
                    self._retire(k, actor)
                    submit(nk, self._worker(nk))
            yield i, out

    def close(self) -> None:
        for k in list(self._actors):
            self._drop(k)
        if self._started:
            self._ray.shutdown()
            self._started = False


class _ModelWorker:
    """A Ray actor that runs every task of one key (one model) in its process, so the model loads once
    (:func:`experiments.tasks.task_model` keeps it) and is reused by each task."""

    def run(self, fn: Callable[[dict], Any], task: dict) -> Any:
        return fn(task)

    def pid(self) -> int:
        import os

        return os.getpid()


class RayConnectionError(WorkbenchError, ConnectionError):
    pass


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address (``ray://host:10001``, ``host:6379``), or None for ``auto``/``local``."""
    a = address.strip()
    if a in ("auto", "local", ""):
        return None
    if "://" in a:
        a = a.split("://", 1)[1]
    a = a.split("/", 1)[0]
    if a.count(":") != 1:
        raise RayConnectionError(f"cannot read Ray address {address!r}: write host:port or ray://host:port (or 'auto')")
    host, port = a.rsplit(":", 1)
    try:
        return host, int(port)
    except ValueError:
        raise RayConnectionError(f"Ray address {address!r} has no numeric port") from None


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail within seconds when nothing listens at a Ray address (``ray.init`` would retry for minutes)."""
    import socket

    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            return
    except OSError as e:
        raise RayConnectionError(
            f"cannot reach the Ray cluster at {address!r} ({hp[0]}:{hp[1]}: {e or 'timed out'}). Check the address "
            "(`ray status` on the head node prints it) and that this machine can reach it, or leave out "
            "--ray-address to start a local Ray."
        ) from None


def _init_with_timeout(ray: Any, kw: dict, timeout: float, address: str | None) -> None:
    """``ray.init(**kw)``, given up after ``timeout`` seconds (a port that accepts connections but is not a
    Ray head makes ``ray.init`` wait indefinitely).

    Only joining an existing cluster runs in a helper thread. Starting a local Ray forks its GCS and raylet
    with a parent-death signal, which Linux ties to the forking *thread*: started from a helper thread that
    then exits, they are killed and the driver aborts a minute later ("Failed to connect to GCS")."""
    import threading

    if address is None:
        try:
            ray.init(**kw)
        except Exception as e:  # noqa: BLE001 - one named error for every way a local start fails
            raise RayConnectionError(f"could not start a local Ray: {type(e).__name__}: {e}") from e
        return

    err: list[BaseException] = []

    def go() -> None:
        try:
            ray.init(**kw)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            err.append(e)

    t = threading.Thread(target=go, daemon=True, name="ray-init")
    t.start()
    t.join(timeout)
    where = f"the Ray cluster at {address!r}" if address else "a local Ray"
    if t.is_alive():
        raise RayConnectionError(
            f"could not connect to {where} within {timeout:.0f} s; check that a Ray head runs there (`ray status`) "
            "and that its version matches this Ray"
        )
    if err:
        e = err[0]
        raise RayConnectionError(f"could not start or join {where}: {type(e).__name__}: {e}") from e


def make_executor(name: str, address: str | None = None, **kw: Any) -> Executor:
    if name == "local":
        if kw.get("num_gpus") or kw.get("num_cpus"):
            raise ValueError("--num-gpus and --ray-cpus size the Ray executor; add --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, **kw)
    raise ValueError(f"unknown executor {name!r}; use 'local' or 'ray'")
