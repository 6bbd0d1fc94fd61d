"""The fast path shared by patching sweeps: base runs, patched residuals, chunked partial forwards.

A patched run differs from its base run (the corrupt run when denoising, the clean run when
noising) only downstream of the patch. So a cell is reduced to *the residual stream entering some
layer S* (``resid_pre.S``; ``S == n_layers`` means the final residual), which differs from the
base run's only at positions ``>= p_first``. The patched forward then

- starts at layer ``S`` from that residual (layers before the patch are never recomputed),
- computes only positions ``>= p0`` (the chunk's smallest ``p_first``); the keys and values of the
  earlier positions come from the base run's KV cache, which is exact because of causal masking,
- unembeds only the read position (the metric never reads other logits).

Many cells with the same ``S`` run in one batched forward; chunks are chosen by a small dynamic
program over the cells sorted by ``p_first`` that trades wasted positions against per-forward
overhead, under a token budget (memory). Everything is computed with the model's own modules via
:class:`workbench.models.stack.StackRunner`, so the numerics are the raw Hugging Face ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch

from workbench.models.stack import StackRunner, capture_run, prefix_cache
from workbench.sites import Site

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["BaseRun", "base_run", "run_cells", "mlp_after_attn", "plan_chunks"]


@dataclass
class BaseRun:
    """Activations of one unpatched run (canonical shapes), its KV cache and final residual."""

    acts: dict[Site, torch.Tensor]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    final: torch.Tensor  # [B, T, d] residual after the last layer (before the final norm)

    def entering(self, S: int, n_layers: int) -> torch.Tensor:
        """The residual entering layer ``S`` (``S == n_layers``: the final residual)."""
        if S == n_layers:
            return self.final
        return self.acts[Site("resid_pre", S)]


@torch.inference_mode()
def base_run(model: Model, input_ids: torch.Tensor, kinds: Sequence[str], *, embed_offset: torch.Tensor | None = None
             ) -> BaseRun:
    """One full forward through the raw stack capturing ``kinds`` at every layer (plus resid_pre)."""
    # attn_out and resid_mid are derived from the residual stream: plain PyTorch hooks on the attention
    # module do not fire under the TransformerLens backend (the bridge calls its own wrapper), nor does
    # GPT-2's ln_2 input, so only sites that fire under both backends are hooked.
    derive = set(kinds) & {"attn_out", "resid_mid"}
    wanted = (set(kinds) - derive) | {"resid_pre", "resid_post"}
    if derive:
        wanted.add("mlp_out")
    run = capture_run(model, input_ids, [Site(k, L) for L in range(model.n_layers) for k in sorted(wanted)],
                      embed_offset=embed_offset)
    acts = run.acts
    parallel = model.facts.parallel_attn_mlp
    for L in range(model.n_layers):
        if not derive:
            break
        pre, post, mlp = acts[Site("resid_pre", L)], acts[Site("resid_post", L)], acts[Site("mlp_out", L)]
        if parallel:
            acts[Site("attn_out", L)] = post - mlp - pre
        else:
            mid = post - mlp
            acts[Site("resid_mid", L)] = mid
            acts[Site("attn_out", L)] = mid - pre
    return BaseRun(acts, [k for k, _ in run.kv], [v for _, v in run.kv], run.final)


def mlp_after_attn(model: Model, layer: int, resid_mid: torch.Tensor) -> torch.Tensor:
    """The residual leaving a sequential ``layer`` given ``resid_mid``: ``resid_mid + post(mlp(ln2(resid_mid)))``
    (``ln2`` and the post-MLP norm where the family has them; times the residual scale where the layer scales what
    it adds, as Granite does)."""
    ln2, mlp = model.layer_module(layer, "ln2"), model.layer_module(layer, "mlp")
    post = model.layer_module(layer, "mlp_post_norm")
    scale = getattr(model.arch, "residual_scale", None)
    with torch.inference_mode():
        out = mlp(ln2(resid_mid) if ln2 is not None else resid_mid)
        out = out[0] if isinstance(out, tuple) else out
        out = post(out) if post is not None else out
        return resid_mid + (out * scale if scale else out)


def _make_cache(model: Model, base: BaseRun, p0: int, n: int) -> Any:
    """A KV cache with the base run's keys/values of positions ``< p0``, tiled ``n`` times (cell-major)."""
    return prefix_cache(list(zip(base.keys, base.values)), p0, repeat=n)


def plan_chunks(p_first: Sequence[int], T: int, batch: int, max_tokens: int, overhead_tokens: int = 16,
                max_rows: int | None = None) -> list[tuple[int, int]]:
    """Split cells (sorted by ``p_first``) into ``[i, j)`` chunks minimising
    ``sum(rows * (T - p0) + overhead)`` with ``rows * (T - p0) <= max_tokens`` (rows = cells * batch)."""
    n = len(p_first)
    INF = float("inf")
    best = [0.0] + [INF] * n
    choice = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            rows = (j - i) * batch
            width = T - p_first[i]
            if max_rows is not None and (j - i) > max_rows:
                break
            if rows * width > max_tokens and j - i > 1:
                break
            c = best[i] + rows * width + overhead_tokens
            if c < best[j]:
                best[j], choice[j] = c, i
    out = []
    j = n
    while j > 0:
        i = choice[j]
        out.append((i, j))
        j = i
    return out[::-1]


@dataclass
class CellGroup:
    """Cells that start at the same layer ``S``: ``build(ids) -> [len(ids), B, T, d]`` patched residuals."""

    start: int
    ids: list[int]               # indices into the sweep's flat cell list
    p_first: list[int]           # first position that differs from the base (sorted ascending)
    build: Callable[[list[int]], torch.Tensor]


@torch.inference_mode()
def run_cells(model: Model, base: BaseRun, groups: list[CellGroup], read_pos: int, metric: Callable,
              n_cells: int, *, max_tokens: int, overhead_tokens: int = 16, max_rows: int | None = None,
              progress: bool = False, desc: str = "patching") -> torch.Tensor:
    """Metric values ``[n_cells, B]`` of every cell (cells not in any group are left NaN)."""
    runner = StackRunner(model)
    N = model.n_layers
    B, T = base.final.shape[:2]
    out = torch.full((n_cells, B), float("nan"))
    rows_index = torch.arange(B)
    plan = []
    for g in groups:
        for i, j in plan_chunks(g.p_first, T, B, max_tokens, overhead_tokens, max_rows):
            plan.append((g, i, j))
    it = plan
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(plan, desc=desc, unit="forward")
    dev = base.final.device
    for g, i, j in it:
        ids = g.ids[i:j]
        n = len(ids)
        p0 = g.p_first[i]
        resid = g.build(ids)  # [n, B, T, d]
        h = resid.reshape(n * B, T, -1)
        if g.start < N:
            cache = _make_cache(model, base, p0, n)
            pos = torch.arange(p0, T, device=dev).expand(n * B, T - p0)
            am = torch.ones(n * B, T, dtype=torch.long, device=dev)
            h = runner.run(h[:, p0:], g.start, attention_mask=am, position_ids=pos, cache=cache)
            h = h[:, read_pos - p0]
        else:
            h = h[:, read_pos]
        logits = model.unembed(h)
        vals = metric(logits, rows_index.repeat(n).to(logits.device))
        out[ids] = vals.detach().float().cpu().reshape(n, B)
    return out
