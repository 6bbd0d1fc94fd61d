"""Progress of a grid of tasks (done, running, failed, ETA) in the terminal and the run's log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import RunContext


class GridProgress:
    """Progress of one grid: tasks done, running, failed, and an ETA, written to ``log.txt`` (and the terminal
    when the run shows progress) at the start, at most every ``every`` seconds, and at the end.

    "running" is the tasks in flight: at most the executor's parallelism (one for the local executor). The ETA
    is the remaining tasks at this session's rate (finished tasks per second)."""

    def __init__(self, ctx: "RunContext", grid: str, total: int, *, done: int = 0, parallelism: int = 1,
                 every: float = 5.0):
        self.ctx, self.grid, self.total, self.parallelism, self.every = ctx, grid, total, max(1, parallelism), every
        self.done, self.failed, self._new = done, 0, 0
        self._t0 = self._last = time.time()

    def line(self) -> str:
        left = self.total - self.done - self.failed
        running = min(left, self.parallelism)
        if left == 0:
            eta = "finished"
        elif self._new:
            eta = f"ETA {_duration((time.time() - self._t0) / self._new * left)}"
        else:
            eta = "ETA unknown"
        return (f"grid {self.grid}: {self.done}/{self.total} done, {running} running, {self.failed} failed, {eta} "
                f"({_duration(time.time() - self._t0)} elapsed)")

    def update(self, *, failed: bool = False) -> None:
        if failed:
            self.failed += 1
        else:
            self.done += 1
            self._new += 1
        self.show(force=self.done + self.failed == self.total)

    def show(self, *, force: bool = False) -> None:
        if force or time.time() - self._last >= self.every:
            self._last = time.time()
            self.ctx.log(self.line())


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
