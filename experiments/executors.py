"""Executors: where the tasks of a grid run.

An executor has one method, ``map(fn, tasks)``, yielding ``(index, result)`` pairs as tasks finish
(in any order). The run context writes each result as its own shard the moment it arrives, so a
killed job loses only the tasks in flight.

- :class:`LocalExecutor`: in this process, one task after another (the default).
- :class:`RayExecutor`: Ray tasks on a cluster (``address="ray://host:10001"`` or ``"auto"``) or on
  a local Ray started for the run (``address=None``). Use it to spread grids of (model, layer,
  persona, seed) over GPU nodes; ``num_gpus`` reserves GPUs per task. Ray is an optional
  dependency (``pip install "interp-workbench[ray]"``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "make_executor"]


class Executor:
    name = "executor"

    def map(self, fn: Callable[[dict], Any], tasks: Sequence[dict]) -> Iterator[tuple[int, Any]]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    name = "local"

    def map(self, fn, tasks):
        for i, t in enumerate(tasks):
            yield i, fn(t)


class RayExecutor(Executor):
    """Run tasks as Ray remote functions.

    Args:
        address: a Ray cluster address; ``None`` starts a local Ray for the run (stopped by
            :meth:`close`).
        num_cpus: CPUs for a local Ray (default: all) and per task ``cpus_per_task``.
        num_gpus: GPUs reserved per task (0 on CPU machines).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, cpus_per_task: float = 1.0,
                 num_gpus: float = 0.0, runtime_env: dict | None = None):
        try:
            import ray
        except ImportError as e:
            raise ImportError('the Ray executor needs Ray: pip install "interp-workbench[ray]"') from e
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            if address is None:
                kw["num_cpus"] = num_cpus
            else:
                kw["address"] = address
            import os
            from pathlib import Path

            root = str(Path(__file__).resolve().parents[1])  # workers import experiments/workbench from here
            env = dict(runtime_env or {})
            env.setdefault("env_vars", {})["PYTHONPATH"] = os.pathsep.join(
                [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
            kw["runtime_env"] = env
            ray.init(**kw)
            self._started = address is None
        self._opts = dict(num_cpus=cpus_per_task, num_gpus=num_gpus)

    def map(self, fn, tasks):
        ray = self._ray
        remote = ray.remote(**self._opts)(fn)
        refs = {remote.remote(t): i for i, t in enumerate(tasks)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                yield refs[r], ray.get(r)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(name: str, address: str | None = None, **kw: Any) -> Executor:
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, **kw)
    raise ValueError(f"unknown executor {name!r}; use 'local' or 'ray'")
