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

from workbench.errors import WorkbenchError

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RayConnectionError", "make_executor"]


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
                 num_gpus: float = 0.0, runtime_env: dict | None = None, connect_timeout: float = 25.0):
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
    Ray head makes ``ray.init`` wait indefinitely)."""
    import threading

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
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, **kw)
    raise ValueError(f"unknown executor {name!r}; use 'local' or 'ray'")
