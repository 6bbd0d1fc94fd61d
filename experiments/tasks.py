"""Task functions for grids: module-level, JSON in and out, so they run in any executor.

A task names its model; each worker process loads it once (:func:`task_model`) and reuses it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["task_model", "residual_norm_task"]

_MODELS: dict[tuple, Any] = {}


def task_model(task: dict) -> Any:
    """The model a task names (``model``, ``backend``, ``device``, ``dtype``), loaded once per process."""
    from workbench.models import load

    key = (task["model"], task.get("backend", "tl"), task.get("device", "auto"), task.get("dtype", "float32"))
    if key not in _MODELS:
        _MODELS[key] = load(key[0], backend=key[1], device=key[2], dtype=key[3])
    return _MODELS[key]


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
