"""Record activations at chosen layers and positions for a set of prompts.

Items are plain prompts (``str``, chat messages, or a list of token ids used as given) or dicts
with per-item settings::

    {"prompt": "What is 2+2?", "system": "You are terse.", "assistant_prefix": "(A",
     "response": "It is 4."}

``system`` and ``assistant_prefix`` apply with ``chat=True`` (the model's chat template);
``response`` is text appended after the (formatted) prompt whose tokens ``positions="response"``
averages over (persona vectors, Chen et al. 2025: the mean over response tokens).

Positions:

- ``"last"`` (default): each item's last token -> ``[n, d]`` (CAA reads the answer letter this
  way: the prompt ends with ``"(A"``);
- an ``int`` (negative counts from the end of the real tokens) -> ``[n, d]``;
- a ``list`` of ints -> ``[n, len(list), d]`` (Arditi et al.'s post-instruction positions);
- ``"mean"``: mean over every real token -> ``[n, d]``;
- ``"response"``: mean over the tokens of each item's ``response`` -> ``[n, d]``.

Prompts are batched by length (left padding, so padding never changes an activation) and the
unembedding is skipped. Returns ``{layer: tensor}`` on the CPU in float32, items in input order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.layers import resolve_layers
from workbench.sites import Site

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["record_activations", "PromptItem", "normalize_items", "format_items", "pad_left", "RecordError"]


class RecordError(WorkbenchError, ValueError):
    pass


@dataclass(frozen=True)
class PromptItem:
    """One prompt with its own system message, assistant prefix and response text."""

    prompt: Any
    system: str | None = None
    assistant_prefix: str | None = None
    response: str | None = None

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "system": self.system, "assistant_prefix": self.assistant_prefix,
                "response": self.response}


_ITEM_KEYS = {"prompt", "system", "assistant_prefix", "response"}


def normalize_items(items: Any, *, system: str | None = None, assistant_prefix: str | None = None) -> list[PromptItem]:
    """Turn strings, chat message lists, dicts or :class:`PromptItem` into a list of PromptItems.

    ``system`` / ``assistant_prefix`` fill in items that do not set their own."""
    if isinstance(items, (str, PromptItem, Mapping)) or (isinstance(items, list) and items and (
            (isinstance(items[0], dict) and "role" in items[0]) or _is_ids(items))):
        items = [items]
    out = []
    for i, it in enumerate(items):
        if isinstance(it, PromptItem):
            p = it
        elif isinstance(it, Mapping):
            extra = set(it) - _ITEM_KEYS
            if "prompt" not in it or extra:
                raise RecordError(
                    f"item {i}: a dict item needs 'prompt' and may have {sorted(_ITEM_KEYS - {'prompt'})}; "
                    f"got keys {sorted(it)}"
                )
            p = PromptItem(it["prompt"], it.get("system"), it.get("assistant_prefix"), it.get("response"))
        else:
            p = PromptItem(it)
        if p.system is None and system is not None:
            p = PromptItem(p.prompt, system, p.assistant_prefix, p.response)
        if p.assistant_prefix is None and assistant_prefix is not None:
            p = PromptItem(p.prompt, p.system, assistant_prefix, p.response)
        out.append(p)
    if not out:
        raise RecordError("no prompts given")
    return out


def _is_ids(prompt: Any) -> bool:
    return isinstance(prompt, (list, tuple)) and len(prompt) > 0 and all(
        isinstance(t, int) and not isinstance(t, bool) for t in prompt)


def format_items(model: Model, items: Sequence[PromptItem], *, chat: bool) -> tuple[list[str], list[int], list[int]]:
    """Exact texts to tokenise, their token ids, and the number of response tokens per item.

    Returns ``(texts, ids, n_response)``; ``ids`` are what the model sees (BOS included when the
    model prepends one to non-chat prompts)."""
    tok = model.tokenizer
    texts, ids_out, n_resp = [], [], []
    bos = [model.facts.bos_token_id] if (not chat and model.prepend_bos and model.facts.bos_token_id is not None) else []
    for i, it in enumerate(items):
        if _is_ids(it.prompt):
            if it.system is not None or it.assistant_prefix is not None or it.response:
                raise RecordError(f"item {i}: token ids are used as given; system/assistant_prefix/response do not apply")
            ids = [int(t) for t in it.prompt]
            texts.append(model.tokenizer.decode(ids))
            ids_out.append(ids)
            n_resp.append(0)
            continue
        if chat:
            prefix = model.format_chat(it.prompt, system=it.system, assistant_prefix=it.assistant_prefix)
        else:
            if it.system is not None or it.assistant_prefix is not None:
                raise RecordError(f"item {i}: system / assistant_prefix need chat=True")
            if not isinstance(it.prompt, str):
                raise RecordError(f"item {i}: chat messages need chat=True")
            prefix = it.prompt
        full = prefix + (it.response or "")
        ids = bos + tok(full, add_special_tokens=False)["input_ids"]
        if it.response:
            pre = bos + tok(prefix, add_special_tokens=False)["input_ids"]
            k = 0
            while k < min(len(pre), len(ids)) and pre[k] == ids[k]:
                k += 1
            n = len(ids) - k  # tokens that differ from the prompt alone (a merged boundary token counts)
            if n <= 0:
                raise RecordError(f"item {i}: the response {it.response!r} adds no tokens")
        else:
            n = 0
        texts.append(full)
        ids_out.append(ids)
        n_resp.append(n)
    return texts, ids_out, n_resp


def pad_left(model: Model, ids_list: Sequence[Sequence[int]]) -> Any:
    """A left-padded :class:`~workbench.models.tokens.Tokens` batch of token id lists."""
    from workbench.models.tokens import Tokens

    T = max(len(x) for x in ids_list)
    pad = model.facts.pad_token_id if model.facts.pad_token_id is not None else 0
    input_ids = torch.full((len(ids_list), T), pad, dtype=torch.long)
    mask = torch.zeros((len(ids_list), T), dtype=torch.long)
    for i, x in enumerate(ids_list):
        input_ids[i, T - len(x):] = torch.tensor(list(x), dtype=torch.long)
        mask[i, T - len(x):] = 1
    return Tokens(input_ids.to(model.device), mask.to(model.device), "left")


def _reduce(x: torch.Tensor, tokens: Any, positions: Any, n_resp: list[int]) -> torch.Tensor:
    """[b, t, d] padded activations -> per-row reduction according to ``positions``."""
    from workbench.models.tokens import resolve_positions

    b, t, _ = x.shape
    if positions == "last":
        return x[torch.arange(b), tokens.last_index.to(x.device)]
    if positions == "mean":
        m = tokens.attention_mask.to(x.device, x.dtype)
        return (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    if positions == "response":
        m = torch.zeros(b, t, dtype=x.dtype, device=x.device)
        last = tokens.last_index.tolist()
        for r in range(b):
            m[r, last[r] - n_resp[r] + 1:last[r] + 1] = 1
        return (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)
    if isinstance(positions, int):
        mask = resolve_positions(positions, tokens).to(x.device)
        return x[mask]
    if isinstance(positions, (list, tuple)):
        return torch.stack([_reduce(x, tokens, int(p), n_resp) for p in positions], dim=1)
    raise RecordError(
        f"unknown positions {positions!r}; use 'last', 'mean', 'response', an int, or a list of ints"
    )


def record_activations(model: Model, items: Any, layers: Any = None, *, site: str = "resid_post",
                       positions: Any = "last", chat: bool = True, system: str | None = None,
                       assistant_prefix: str | None = None, batch_size: int = 16,
                       interventions: Any = None, progress: bool = False) -> dict[int, torch.Tensor]:
    """Activations of ``items`` at ``site`` in each of ``layers``, reduced over ``positions``.

    Returns ``{layer: [n, d]}`` (or ``[n, P, d]`` for a list of positions), float32 on the CPU,
    in the order of ``items``. ``interventions`` are active during the pass (e.g. to record a
    steered model)."""
    layers = resolve_layers(model, layers)
    items = normalize_items(items, system=system, assistant_prefix=assistant_prefix)
    if positions == "response" and any(not it.response for it in items):
        missing = [i for i, it in enumerate(items) if not it.response][:5]
        raise RecordError(f"positions='response' needs a 'response' for every item; missing at {missing}")
    if batch_size < 1:
        raise RecordError(f"batch_size must be >= 1, got {batch_size}")
    sites = [model.check_site(Site(site, L)) for L in layers]
    _, ids, n_resp = format_items(model, items, chat=chat)
    order = sorted(range(len(items)), key=lambda i: -len(ids[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="record activations", unit="batch")
    chunks: dict[int, list[torch.Tensor]] = {L: [] for L in layers}
    got: list[int] = []
    for idx in batches:
        tokens = pad_left(model, [ids[i] for i in idx])
        _, cache = model.run_with_cache(tokens, sites, positions="all", logits=None, interventions=interventions)
        nr = [n_resp[i] for i in idx]
        for s in sites:
            chunks[s.layer].append(_reduce(cache[s], tokens, positions, nr).detach().float().cpu())
        got.extend(idx)
    inv = torch.empty(len(got), dtype=torch.long)
    inv[torch.tensor(got)] = torch.arange(len(got))
    return {L: torch.cat(chunks[L])[inv] for L in layers}
