"""Corrupted inputs for activation patching.

Heimersheim & Nanda (2024) and Zhang & Nanda (2023) recommend *symmetric token replacement*
(swap the tokens that carry the information, e.g. "France" -> "Italy", keeping the length and
the template) over Gaussian noise: noise takes the model off-distribution. Noise on the subject
embeddings (Meng et al. 2022, ROME, "causal tracing": ``3 x`` the standard deviation of the
embeddings) is provided for comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.interventions import custom
from workbench.models.tokens import Tokens

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["CorruptionError", "check_pair", "token_replacement", "embedding_noise", "NoiseCorruption"]


class CorruptionError(WorkbenchError, ValueError):
    pass


def check_pair(model: Model, clean: Any, corrupt: Any, **tokenize_kw: Any) -> tuple[Tokens, Tokens]:
    """Tokenise a clean/corrupt pair (or batches) and check they line up position by position.

    Raises :class:`CorruptionError` when the batches differ in size or in token count, naming the
    first mismatching prompt and both tokenisations, or when a batch is padded (patching compares
    position ``p`` of one run with position ``p`` of the other, so every prompt in a sweep must have
    the same number of tokens).
    """
    ct = model.tokenize(clean, **tokenize_kw)
    xt = model.tokenize(corrupt, **tokenize_kw)
    if len(ct) != len(xt):
        raise CorruptionError(f"{len(ct)} clean prompts but {len(xt)} corrupt prompts; pass one corrupt prompt per clean prompt")
    for i in range(len(ct)):
        a, b = ct.real_tokens(i), xt.real_tokens(i)
        if len(a) != len(b):
            sa = [model.tokenizer.decode([t]) for t in a]
            sb = [model.tokenizer.decode([t]) for t in b]
            raise CorruptionError(
                f"prompt {i}: clean has {len(a)} tokens {sa} but corrupt has {len(b)} tokens {sb}. Activation "
                "patching needs the same length: choose replacement words with the same token count "
                "(e.g. ' France' -> ' Italy', both one token), or trim the prompts."
            )
    for name, t in (("clean", ct), ("corrupt", xt)):
        if not bool(t.attention_mask.bool().all()):
            raise CorruptionError(
                f"the {name} batch is padded (its prompts have different token counts: "
                f"{t.lengths.tolist()}); run prompts of different lengths in separate sweeps"
            )
    return ct, xt


def token_replacement(model: Model, clean: str | Sequence[str], replacements: dict[str, str] | Sequence[dict[str, str]],
                      **tokenize_kw: Any) -> tuple[Tokens, Tokens]:
    """Symmetric token replacement: corrupt prompts made by replacing words, with a length check.

    ``token_replacement(model, "The Eiffel Tower is in", {" Eiffel Tower": " Colosseum"})`` returns
    the clean and corrupt :class:`Tokens`; raises :class:`CorruptionError` when a replacement is
    absent from a prompt or changes its token count.
    """
    items = [clean] if isinstance(clean, str) else list(clean)
    reps = [replacements] * len(items) if isinstance(replacements, dict) else list(replacements)
    if len(reps) != len(items):
        raise CorruptionError(f"{len(items)} prompts but {len(reps)} replacement maps")
    corrupt = []
    for i, (p, rep) in enumerate(zip(items, reps)):
        q = p
        for old, new in rep.items():
            if old not in q:
                raise CorruptionError(f"prompt {i}: {old!r} does not occur in {p!r}")
            q = q.replace(old, new)
        corrupt.append(q)
    return check_pair(model, items, corrupt, **tokenize_kw)


@dataclass
class NoiseCorruption:
    """Gaussian noise added to the token embeddings at chosen positions (ROME-style causal tracing).

    ``intervention`` is a :class:`workbench.interventions.Intervention` at ``resid_pre.0`` that adds
    ``std_multiple * sigma * N(0, 1)`` noise (``sigma``: the standard deviation of the embedding
    matrix's entries; Meng et al. 2022 use 3 x the std of the subject-token embeddings) at ``positions``.
    The noise is drawn once from ``seed``, so every run with this corruption sees the same noise.
    """

    positions: list[int]
    std_multiple: float
    sigma: float
    noise: torch.Tensor  # [batch, seq, d_model], zero outside positions
    seed: int

    @property
    def intervention(self):
        noise = self.noise

        def fn(x, mask, noise=noise):
            return x + noise.to(device=x.device, dtype=x.dtype)
        return custom("resid_pre.0", fn, positions="all", label=f"embedding noise x{self.std_multiple}")


def embedding_noise(model: Model, tokens: Tokens, positions: Sequence[int] | int, *, std_multiple: float = 3.0,
                    seed: int = 0) -> NoiseCorruption:
    """Noise corruption for ``tokens`` at ``positions`` (indices into each row's real tokens)."""
    pos = [positions] if isinstance(positions, int) else list(positions)
    B, T = tokens.shape
    d = model.facts.d_model
    sigma = float(model.W_E.detach().float().std())
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.zeros(B, T, d)
    for b in range(B):
        n = int(tokens.lengths[b])
        start = int(tokens.starts[b])
        for p in pos:
            j = p + n if p < 0 else p
            if not 0 <= j < n:
                raise CorruptionError(f"noise position {p} is out of range for prompt {b} ({n} tokens)")
            noise[b, start + j] = torch.randn(d, generator=gen) * sigma * std_multiple
    return NoiseCorruption(pos, float(std_multiple), sigma, noise.to(model.device), int(seed))
