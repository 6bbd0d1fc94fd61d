"""Tokenisation for :class:`~workbench.models.hooked.HookedModel`: BOS policy, chat templates, padding and position
ids, decided once here so both backends see the same tokens."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .tokens import ContextLengthError, Tokens

Prompt = Any  # str | list[dict] (chat messages)


class TokenizationMixin:
    """``tokenize``, ``format_chat``, ``to_str_tokens``; mixed into :class:`~workbench.models.hooked.HookedModel`."""

    def _detect_tokenizer_bos(self) -> bool:
        tok = self.tokenizer
        if tok.bos_token_id is None:
            return False
        with_sp = tok("a b", add_special_tokens=True)["input_ids"]
        return len(with_sp) > 0 and with_sp[0] == tok.bos_token_id and \
            tok("a b", add_special_tokens=False)["input_ids"][:1] != [tok.bos_token_id]

    def format_chat(self, prompt: Prompt, *, system: str | None = None, assistant_prefix: str | None = None,
                    add_generation_prompt: bool = True) -> str:
        """The exact text of a chat-formatted prompt (the model's own chat template)."""
        if not self.facts.has_chat_template:
            raise ValueError(f"{self.name} has no chat template; call with chat=False")
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        else:
            messages = [dict(m) for m in prompt]
        if system is not None:
            if messages and messages[0].get("role") == "system":
                raise ValueError("system= given, but the messages already start with a system message")
            messages = [{"role": "system", "content": system}] + messages
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return text + (assistant_prefix or "")

    def tokenize(self, prompts: Prompt | Sequence[Prompt] | Tokens, *, chat: bool = False,
                 system: str | None = None, assistant_prefix: str | None = None,
                 prepend_bos: bool | None = None, padding_side: str = "left") -> Tokens:
        """Tokenise prompts the one way both backends will see them.

        Args:
            prompts: a string, a list of strings, chat messages (list of dicts) or a list of them.
            chat: apply the model's chat template (with the generation prompt).
            system: a system message (chat only).
            assistant_prefix: text appended after the generation prompt (e.g. ``"("`` before an
                A/B answer letter).
            prepend_bos: add the BOS token to raw text. Default: the model's policy, which is the
                tokenizer's own behaviour unless the registry says otherwise. Chat-formatted text
                never gets an extra BOS (the template writes its own special tokens).
            padding_side: ``"left"`` (default; needed for generation) or ``"right"``.
        """
        # token ids given as tensors (or Tokens made elsewhere) go to the model's device: a CPU
        # ``torch.tensor(ids)`` passed to a CUDA model is the common case
        if isinstance(prompts, Tokens):
            self._check_ids(prompts.input_ids[prompts.attention_mask.bool()])
            self._check_positions(prompts.input_ids.shape[-1])
            return prompts if prompts.input_ids.device == self.device else prompts.to(self.device)
        if isinstance(prompts, (list, tuple)) and prompts and isinstance(prompts[0], Tokens):
            rows = [t.real_tokens(0) for t in prompts]
            self._check_ids(torch.tensor([i for r in rows for i in r], dtype=torch.long))
            return self._pad(rows, padding_side, [t.texts[0] if t.texts else None for t in prompts], {})
        if isinstance(prompts, torch.Tensor):
            if prompts.is_floating_point() or prompts.is_complex() or prompts.ndim not in (1, 2):
                raise ValueError(f"token ids must be an integer tensor [seq] or [batch, seq], got {prompts.dtype} "
                                 f"of shape {tuple(prompts.shape)}")
            ids = (prompts if prompts.ndim == 2 else prompts.unsqueeze(0)).long().to(self.device)
            if ids.shape[-1] == 0:
                raise ValueError("token ids are empty: give at least one token per row")
            self._check_ids(ids)
            if ids.shape[-1] > self.facts.n_ctx:
                raise ContextLengthError(f"{ids.shape[-1]} tokens are more than {self.name}'s context of "
                                         f"{self.facts.n_ctx}; truncate or split the input")
            return Tokens(ids, torch.ones_like(ids), padding_side)
        single = isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], dict))
        items = [prompts] if single else list(prompts)
        if not items:
            raise ValueError("no prompts given")
        if not chat and (system is not None or assistant_prefix is not None):
            raise ValueError("system= and assistant_prefix= only apply with chat=True")
        texts: list[str] = []
        for p in items:
            if chat:
                texts.append(self.format_chat(p, system=system, assistant_prefix=assistant_prefix))
            elif isinstance(p, str):
                texts.append(p)
            else:
                raise ValueError("chat messages (lists of dicts) need chat=True")
        bos = self.prepend_bos if prepend_bos is None else prepend_bos
        ids_list = []
        for t in texts:
            ids = self.tokenizer(t, add_special_tokens=False)["input_ids"]
            if bos and not chat:
                if self.facts.bos_token_id is None:
                    raise ValueError(f"prepend_bos=True but {self.name}'s tokenizer has no BOS token")
                ids = [self.facts.bos_token_id] + ids
            if not ids:
                raise ValueError(f"prompt {len(ids_list)} tokenises to no tokens: {t!r}")
            ids_list.append(ids)
        too_long = [(i, len(x)) for i, x in enumerate(ids_list) if len(x) > self.facts.n_ctx]
        if too_long:
            i, n = too_long[0]
            raise ContextLengthError(
                f"prompt {i} has {n} tokens, more than {self.name}'s context of {self.facts.n_ctx}; "
                f"truncate or split it ({len(too_long)} prompt(s) too long)"
            )
        return self._pad(ids_list, padding_side, texts,
                         {"chat": chat, "system": system, "assistant_prefix": assistant_prefix})

    def _check_ids(self, ids: torch.Tensor) -> None:
        """Refuse token ids outside the vocabulary (on a GPU they would end in a device-side assert)."""
        if ids.numel() == 0:
            return
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.facts.d_vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(f"token id {bad} is outside {self.name}'s vocabulary (0..{self.facts.d_vocab - 1}); "
                             "were these ids made by another model's tokenizer?")

    def _check_positions(self, T: int) -> None:
        """Token ids built outside :meth:`tokenize` (scorers append answers; ``Tokens`` made elsewhere) longer than a
        model with a learned position table can index: a clear error instead of an embedding index error. (Rotary
        models compute positions past ``n_ctx``, extrapolating; text given to :meth:`tokenize` is checked there.)"""
        if T > self.facts.n_ctx and getattr(self, "_pos_embed", None) is not None:
            raise ContextLengthError(f"{T} tokens are more than {self.name}'s context of {self.facts.n_ctx} (its learned "
                                     "position table ends there); use shorter prompts or drop the ones that do not fit")

    def _pad(self, ids_list: list[list[int]], padding_side: str, texts: list, meta: dict) -> Tokens:
        T = max(len(x) for x in ids_list)
        self._check_positions(T)
        pad = self.facts.pad_token_id if self.facts.pad_token_id is not None else 0
        input_ids = torch.full((len(ids_list), T), pad, dtype=torch.long)
        mask = torch.zeros((len(ids_list), T), dtype=torch.long)
        for i, x in enumerate(ids_list):
            if padding_side == "left":
                input_ids[i, T - len(x):] = torch.tensor(x)
                mask[i, T - len(x):] = 1
            else:
                input_ids[i, :len(x)] = torch.tensor(x)
                mask[i, :len(x)] = 1
        return Tokens(input_ids.to(self.device), mask.to(self.device), padding_side, texts, meta)

    def to_str_tokens(self, prompt: str | Tokens, row: int = 0, **kw: Any) -> list[str]:
        """The tokens of a prompt as strings (real tokens only)."""
        toks = self.tokenize(prompt, **kw) if not isinstance(prompt, Tokens) else prompt
        return [self.tokenizer.decode([i]) for i in toks.real_tokens(row)]

