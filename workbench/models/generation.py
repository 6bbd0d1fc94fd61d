"""Generation for :class:`~workbench.models.hooked.HookedModel`: its own KV-cached decode loop through the backend
(interventions apply identically on both backends; the position policies are described in :mod:`workbench.models.hooked`),
greedy or seeded sampling with one seed per row (:func:`row_seed`), and :class:`Generation`, its result."""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..interventions import Intervention, InterventionError
from ..results import Provenance
from .tokens import ContextLengthError, PaddingError, Tokens, resolve_positions


@dataclass
class Generation:
    """Outputs of :meth:`HookedModel.generate`, one row per prompt (input order)."""

    prompts: list[Any]
    prompt_texts: list[str]
    completions: list[str]
    completion_ids: list[list[int]]
    finish_reasons: list[str]
    settings: dict
    provenance: Provenance

    def __len__(self) -> int:
        return len(self.completions)

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame({
            "prompt": [p if isinstance(p, str) else str(p) for p in self.prompts],
            "prompt_text": self.prompt_texts, "completion": self.completions,
            "n_tokens": [len(c) for c in self.completion_ids], "finish_reason": self.finish_reasons,
        })



def row_seed(seed: int, prompt_ids: Sequence[int], sample_id: int) -> int:
    """The seed of one sampled row: first 8 bytes (63 bits) of ``sha256("{seed}|{ids}|{sample_id}")``."""
    key = f"{int(seed)}|{','.join(str(int(t)) for t in prompt_ids)}|{int(sample_id)}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


@dataclass
class _Planned:
    """An intervention with its position mask for one forward pass."""

    iv: Intervention
    mask: torch.Tensor


Prompt = Any  # str | list[dict] (chat messages)


class GenerationMixin:
    """``generate`` and its decode loop; mixed into :class:`~workbench.models.hooked.HookedModel`."""

    def generate(self, prompts: Prompt | Sequence[Prompt], *, max_new_tokens: int = 32, interventions: Any = None,
                 do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                 top_p: float | None = None, seed: int = 0, stop_at_eos: bool = True,
                 batch_size: int = 16, progress: bool = False, chat: bool = False, system: str | None = None,
                 assistant_prefix: str | None = None, prepend_bos: bool | None = None,
                 sample_ids: Sequence[int] | None = None) -> Generation:
        """Generate continuations with a KV cache, interventions active on their position policy.

        Greedy by default; ``do_sample=True`` samples with ``temperature``/``top_k``/``top_p``. Prompts
        run in batches of ``batch_size``, sorted by length to limit padding; outputs keep the input order.

        Sampling is per row, so a sample does not depend on the batch it ran in: each row draws from
        its own ``torch.Generator`` seeded with the first 8 bytes of
        ``sha256("{seed}|{prompt token ids}|{sample id}")`` (see :func:`row_seed`), where the token ids are
        the row's real prompt tokens (after chat template and BOS) and the sample id is ``sample_ids[i]``
        or, by default, how many identical prompts came before it in this call (0, 1, 2...). So the same
        prompt and seed give the same tokens alone, in any batch and at any ``batch_size``, and ``n``
        copies of a prompt in one call are ``n`` different samples (sample ids 0..n-1), the same as
        ``n`` calls with ``sample_ids=[j]``. Tokens can differ only where batching changes the logits
        themselves (padding changes float rounding) enough to move a draw across a boundary.
        """
        for what, val in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{what} must be a positive integer, got {val!r}")
        if not math.isfinite(float(temperature)):
            raise ValueError(f"temperature must be a finite number, got {temperature!r}")
        if isinstance(prompts, torch.Tensor):  # token ids: [seq] or [batch, seq], no padding
            prompts = self.tokenize(prompts)
        if isinstance(prompts, Tokens):
            if prompts.padding_side != "left" and not bool((prompts.attention_mask == 1).all()):
                raise PaddingError(
                    "generate() needs left-padded tokens: with right padding the shorter rows would continue "
                    "from their padding. Tokenize with padding_side='left' (the default) or pass the prompts."
                )
            items = [prompts.select([i]) for i in range(len(prompts))]
        else:
            single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
            items = [prompts] if single else list(prompts)
        ivs = self._active_ivs(interventions)
        for iv in ivs:
            pos = iv.positions
            if isinstance(pos, str) and pos in ("generated", "all") and isinstance(iv.value, torch.Tensor) \
                    and iv.value.ndim >= 3:
                raise InterventionError(
                    f"{iv.site.name}: a full-activation value covers prompt positions only; use "
                    "positions='prompt' or an index spec in generate()"
                )
        kw = dict(chat=chat, system=system, assistant_prefix=assistant_prefix, prepend_bos=prepend_bos)
        real = [self.tokenize(p, **kw).real_tokens(0) for p in items]
        lengths = [len(r) for r in real]
        longest = max(lengths, default=0)
        if longest + max_new_tokens > self.facts.n_ctx:
            raise ContextLengthError(
                f"generating {max_new_tokens} tokens after a prompt of {longest} tokens would run past {self.name}'s "
                f"context of {self.facts.n_ctx} tokens; use max_new_tokens <= {max(self.facts.n_ctx - longest, 0)} "
                "or a shorter prompt"
            )
        if sample_ids is None:
            seen: dict[tuple, int] = defaultdict(int)
            sample_ids = []
            for r in real:
                sample_ids.append(seen[tuple(r)])
                seen[tuple(r)] += 1
        elif len(sample_ids) != len(items):
            raise ValueError(f"sample_ids gives {len(sample_ids)} ids for {len(items)} prompts; give one per prompt")
        gens = [torch.Generator(device="cpu").manual_seed(row_seed(seed, r, j)) for r, j in zip(real, sample_ids)]
        order = sorted(range(len(items)), key=lambda i: -lengths[i])
        texts: list[str] = [""] * len(items)
        comps: list[str] = [""] * len(items)
        comp_ids: list[list[int]] = [[] for _ in items]
        reasons: list[str] = [""] * len(items)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        it = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc=f"generate ({self.name})", unit="batch")
        for idx in it:
            tokens = self.tokenize([items[i] for i in idx], padding_side="left", **kw)
            ids, reason = self._generate_batch(tokens, ivs, max_new_tokens, do_sample, temperature, top_k, top_p,
                                               [gens[i] for i in idx], stop_at_eos)
            for j, i in enumerate(idx):
                texts[i] = (tokens.texts[j] if tokens.texts and tokens.texts[j] is not None
                            else self.tokenizer.decode(tokens.real_tokens(j)))
                comp_ids[i] = ids[j]
                comps[i] = self.tokenizer.decode(ids[j], skip_special_tokens=True)
                reasons[i] = reason[j]
        settings = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=seed, stop_at_eos=stop_at_eos, chat=chat, system=system,
                        assistant_prefix=assistant_prefix, backend=self.backend_name,
                        interventions=[_describe_iv(iv) for iv in ivs],
                        sample_ids=[int(j) for j in sample_ids] if do_sample else None)
        return Generation(items, texts, comps, comp_ids, reasons, settings,
                          self.provenance(seed=seed, extra={"generation": settings}))

    def _generate_batch(self, tokens: Tokens, ivs: list[Intervention], max_new_tokens: int, do_sample: bool,
                        temperature: float, top_k: int | None, top_p: float | None, gen: list[torch.Generator],
                        stop_at_eos: bool) -> tuple[list[list[int]], list[str]]:
        if tokens.padding_side != "left" and not bool((tokens.attention_mask == 1).all()):
            raise PaddingError("generation needs left padding (right-padded rows would continue from padding)")
        from . import compat

        B, T0 = tokens.shape
        cache = compat.new_cache(self._hf_config)
        prefill = []
        for iv in ivs:
            site = self.check_site(iv.site)
            if site != iv.site:
                iv = Intervention(site, iv.op, iv.value, iv.alpha, iv.positions, iv.heads, iv.fn, iv.label, iv.meta)
            iv.validate(self.facts)
            pos = iv.positions
            if pos == "generated":
                mask = torch.zeros(B, T0, dtype=torch.bool, device=tokens.input_ids.device)
                mask[:, -1] = True
            elif pos in ("all", "prompt"):
                mask = tokens.attention_mask.bool()
            else:
                mask = resolve_positions(pos, tokens)
            if mask.any():
                prefill.append(_Planned(iv, mask))
        decode_ivs = [iv for iv in ivs if iv.positions in ("generated", "all")]
        logits = self._run(tokens.input_ids, tokens.attention_mask, tokens.position_ids, planned=prefill,
                           captures=[], past=cache, logits_to_keep=1)[0]
        am = tokens.attention_mask
        pos_ids = tokens.position_ids[:, -1:]
        eos = self.facts.eos_token_id
        out = torch.zeros(B, 0, dtype=torch.long, device=am.device)
        finished = torch.zeros(B, dtype=torch.bool, device=am.device)
        reasons = ["length"] * B
        for step in range(max_new_tokens):
            nxt = self._choose(logits[:, -1], do_sample, temperature, top_k, top_p, gen)
            if stop_at_eos and eos is not None:
                nxt = torch.where(finished, torch.full_like(nxt, eos), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            if stop_at_eos and eos is not None:
                newly = (nxt == eos) & ~finished
                for b in torch.nonzero(newly).flatten().tolist():
                    reasons[b] = "eos"
                finished |= nxt == eos
                if bool(finished.all()):
                    break
            if step == max_new_tokens - 1:
                break
            am = torch.cat([am, torch.ones(B, 1, dtype=am.dtype, device=am.device)], dim=1)
            pos_ids = pos_ids + 1
            step_mask = torch.ones(B, 1, dtype=torch.bool, device=am.device)
            planned = []
            for iv in decode_ivs:
                site = self.check_site(iv.site)
                if site != iv.site:
                    iv = Intervention(site, iv.op, iv.value, iv.alpha, iv.positions, iv.heads, iv.fn, iv.label, iv.meta)
                planned.append(_Planned(iv, step_mask))
            logits = self._run(nxt[:, None], am, pos_ids, planned=planned, captures=[], past=cache,
                               logits_to_keep=1)[0]
        ids = []
        for b in range(B):
            row = out[b].tolist()
            if stop_at_eos and eos is not None and eos in row:
                row = row[:row.index(eos)]
            ids.append(row)
        return ids, reasons

    @staticmethod
    def _choose(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int | None,
                top_p: float | None, gen: list[torch.Generator]) -> torch.Tensor:
        """Next tokens ``[B]``: argmax, or one draw per row from that row's generator ``gen[b]``."""
        if not do_sample:
            return logits.argmax(-1)
        if temperature <= 0:
            raise ValueError("temperature must be > 0 when sampling (use do_sample=False for greedy)")
        x = logits.float() / temperature
        if top_k is not None:
            kth = x.topk(min(int(top_k), x.shape[-1]), dim=-1).values[:, -1:]
            x = x.masked_fill(x < kth, -math.inf)
        if top_p is not None:
            sx, si = x.sort(dim=-1, descending=True)
            cp = sx.softmax(-1).cumsum(-1)
            drop = cp - sx.softmax(-1) > top_p
            sx = sx.masked_fill(drop, -math.inf)
            x = torch.full_like(x, -math.inf).scatter(-1, si, sx)
        probs = x.softmax(-1).cpu()
        rows = [torch.multinomial(probs[b], 1, generator=gen[b]) for b in range(probs.shape[0])]
        return torch.cat(rows).to(logits.device)


def _describe_iv(iv: Intervention) -> dict:
    d = {"site": iv.site.name, "op": iv.op, "alpha": iv.alpha, "positions": str(iv.positions),
         "heads": list(iv.heads) if iv.heads else None, "label": iv.label}
    if isinstance(iv.value, torch.Tensor):
        d["value_shape"] = list(iv.value.shape)
        d["value_norm"] = float(iv.value.float().norm())
    return d
