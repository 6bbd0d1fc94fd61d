"""Replay from a cached residual stream: the fast path for sweeps over one steered layer.

Adding a vector at ``resid_post.L`` (or ``resid_pre.L``) cannot change anything computed before
that site, so a sweep over coefficients at one layer runs the unsteered model once up to the
site, caches the residual stream, and for each coefficient runs only the layers after it
(:class:`workbench.models.stack.StackRunner`: the model's own decoder layers and weights) and the
unembedding at the last position. On SmolLM2 at layer 12 of 30 that is ~40% of a forward pass.
Nor can it change the positions before the first steered one (attention is causal): when the
policy steers only the last tokens (``"generated"``, CAA's tokens after the instruction), the
unsteered pass also keeps every layer's keys and values of the earlier positions, and each
coefficient runs only the steered positions through the later layers (for CAA's A/B prompts,
a few tokens out of ~90).

Results equal a full forward under :func:`steering.operators.steer` through either backend to
1e-4 (tested in ``tests/steering/test_fastpath.py``). Only additive steering at one residual
site takes this path; anything else (ablation at every layer, several sites) runs full forwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from workbench.models.stack import StackRunner, capture_run, prefix_cache
from workbench.models.tokens import resolve_positions
from workbench.sites import Site, parse_site

from .operators import check_positions
from .record import format_items, normalize_items, pad_left

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["ResidualReplay"]


def _position_mask(positions: Any, tokens: Any) -> torch.Tensor:
    """``[batch, seq]`` bool: the columns a steering policy adds to."""
    p = positions
    if isinstance(p, str) and p in ("all", "prompt"):
        return tokens.attention_mask.bool()
    if isinstance(p, str) and p in ("generated", "last"):
        return resolve_positions("last", tokens)
    return resolve_positions(p, tokens)


@torch.inference_mode()
def _unsteered_passes(model: Model, items: Any, sites: list[Site], positions: Any, *, chat: bool,
                      system: str | None, assistant_prefix: str | None, batch_size: int) -> tuple[list, dict]:
    """One unsteered pass over ``items`` for every site at once.

    Returns the normalised items and, per site, ``(batches, batch_norms)``: each batch is
    ``(idx, tokens, h, mask, p0, kv)`` with ``p0`` the first steered column (nothing before it can
    change), ``h`` the residual at the site for columns ``>= p0`` and ``kv`` every layer's keys and
    values of columns ``< p0`` (``None`` when ``p0 == 0``); ``batch_norms`` the mean residual norm at
    the site over each batch's real tokens.
    """
    items = normalize_items(items, system=system, assistant_prefix=assistant_prefix)
    _, ids, _ = format_items(model, items, chat=chat)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: dict[Site, tuple[list, list]] = {s: ([], []) for s in sites}
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        tokens = pad_left(model, [ids[i] for i in idx])
        mask = _position_mask(positions, tokens)
        steered = torch.nonzero(mask.any(0)).flatten()
        p0 = int(steered[0]) if len(steered) else 0
        if p0 > 0:  # through the raw stack, keeping the prefix's keys and values
            run = capture_run(model, tokens.input_ids, sites, attention_mask=tokens.attention_mask,
                              position_ids=tokens.position_ids)
            got, kv = run.acts, [(k[:, :, :p0], v[:, :, :p0]) for k, v in run.kv]
        else:
            _, cache = model.run_with_cache(tokens, sites, positions="all", logits=None)
            got, kv = {s: cache[s].detach() for s in sites}, None
        real = tokens.attention_mask.bool()
        for s in sites:
            full = got[s]
            out[s][0].append((idx, tokens, full[:, p0:].clone() if p0 else full, mask, p0, kv))
            out[s][1].append(float(full.float().norm(dim=-1)[real].mean()))
    return items, out


def _check_site(model: Model, site: Site | str) -> Site:
    s = model.check_site(parse_site(site))
    if s.kind not in ("resid_pre", "resid_post"):
        raise ValueError(f"the replay fast path steers resid_pre/resid_post sites, not {s.kind}")
    return s


class ResidualReplay:
    """Cache the residual stream of ``items`` at ``site``; then ``last_logits(added)`` gives the
    next-token logits (at each item's last token) with ``added`` added at ``positions``.

    ``positions`` follows the steering policy of a forward pass: ``"all"``/``"prompt"`` every real
    token, ``"generated"``/``"last"`` the last token, or an index spec. :meth:`for_sites` builds the
    replays of several sites (a layer sweep) from one unsteered pass."""

    def __init__(self, model: Model, items: Any, site: Site | str, *, positions: Any = "all", chat: bool = True,
                 system: str | None = None, assistant_prefix: str | None = None, batch_size: int = 16,
                 _state: tuple | None = None):
        self.model = model
        self.site = _check_site(model, site)
        self.positions = check_positions(positions)
        if _state is None:
            norm_items, per_site = _unsteered_passes(model, items, [self.site], self.positions, chat=chat,
                                                     system=system, assistant_prefix=assistant_prefix,
                                                     batch_size=batch_size)
            _state = (norm_items, *per_site[self.site])
        self.items, self._batches, self.batch_norms = _state  # batch_norms: mean residual norm per batch
        self._runner = StackRunner(model)
        self._start = self.site.layer + (1 if self.site.kind == "resid_post" else 0)
        self.n = len(self.items)

    @classmethod
    def for_sites(cls, model: Model, items: Any, sites: Any, *, positions: Any = "all", chat: bool = True,
                  system: str | None = None, assistant_prefix: str | None = None,
                  batch_size: int = 16) -> dict[Site, "ResidualReplay"]:
        """``{site: ResidualReplay}`` for several sites from one unsteered pass over ``items``."""
        sites = list(dict.fromkeys(_check_site(model, s) for s in sites))
        positions = check_positions(positions)
        norm_items, per_site = _unsteered_passes(model, items, sites, positions, chat=chat, system=system,
                                                 assistant_prefix=assistant_prefix, batch_size=batch_size)
        return {s: cls(model, items, s, positions=positions, _state=(norm_items, *per_site[s])) for s in sites}

    @torch.inference_mode()
    def last_logits(self, added: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, vocab]`` float32 logits at each item's last token (input order)."""
        out: list[torch.Tensor | None] = [None] * self.n
        for idx, tokens, h, mask, p0, kv in self._batches:
            x = h
            if added is not None:
                a = torch.as_tensor(added).to(device=h.device, dtype=h.dtype)
                if a.shape != (h.shape[-1],):
                    raise ValueError(f"added vector must have shape ({h.shape[-1]},), got {tuple(a.shape)}")
                x = torch.where(mask[:, p0:, None].to(h.device), h + a, h)
            x = self._runner.run(x, self._start, attention_mask=tokens.attention_mask,
                                 position_ids=tokens.position_ids[:, p0:],
                                 cache=None if kv is None else prefix_cache(kv))
            logits = self._runner.logits(x[:, -1]).float().cpu()
            for j, i in enumerate(idx):
                out[i] = logits[j]
        return torch.stack(out)  # type: ignore[arg-type]
