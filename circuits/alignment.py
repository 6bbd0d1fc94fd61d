"""Aligning counterfactual prompts whose token counts differ, for activation patching.

Counterfactual pairs that swap a social-group cue ("a Muslim man" / "an African American man",
BBQ group swaps, CrowS-Pairs sentences) rarely have the same number of tokens, and plain
activation patching compares position ``p`` of one run with position ``p`` of the other. A
:class:`SpanAlignment` says which positions of the two prompts correspond:

- the tokens of both prompts are matched with :class:`difflib.SequenceMatcher` (``autojunk``
  off) on token ids: its *equal* blocks are identical token runs, in order (for a pair that
  differs in one span, the common prefix and the common suffix);
- equal blocks align one to one;
- a *replaced* span (clean tokens ``[a, b)`` vs corrupt ``[c, d)``) aligns **from its end**: the
  last ``min(b - a, d - c)`` tokens of each are paired, last with last; the leading
  ``|(b - a) - (d - c)|`` tokens of the longer span have no partner. The last token of a
  multi-token mention is where a model gathers it (Meng et al. 2022 find the last subject token
  decisive), so " African American" vs " Asian" pairs " American" with " Asian";
- inserted or deleted spans (tokens present in one prompt only) have no partner.

Pairs with the **same token count** are aligned position by position (identity), whatever their
tokens: this is exactly today's patching, and :func:`circuits.patching.patching_sweep` takes its
unchanged code path for them (``align="spans"`` on an equal-length pair gives bit-identical results).

Which positions a sweep patches: the sweep's position axis is the *base* run's (the run patched
into: the corrupt run when denoising, the clean run when noising). A base position with a partner
receives the source run's activation at the partner position; one without a partner is never
patched (per-position cells there are NaN, and all-position head patches leave it alone). The
read position is counted from the end (``-1``: the last token) in each run and must be aligned.
Absolute positions differ after an unequal span, so a patched residual carries its source
position's positional information (learned position embeddings, e.g. GPT-2); rotary models
encode position only inside attention.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import torch

from workbench.errors import WorkbenchError
from workbench.models.tokens import Tokens

if TYPE_CHECKING:
    from workbench.models.protocol import Model

__all__ = ["SpanAlignment", "align_tokens", "check_aligned_pair", "AlignmentError"]


class AlignmentError(WorkbenchError, ValueError):
    """A clean/corrupt batch that cannot be aligned (sizes, padding, an unaligned read position)."""


@dataclass(frozen=True)
class SpanAlignment:
    """Corresponding positions of a clean and a corrupt token sequence.

    Attributes:
        clean_len, corrupt_len: token counts.
        pairs: ``(clean_pos, corrupt_pos)`` of every aligned pair, increasing in both.
        spans: the differing spans, ``((clean_start, clean_end), (corrupt_start, corrupt_end))`` each
            (empty for an identity alignment).
    """

    clean_len: int
    corrupt_len: int
    pairs: tuple[tuple[int, int], ...]
    spans: tuple[tuple[tuple[int, int], tuple[int, int]], ...]

    @property
    def identity(self) -> bool:
        """Same length, every position aligned with itself (plain patching)."""
        return self.clean_len == self.corrupt_len and len(self.pairs) == self.clean_len and \
            all(a == b for a, b in self.pairs)

    def partner(self, base: str) -> list[int | None]:
        """For every position of the ``base`` run (``"clean"`` or ``"corrupt"``), its aligned position in
        the other run, or None."""
        if base not in ("clean", "corrupt"):
            raise AlignmentError(f"base must be 'clean' or 'corrupt', got {base!r}")
        n = self.clean_len if base == "clean" else self.corrupt_len
        out: list[int | None] = [None] * n
        for a, b in self.pairs:
            if base == "clean":
                out[a] = b
            else:
                out[b] = a
        return out

    def to_dict(self) -> dict:
        return {"clean_len": self.clean_len, "corrupt_len": self.corrupt_len, "pairs": [list(p) for p in self.pairs],
                "spans": [[list(a), list(b)] for a, b in self.spans]}


def align_tokens(clean: Sequence[int], corrupt: Sequence[int]) -> SpanAlignment:
    """Align two token id sequences (see the module docstring for the rule)."""
    a, b = [int(t) for t in clean], [int(t) for t in corrupt]
    if len(a) == len(b):
        return SpanAlignment(len(a), len(b), tuple((i, i) for i in range(len(a))),
                             tuple(((i, i + 1), (i, i + 1)) for i in range(len(a)) if a[i] != b[i]))
    pairs: list[tuple[int, int]] = []
    spans = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            pairs.extend((i1 + k, j1 + k) for k in range(i2 - i1))
            continue
        spans.append(((i1, i2), (j1, j2)))
        if tag == "replace":
            m = min(i2 - i1, j2 - j1)
            pairs.extend((i2 - m + k, j2 - m + k) for k in range(m))
    return SpanAlignment(len(a), len(b), tuple(pairs), tuple(spans))


def check_aligned_pair(model: Model, clean: Any, corrupt: Any, **tokenize_kw: Any
                       ) -> tuple[Tokens, Tokens, list[SpanAlignment]]:
    """Tokenise a clean/corrupt batch whose two sides may differ in length, and align each row.

    Every clean prompt must have the same token count (and every corrupt prompt): patching runs a
    batch without padding. Returns the two :class:`Tokens` and one :class:`SpanAlignment` per row.
    """
    ct = model.tokenize(clean, **tokenize_kw)
    xt = model.tokenize(corrupt, **tokenize_kw)
    if len(ct) != len(xt):
        raise AlignmentError(f"{len(ct)} clean prompts but {len(xt)} corrupt prompts; pass one corrupt prompt per "
                             "clean prompt")
    for name, t in (("clean", ct), ("corrupt", xt)):
        if not bool(t.attention_mask.bool().all()):
            raise AlignmentError(
                f"the {name} prompts have different token counts ({t.lengths.tolist()}); patching runs a batch "
                "without padding: run pairs of different shapes in separate sweeps (e.g. one pair at a time)")
    return ct, xt, [align_tokens(ct.real_tokens(i), xt.real_tokens(i)) for i in range(len(ct))]


def partner_index(alignments: Sequence[SpanAlignment], base: str, device: Any = None) -> torch.Tensor:
    """``[B, T_base]`` long tensor: each base position's partner in the source run, ``-1`` where none."""
    rows = [[-1 if q is None else q for q in a.partner(base)] for a in alignments]
    return torch.tensor(rows, dtype=torch.long, device=device)
